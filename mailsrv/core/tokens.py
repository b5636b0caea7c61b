"""Signed tokens for links and replies that act without a login: a list subscription's
confirmation, a one-click unsubscribe, a moderator's approval.

A token is `payload.issued.mac` in lower-case base32 (letters, digits 2-7 and dots: safe in a URL and
in an address's local part, and read ignoring case, since some MTAs lower-case local parts): the
payload, the time it was issued (seconds since the epoch) and an HMAC-SHA256 (its first MAC_BYTES)
over the purpose, payload and time, with a key of the
server kept (0600) in `<data_dir>/keys/tokens.key` and made at first use, so every process of the
server (sharing the data directory) checks what another one signed. The purpose is in the MAC: a
token issued for one thing is worthless for another.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from mailsrv.core.clock import Clock

KEY_BYTES = 32
# 120 bits: forging one means guessing it over SMTP or HTTP; and 24 base32 characters without padding,
# so a token in an address (a list's VERP bounces address) stays short.
MAC_BYTES = 15


def _encode(raw: bytes) -> str:
    return base64.b32encode(raw).rstrip(b"=").decode("ascii").lower()


def _decode(text: str) -> bytes:
    return base64.b32decode(text.upper() + "=" * (-len(text) % 8))


def _key(data_dir: Path) -> bytes:
    path = data_dir / "keys" / "tokens.key"
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f"tokens.key.{secrets.token_hex(8)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(KEY_BYTES))
            f.flush()
            os.fsync(f.fileno())
        try:  # a link never replaces: of two processes making it at once, the first one's key wins
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_bytes()


class Tokens:
    def __init__(self, data_dir: Path, clock: Clock) -> None:
        self.data_dir = data_dir
        self.clock = clock
        self._secret: bytes | None = None

    def _mac(self, purpose: str, payload: str, issued: int) -> str:
        if self._secret is None:
            self._secret = _key(self.data_dir)
        message = f"{purpose}\0{payload}\0{issued}".encode()
        return _encode(hmac.new(self._secret, message, hashlib.sha256).digest()[:MAC_BYTES])

    def sign(self, purpose: str, payload: str) -> str:
        issued = int(self.clock.now().timestamp())
        return f"{_encode(payload.encode())}.{_encode(issued.to_bytes(5, 'big'))}.{self._mac(purpose, payload, issued)}"

    def verify(self, purpose: str, token: str, max_age: dt.timedelta) -> str | None:
        """The payload of `token` when it was signed for `purpose` no longer than `max_age` ago; else None."""
        try:
            encoded, when, mac = token.strip().lower().split(".")
            payload = _decode(encoded).decode()
            issued = int.from_bytes(_decode(when), "big")
        except (ValueError, UnicodeDecodeError):  # binascii.Error is a ValueError
            return None
        if not hmac.compare_digest(mac, self._mac(purpose, payload, issued)):
            return None
        age = self.clock.now().timestamp() - issued
        return payload if -60 <= age <= max_age.total_seconds() else None
