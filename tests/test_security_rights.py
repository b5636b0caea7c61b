"""What a domain administrator may not do over SOAP (security issue #8): lift its own limits, make
another domain local through a domain alias, or take the primary administrator's place."""
from __future__ import annotations

import re

import pytest
from smtp_support import ADMIN as SYSTEM_ADMIN, send
from web_support import web  # noqa: F401  (the fixture: SMTP, SOAP and a loopback DNS server)

from contract_clients import HttpClient, ok, refused

ADMIN = {"AuthUserName": "root", "AuthPassword": "Gr8-secret-pw"}
DOM = "a.test"
PRIMARY = {"AuthUserName": f"postmaster@{DOM}", "AuthPassword": "Domain-pass-1"}
SECOND = {"AuthUserName": f"second@{DOM}", "AuthPassword": "Deputy-pass-1"}


@pytest.fixture
def c(live_server):
    live_server.server.admins.reset_primary("root", "Gr8-secret-pw")
    client = HttpClient(live_server.url, "GET")
    ok(client.call("svcDomainAdmin", "AddDomainEx", **ADMIN, DomainName=DOM, Path="",
                   PrimaryDomainAdminUserName="postmaster", PrimaryDomainAdminPassword="Domain-pass-1",
                   PrimaryDomainAdminFirstName="", PrimaryDomainAdminLastName="", IP=""))
    return client


def add_user(c, name: str, password: str, auth: dict = ADMIN, is_admin: bool = False) -> dict:
    return c.call("svcUserAdmin", "AddUser", **auth, NewUsername=name, NewPassword=password, DomainName=DOM,
                  FirstName="", LastName="", IsDomainAdmin=is_admin)


def primary_admin(c) -> str:
    return ok(c.call("svcDomainAdmin", "GetPrimaryDomainAdmin", **ADMIN, DomainName=DOM))["PrimaryAdmin"]


def test_secondary_domain_admin_cannot_make_itself_primary(c):
    ok(add_user(c, "second", "Deputy-pass-1", is_admin=True))
    code, message = refused(c.call("svcDomainAdmin", "SetPrimaryDomainAdmin", **SECOND, DomainName=DOM,
                                   AdminUserName="second"))
    assert code == -5 and "primary" in message
    assert primary_admin(c) == "postmaster"
    assert refused(c.call("svcUserAdmin", "DeleteUser", **SECOND, Username="postmaster", DomainName=DOM))[0] == -61

    # The primary administrator may hand the role over; then the new primary is the protected one.
    ok(c.call("svcDomainAdmin", "SetPrimaryDomainAdmin", **PRIMARY, DomainName=DOM, AdminUserName="second"))
    assert primary_admin(c) == "second"
    assert refused(c.call("svcUserAdmin", "DeleteUser", **PRIMARY, Username="second", DomainName=DOM))[0] == -61


LIMITS = ["maxusers=3", "maxmailboxsize=10", "maxmessagesize=1024", "maxdomainaliases=1"]


def domain_settings(c) -> list[str]:
    keys = [item.split("=")[0] for item in LIMITS] + ["isenabled", "bypassgreylisting"]
    return ok(c.call("svcDomainAdmin", "GetRequestedDomainSettings", **ADMIN, DomainName=DOM,
                     requestedSettings=keys))["settingValues"]


def test_domain_admin_cannot_lift_the_limits_a_system_admin_set(c):
    ok(c.call("svcDomainAdmin", "SetRequestedDomainSettings", **ADMIN, DomainName=DOM, newSettings=LIMITS))
    before = domain_settings(c)
    lifted = ["maxusers=0", "maxmailboxsize=0", "maxmessagesize=51200", "maxdomainaliases=0",
              "bypassgreylisting=True", "isenabled=False"]
    code, message = refused(c.call("svcDomainAdmin", "SetRequestedDomainSettings", **PRIMARY, DomainName=DOM,
                                   newSettings=lifted))
    assert code == -5 and "'maxusers'" in message
    for item in lifted:  # each one alone, so every key is named in its own refusal
        code, message = refused(c.call("svcDomainAdmin", "SetRequestedDomainSettings", **PRIMARY, DomainName=DOM,
                                       newSettings=["listcommandaddress=lists", item]))
        assert (code, f"'{item.split('=')[0]}'" in message) == (-5, True), message
    assert domain_settings(c) == before

    # A control panel echoes every setting back: unchanged limits pass beside the keys it may change.
    ok(c.call("svcDomainAdmin", "SetRequestedDomainSettings", **PRIMARY, DomainName=DOM,
              newSettings=[*LIMITS, "listcommandaddress=lists", "isenabled=True"]))
    assert domain_settings(c) == before

    # And the limits still hold: three users at most.
    ok(add_user(c, "alice", "Wonder-land-1", auth=PRIMARY))
    ok(add_user(c, "bob", "Builder-pass-1", auth=PRIMARY))
    assert refused(add_user(c, "carol", "Song-pass-12", auth=PRIMARY))[0] == -50


def test_domain_admin_sizes_mailboxes_only_within_the_domain_limit(c):
    ok(c.call("svcDomainAdmin", "SetRequestedDomainSettings", **ADMIN, DomainName=DOM, newSettings=LIMITS))
    ok(add_user(c, "alice", "Wonder-land-1", auth=PRIMARY))
    alice = f"alice@{DOM}"

    def maxsize() -> list[str]:
        return ok(c.call("svcUserAdmin", "GetRequestedUserSettings", **ADMIN, EmailAddress=alice,
                         requestedSettings=["maxsize"]))["settingValues"]

    code, message = refused(c.call("svcUserAdmin", "SetRequestedUserSettings", **PRIMARY, EmailAddress=alice,
                                   newSettings=["maxsize=5000"]))
    assert code == -5 and "maxsize" in message and "10 MB" in message
    code, _ = refused(c.call("svcUserAdmin", "UpdateUser2", **PRIMARY, EmailAddress=alice, NewPassword="",
                             NewFirstName="", NewLastName="", IsDomainAdmin=False, maxMailboxSize=5000))
    assert code == -5
    code, _ = refused(c.call("svcUserAdmin", "AddUser2", **PRIMARY, NewUsername="bob", NewPassword="Builder-pass-1",
                             DomainName=DOM, FirstName="", LastName="", IsDomainAdmin=False, maxMailboxSize=5000))
    assert code == -5
    assert maxsize() == ["maxsize=0"]

    ok(c.call("svcUserAdmin", "SetRequestedUserSettings", **PRIMARY, EmailAddress=alice, newSettings=["maxsize=8"]))
    assert maxsize() == ["maxsize=8"]
    # A system administrator may grant more; the domain administrator may then echo it unchanged.
    ok(c.call("svcUserAdmin", "SetRequestedUserSettings", **ADMIN, EmailAddress=alice, newSettings=["maxsize=5000"]))
    ok(c.call("svcUserAdmin", "UpdateUser2", **PRIMARY, EmailAddress=alice, NewPassword="", NewFirstName="A",
              NewLastName="", IsDomainAdmin=False, maxMailboxSize=5000))
    assert maxsize() == ["maxsize=5000"]


SYSADMIN = {"AuthUserName": SYSTEM_ADMIN[0], "AuthPassword": SYSTEM_ADMIN[1]}
MSG = b"Subject: for remote.test\r\n\r\nbody\r\n"


@pytest.fixture
def dns_records(web):
    """remote.test is someone else's domain (its MX is elsewhere); here.test's MX is this machine."""
    web.mail.dns.add({("remote.test", "MX"): ["10 mx.remote.test."], ("mx.remote.test", "A"): ["192.0.2.10"],
                      ("here.test", "MX"): ["10 mx.here.test."], ("mx.here.test", "A"): ["127.0.0.1"]})
    return HttpClient(web.url, "GET")


def add_domain_alias(c, auth: dict, alias: str, operation: str = "AddDomainAliasWithoutMxCheck",
                     domain: str = DOM) -> dict:
    return c.call("svcDomainAliasAdmin", operation, **auth, DomainName=domain, DomainAliasName=alias)


def domain_aliases(c) -> list[str]:
    return ok(c.call("svcDomainAliasAdmin", "GetAliases", **SYSADMIN, DomainName=DOM))["DomainAliasNames"] or []


def test_domain_admin_cannot_make_another_domain_local(web, dns_records):
    c = dns_records
    for operation in ("AddDomainAliasWithoutMxCheck", "AddDomainAlias"):
        code, message = refused(add_domain_alias(c, PRIMARY, "remote.test", operation))
        assert code == -62 and "do not point at this server" in message
        assert "TXT record _mailsrv-verify.remote.test" in message
    assert domain_aliases(c) == []

    # Mail a local user sends to remote.test leaves for remote.test's own MX, not a.test's mailbox.
    with web.mail.authenticated(f"alice@{DOM}") as smtp:
        send(smtp, f"alice@{DOM}", ["postmaster@remote.test"], MSG)
    assert web.mail.spool_rows() == [("postmaster@remote.test", "remote", "pending")]
    web.mail.deliver()
    assert web.mail.messages(f"postmaster@{DOM}") == []
    ok(c.call("svcDomainAdmin", "AddDomainEx", **SYSADMIN, DomainName="remote.test", Path="",
              PrimaryDomainAdminUserName="postmaster", PrimaryDomainAdminPassword="Domain-pass-1",
              PrimaryDomainAdminFirstName="", PrimaryDomainAdminLastName="", IP=""))

    # A domain whose MX is this machine is proof enough.
    ok(add_domain_alias(c, PRIMARY, "here.test"))
    assert domain_aliases(c) == ["here.test"]


def test_domain_admin_proves_control_with_the_txt_token(web, dns_records):
    c = dns_records
    message = refused(add_domain_alias(c, PRIMARY, "remote.test"))[1]
    token = re.search(r'TXT record _mailsrv-verify\.remote\.test with the value "([^"]+)"', message)[1]
    web.mail.dns.add({("_mailsrv-verify.remote.test", "TXT"): ['"not-the-token"', f'"{token}"']})

    # The token is bound to a.test: another domain's administrator cannot use it.
    ok(c.call("svcDomainAdmin", "AddDomainEx", **SYSADMIN, DomainName="b.test", Path="",
              PrimaryDomainAdminUserName="postmaster", PrimaryDomainAdminPassword="Domain-pass-1",
              PrimaryDomainAdminFirstName="", PrimaryDomainAdminLastName="", IP=""))
    other = {"AuthUserName": "postmaster@b.test", "AuthPassword": "Domain-pass-1"}
    assert refused(add_domain_alias(c, other, "remote.test", domain="b.test"))[0] == -62

    ok(add_domain_alias(c, PRIMARY, "remote.test"))
    assert domain_aliases(c) == ["remote.test"]
    with web.mail.authenticated(f"alice@{DOM}") as smtp:
        send(smtp, f"alice@{DOM}", ["postmaster@remote.test"], MSG)
    web.mail.deliver()
    assert len(web.mail.messages(f"postmaster@{DOM}")) == 1


def test_system_admin_may_still_skip_the_check(web, dns_records):
    c = dns_records
    assert refused(add_domain_alias(c, SYSADMIN, "remote.test", "AddDomainAlias"))[0] == -62
    ok(add_domain_alias(c, SYSADMIN, "remote.test"))
    assert domain_aliases(c) == ["remote.test"]
