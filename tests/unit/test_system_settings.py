"""The General Settings table's pure rules: parsing and spelling of each server key, the
configuration's initial values, and what SMTP makes of them."""
from __future__ import annotations

import pytest

from mailsrv.core import settings
from mailsrv.core.config import SmtpConfig
from mailsrv.core.errors import MailsrvError
from mailsrv.directory.system_settings import SYSTEM, SmtpSettings, table_for
from mailsrv.mta.policy import RELAY_DENIED, Policy, RecipientCheck


def parse(*assignments: str) -> dict:
    return settings.parse_assignments(SYSTEM, assignments)


def test_values_take_their_canonical_spelling():
    assert parse("RELAY=authenticated users", "gatewaybalance=ROUNDROBIN", "catchalls=false",
                 "outboundips=10.0.0.1,10.0.0.1, 2001:DB8::2", "smtphostname=MX1.Example.COM.") == {
        "relay": "AuthenticatedUsers", "gatewaybalance": "RoundRobin", "catchalls": "Disabled",
        "outboundips": "10.0.0.1,2001:db8::2", "smtphostname": "mx1.example.com"}
    assert parse("outboundips=") == {"outboundips": ""}


@pytest.mark.parametrize("bad", ["relay=open", "outboundips=10.0.0.0/8", "smtphostname=a..b",
                                 "smtphostname=" + "a" * 254, "maxmessagesize=1.5", "gatewayenabled=1"])
def test_bad_values_name_their_key(bad):
    with pytest.raises(MailsrvError) as refused:
        parse(bad)
    assert refused.value.code == -15 and f"'{bad.split('=')[0]}'" in refused.value.message


def test_the_configuration_gives_initial_values_and_smtp_reads_them():
    table = table_for(SmtpConfig(hostname="mx.example", max_message_kb=10, max_recipients=3, allow_catchalls=False))
    smtp = SmtpSettings.of(settings.defaults(table))
    assert smtp == SmtpSettings(hostname="mx.example", max_message_bytes=10240, max_recipients=3, catchalls=False,
                                authenticated_relay=True, local_senders_authenticate=False, spf_needed=False)
    stored = {**settings.defaults(table), "relay": "Nobody", "autoresponders": "RequireSPF"}
    assert (SmtpSettings.of(stored).authenticated_relay, SmtpSettings.of(stored).spf_needed) == (False, True)


def test_relay_nobody_leaves_only_trusted_clients_relaying():
    policy = Policy(["192.0.2.0/24"])

    def remote(ip: str, login: str | None, authenticated_relay: bool) -> object:
        client = policy.client(ip, login, authenticated_relay=authenticated_relay)
        return policy.check_recipient(RecipientCheck(client, "alice@a.test", "friend@example.net", local=False))

    assert remote("198.51.100.1", "alice@a.test", True) is None
    assert remote("198.51.100.1", "alice@a.test", False) == RELAY_DENIED
    assert remote("192.0.2.7", None, False) is None
    assert remote("198.51.100.1", None, True) == RELAY_DENIED
