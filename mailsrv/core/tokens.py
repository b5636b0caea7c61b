"""Signed tokens for links and addresses mail hands out: the one-click unsubscribe URL and the moderator's
approve/reject address of the list server (mailsrv.mta.list_server).

A token is `<payload>.<mac>`: the payload's fields joined by "|" in URL-safe base64 (no padding) and the
first 16 bytes of its HMAC-SHA256 under a key kept in `<data_dir>/token.key` (32 random bytes, created
on first use with mode 0600). Every node shares the data directory's key, so a token made on one node
is honoured by all. Tokens carry no secret: they only prove the server made them; whoever holds one may
act with it, as with any mailed link. Tokens are case-sensitive: they go where case is kept (a URL,
an address's "+tag", which MTAs pass on as written).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

KEY_FILE = "token.key"


def _key(data_dir: Path) -> bytes:
    path = data_dir / KEY_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    key = os.urandom(32)
    try:  # O_EXCL: two nodes creating it at once keep the first one's key
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as out:
        out.write(key)
        out.flush()
        os.fsync(out.fileno())
    return key


def _mac(key: bytes, payload: str) -> str:
    return hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()[:32]


def sign(data_dir: Path, *fields: str) -> str:
    """A token carrying `fields` (none may contain "|")."""
    payload = base64.urlsafe_b64encode("|".join(fields).encode()).decode().rstrip("=")
    return f"{payload}.{_mac(_key(data_dir), payload)}"


def verify(data_dir: Path, token: str) -> list[str] | None:
    """The fields of a token `sign` made with this data directory's key, else None."""
    payload, _, mac = token.strip().rpartition(".")
    if not payload or not hmac.compare_digest(mac.lower(), _mac(_key(data_dir), payload)):
        return None
    try:
        return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode().split("|")
    except ValueError:
        return None
