"""A stored password hash verifies the password it was made from, and only that, whichever argon2
library checks it (libsodium for argon2id, argon2-cffi for the other variants)."""
from __future__ import annotations

import pytest
from argon2 import PasswordHasher, Type

from mailsrv.directory.passwords import Verifier, hash_password

PASSWORD = "Correct-horse-9"


@pytest.mark.parametrize("stored", [
    hash_password(PASSWORD),
    # Hashes made elsewhere (an imported account): more lanes, the argon2i variant.
    PasswordHasher(time_cost=1, memory_cost=8192, parallelism=2).hash(PASSWORD),
    PasswordHasher(time_cost=1, memory_cost=8192, type=Type.I).hash(PASSWORD),
    # Longer than libsodium reads (a 64-byte salt and tag).
    PasswordHasher(time_cost=1, memory_cost=8192, salt_len=64, hash_len=64).hash(PASSWORD),
])
def test_a_stored_hash_verifies_its_password_only(stored: str) -> None:
    assert Verifier().verify(stored, PASSWORD)
    assert not Verifier().verify(stored, PASSWORD + "x")
    assert not Verifier().verify(stored, PASSWORD + "\0")


def test_a_malformed_or_missing_hash_verifies_nothing() -> None:
    assert not Verifier().verify("$argon2id$v=19$m=19456,t=2,p=1$junk", PASSWORD)
    assert not Verifier().verify("plain-text", PASSWORD)
    assert not Verifier().verify(None, PASSWORD)
