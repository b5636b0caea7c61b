"""Signed tokens (mailsrv.core.tokens): what one data directory signs it verifies, nothing else does."""
from __future__ import annotations

from mailsrv.core import tokens


def test_a_token_carries_its_fields_and_survives_a_new_reader(tmp_path):
    token = tokens.sign(tmp_path, "unsubscribe", "7", "ann@example.com")
    assert tokens.verify(tmp_path, token) == ["unsubscribe", "7", "ann@example.com"]
    assert (tmp_path / tokens.KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert tokens.verify(tmp_path, token) == tokens.verify(tmp_path, f" {token}\n")


def test_tampered_foreign_and_malformed_tokens_are_refused(tmp_path):
    token = tokens.sign(tmp_path, "a", "1")
    payload, _, mac = token.partition(".")
    other = tmp_path / "other"
    other.mkdir()
    forged = tokens.sign(other, "a", "1")
    assert tokens.verify(tmp_path, forged) is None  # another key's token
    assert tokens.verify(tmp_path, tokens.sign(tmp_path, "a", "2").partition(".")[0] + "." + mac) is None
    for bad in ("", ".", payload, "x." + mac, token + "0"):
        assert tokens.verify(tmp_path, bad) is None
