"""Password hashing (argon2id) and the password rules every account is held to."""
from __future__ import annotations

import hashlib
import hmac
import os
import threading

import nacl.exceptions
import nacl.pwhash.argon2id
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from mailsrv.core.errors import MailsrvError, ResultCode

# OWASP's argon2id baseline (19 MiB, t=2, p=1): strong at rest, ~15 ms per hash on a small core.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
_DUMMY_HASH = _hasher.hash("mailsrv-timing-equaliser")
# argon2 is CPU-bound and needs its 19 MiB while it runs: more at once than there are cores is no
# faster, and a login flood on the mailbox threads (up to hundreds) would otherwise claim gigabytes.
_ARGON2_SLOTS = threading.BoundedSemaphore(os.cpu_count() or 1)

MIN_LENGTH = 8
MAX_LENGTH = 128


def hash_password(password: str) -> str:
    with _ARGON2_SLOTS:
        return _hasher.hash(password)


_SODIUM_PREFIX = nacl.pwhash.argon2id.STRPREFIX.decode()


def _argon2_verify(stored_hash: str, password: str) -> None:
    """argon2-cffi's verify, within the process's argon2 slots; raises as it does. An argon2id hash
    (every one hash_password makes) is verified by libsodium (PyNaCl), whose vectorised argon2 takes
    about half argon2-cffi's time on the same parameters (18 against 30-40 ms here): a login's cost
    on a worker that has not seen that password yet."""
    with _ARGON2_SLOTS:
        # libsodium reads at most PWHASH_SIZE bytes of hash (longer salts or tags are argon2-cffi's).
        if not stored_hash.startswith(_SODIUM_PREFIX) or len(stored_hash) > nacl.pwhash.argon2id.PWHASH_SIZE:
            _hasher.verify(stored_hash, password)
            return
        try:
            nacl.pwhash.argon2id.verify(stored_hash.encode(), password.encode())
        except nacl.exceptions.InvalidkeyError:  # a wrong password or a malformed hash alike
            raise VerificationError() from None


def check_rules(password: str | None, login_name: str) -> str:
    """The password if it meets the rules, else a refusal with code -21."""
    pw = password or ""
    if len(pw) < MIN_LENGTH:
        raise MailsrvError(ResultCode.PASSWORD_RULES, f"The password must be at least {MIN_LENGTH} characters long.")
    if len(pw) > MAX_LENGTH:
        raise MailsrvError(ResultCode.PASSWORD_RULES, f"The password must be at most {MAX_LENGTH} characters long.")
    # Names of one or two letters would forbid half the alphabet; the rule guards against "alice2024".
    if len(login_name) >= 3 and login_name.lower() in pw.lower():
        raise MailsrvError(ResultCode.PASSWORD_RULES, "The password must not contain the user name.")
    if pw.strip() != pw or any(ord(c) < 32 for c in pw):
        raise MailsrvError(ResultCode.PASSWORD_RULES,
                           "The password must not begin or end with spaces or contain control characters.")
    return pw


class Verifier:
    """argon2 verification with a cache of recent successes.

    Automation clients send the password with every call; paying a full argon2 per call would cap
    the SOAP layer at a few dozen calls per second per core. A success is remembered as a keyed
    digest bound to the stored hash, so a password change (new hash) invalidates it at once and the
    process never holds a plain password."""

    def __init__(self, max_entries: int = 10000) -> None:
        self._key = os.urandom(32)
        self._ok: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._max = max_entries

    def _digest(self, stored_hash: str, password: str) -> bytes:
        # BLAKE2's keyed mode, a MAC of its own: a quarter of HMAC-SHA256's one-shot cost (OpenSSL
        # looks the digest up by name on every call), and every SOAP call asks.
        return hashlib.blake2b(f"{stored_hash}\0{password}".encode(), key=self._key, digest_size=32).digest()

    def remembered(self, stored_hash: str, password: str | None) -> bool:
        """Whether this password was verified before against this stored hash (no argon2)."""
        digest = self._digest(stored_hash, password or "")
        with self._lock:
            return hmac.compare_digest(self._ok.get(stored_hash, b""), digest)

    def verify(self, stored_hash: str | None, password: str | None) -> bool:
        pw = password or ""
        if stored_hash is None:
            # Same work for unknown names, so timing does not reveal which names exist.
            try:
                _argon2_verify(_DUMMY_HASH, pw + "\0")
            except VerificationError:
                pass
            return False
        if self.remembered(stored_hash, pw):
            return True
        digest = self._digest(stored_hash, pw)
        try:
            _argon2_verify(stored_hash, pw)
        except (VerificationError, InvalidHashError):
            return False
        with self._lock:
            if len(self._ok) >= self._max:
                self._ok.clear()
            self._ok[stored_hash] = digest
        return True
