"""The header section of a stored message (a spool file or a Maildir message), read without
reading the message: auto-replies, bounces and folder listings need only its headers.
"""
from __future__ import annotations

import email.policy
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import Policy
from pathlib import Path

# Enough for any real header section; a message whose headers go on longer is judged on what was
# read rather than read into memory whole.
HEADER_LIMIT = 256 * 1024


def header_bytes(path: Path) -> bytes:
    """The header section as stored: up to the first empty line, at most HEADER_LIMIT bytes (a
    line without an end is cut there too, so one endless line cannot fill memory)."""
    lines: list[bytes] = []
    size = 0
    with open(path, "rb") as message:
        while size < HEADER_LIMIT:
            line = message.readline(HEADER_LIMIT - size)
            if line in (b"", b"\r\n", b"\n"):
                break
            lines.append(line)
            size += len(line)
    return b"".join(lines)


def parse_headers(data: bytes, policy: Policy = email.policy.compat32) -> Message:
    """Header bytes as a Message. compat32 (the default) never raises on malformed fields, which
    the rules reading untrusted mail need; a reader that displays headers passes email.policy.default."""
    return BytesHeaderParser(policy=policy).parsebytes(data)


def read_headers(path: Path, policy: Policy = email.policy.compat32) -> Message:
    return parse_headers(header_bytes(path), policy)
