"""Signed tokens (mailsrv.core.tokens): bound to their purpose, key and age; one key file per data directory."""
from __future__ import annotations

import datetime as dt

from mailsrv.core.clock import ManualClock
from mailsrv.core.tokens import Tokens


def test_tokens_are_bound_to_purpose_key_and_age(tmp_path):
    clock = ManualClock(dt.datetime(2026, 3, 10, tzinfo=dt.timezone.utc))
    tokens = Tokens(tmp_path, clock)
    token = tokens.sign("unsubscribe", "7:bob@a.test")
    assert (tmp_path / "keys" / "tokens.key").stat().st_mode & 0o777 == 0o600
    assert Tokens(tmp_path, clock).verify("unsubscribe", token, dt.timedelta(days=1)) == "7:bob@a.test"  # another process
    assert tokens.verify("list-confirm", token, dt.timedelta(days=1)) is None  # another purpose
    payload, issued, mac = token.split(".")
    forged = Tokens(tmp_path, clock).sign("unsubscribe", "8:bob@a.test").split(".")[0]
    assert tokens.verify("unsubscribe", f"{forged}.{issued}.{mac}", dt.timedelta(days=1)) is None
    assert Tokens(tmp_path / "other", clock).verify("unsubscribe", token, dt.timedelta(days=1)) is None  # another key
    assert tokens.verify("unsubscribe", "not a token", dt.timedelta(days=1)) is None
    clock.advance(dt.timedelta(days=1, seconds=1))
    assert tokens.verify("unsubscribe", token, dt.timedelta(days=1)) is None


def test_tokens_are_read_ignoring_case(tmp_path):
    """Tokens travel in addresses' local parts (VERP, moderation, confirmation), which MTAs may fold."""
    clock = ManualClock(dt.datetime(2026, 3, 10, tzinfo=dt.timezone.utc))
    tokens = Tokens(tmp_path, clock)
    token = tokens.sign("list-bounce", "bob@a.test")
    assert token == token.lower() and all(c.isalnum() or c == "." for c in token)
    assert tokens.verify("list-bounce", token.upper(), dt.timedelta(days=1)) == "bob@a.test"
