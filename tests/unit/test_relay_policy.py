"""The relay policy (mailsrv.mta.policy) without a server: who may send as a local domain, and
which recipients a client may name."""
from __future__ import annotations

import pytest

from mailsrv.core.config import ConfigError
from mailsrv.mta.policy import ACCEPT, RELAY_DENIED, Policy, RecipientCheck, Reply, SenderCheck
from mailsrv.mta.recipients import DomainInfo

POLICY = Policy(["192.0.2.0/24", "2001:db8::1", "198.51.100.10-198.51.100.20"])


def domain(requires_auth: bool) -> DomainInfo:
    return DomainInfo(id=1, name="a.test", path="/d/a.test", enabled=True, max_message_bytes=0, max_recipients=0,
                      requires_smtp_auth=requires_auth, catch_all="")


@pytest.mark.parametrize("ip, trusted", [
    ("192.0.2.7", True), ("2001:db8::1", True), ("198.51.100.15", True), ("198.51.100.21", False),
    ("203.0.113.5", False), ("not an address", False), ("", False),
])
def test_relay_networks_make_a_client_trusted(ip: str, trusted: bool) -> None:
    assert POLICY.client(ip, None).trusted is trusted


def test_a_bad_relay_network_is_a_configuration_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match="smtp.relay_networks"):
        Policy(["10.0.0.9-10.0.0.1"])


@pytest.mark.parametrize("ip, login, sender, requires_auth, refused", [
    ("203.0.113.5", None, "alice@a.test", True, True),  # a stranger claiming our domain
    ("203.0.113.5", "alice@a.test", "alice@a.test", True, False),  # authenticated
    ("192.0.2.7", None, "alice@a.test", True, False),  # relay network
    ("203.0.113.5", None, "alice@a.test", False, False),  # the domain does not require AUTH
    ("203.0.113.5", None, "", True, False),  # the null sender (bounces) is never refused here
])
def test_sending_as_a_local_domain_that_requires_authentication(ip: str, login: str | None, sender: str,
                                                                 requires_auth: bool, refused: bool) -> None:
    check = SenderCheck(POLICY.client(ip, login), sender, domain(requires_auth))
    verdict = POLICY.check_sender(check)
    assert (verdict == Reply(530, "5.7.0", f"Authentication required to send as {sender}")) if refused \
        else verdict is None


def test_a_sender_from_elsewhere_is_not_the_policys_business() -> None:
    assert POLICY.check_sender(SenderCheck(POLICY.client("203.0.113.5", None), "x@remote.test", None)) is None


@pytest.mark.parametrize("ip, login, local, expected", [
    ("203.0.113.5", None, True, None),  # anyone may write to our own domains
    ("203.0.113.5", None, False, RELAY_DENIED),  # but not relay through us
    ("203.0.113.5", "alice@a.test", False, None),  # authenticated clients relay
    ("192.0.2.7", None, False, None),  # so do relay networks
])
def test_recipients_a_client_may_name(ip: str, login: str | None, local: bool, expected: Reply | None) -> None:
    check = RecipientCheck(POLICY.client(ip, login), "x@remote.test", "friend@elsewhere.test", local)
    assert POLICY.check_recipient(check) == expected


def test_rules_in_front_decide_first_and_no_opinion_falls_through() -> None:
    backup_mx = Policy([], recipient_rules=(
        lambda check: ACCEPT if check.recipient.endswith("@backup.test") else None,
        lambda check: Reply(550, "5.7.1", "nothing else") if check.recipient.endswith("@blocked.test") else None,
    ))
    client = backup_mx.client("203.0.113.5", None)
    assert backup_mx.check_recipient(RecipientCheck(client, "", "u@backup.test", False)) is None
    assert backup_mx.check_recipient(RecipientCheck(client, "", "u@blocked.test", False)) == \
        Reply(550, "5.7.1", "nothing else")
    assert backup_mx.check_recipient(RecipientCheck(client, "", "u@other.test", False)) == RELAY_DENIED
