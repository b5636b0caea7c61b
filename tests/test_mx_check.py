"""AddDomainAlias's MX check, against a real DNS server on loopback."""
from __future__ import annotations


import pytest

from dns_server import DnsServer
from mailsrv.core.errors import MailsrvError


@pytest.fixture
def dns():
    server = DnsServer({
        ("here.example", "MX"): ["10 mx.here.example."],
        ("mx.here.example", "A"): ["127.0.0.1"],
        ("elsewhere.example", "MX"): ["10 mx.elsewhere.example.", "20 backup.elsewhere.example."],
        ("mx.elsewhere.example", "A"): ["192.0.2.10"],
        ("backup.elsewhere.example", "AAAA"): ["2001:db8::25"],
        ("implicit.example", "A"): ["127.0.0.1"],
    })
    yield server
    server.close()


@pytest.fixture
def engine(make_server, dns):
    server = make_server(f'[dns]\nnameservers = ["{dns.address}"]\n')
    server.admins.reset_primary("root", "Gr8-secret-pw")
    actor = server.login("root", "Gr8-secret-pw", "127.0.0.1")
    server.domains.add(actor, "primary.example", "", "postmaster", "Domain-pass-1", "", "", {})
    return server, actor


def test_alias_whose_mx_is_this_machine_is_added(engine):
    server, actor = engine
    server.domain_aliases.add(actor, "primary.example", "here.example", check_mx=True)
    server.domain_aliases.add(actor, "primary.example", "implicit.example", check_mx=True)
    assert server.domain_aliases.list(actor, "primary.example") == ["here.example", "implicit.example"]


def test_alias_whose_mx_points_elsewhere_is_refused_with_what_was_found(engine):
    server, actor = engine
    with pytest.raises(MailsrvError) as refused:
        server.domain_aliases.add(actor, "primary.example", "elsewhere.example", check_mx=True)
    assert refused.value.code == -62
    assert refused.value.message.startswith(
        "The MX records of elsewhere.example do not point at this server (mx.elsewhere.example -> 192.0.2.10; "
        "backup.elsewhere.example -> 2001:db8::25). To prove control of elsewhere.example otherwise, publish the "
        'TXT record _mailsrv-verify.elsewhere.example with the value "mailsrv-verify=')
    assert server.domain_aliases.list(actor, "primary.example") == []


def test_alias_missing_from_dns_is_refused(engine):
    server, actor = engine
    with pytest.raises(MailsrvError) as refused:
        server.domain_aliases.add(actor, "primary.example", "nowhere.example", check_mx=True)
    assert refused.value.code == -62
    assert refused.value.message.startswith("The domain nowhere.example does not exist in DNS. To prove control")
    server.domain_aliases.add(actor, "primary.example", "nowhere.example", check_mx=False)
    assert server.domain_aliases.list(actor, "primary.example") == ["nowhere.example"]
