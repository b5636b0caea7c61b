"""A control panel's whole provisioning sequence against a live server, over every binding a
SmarterMail client uses: zeep SOAP 1.1 and 1.2 (proxies generated from our ?WSDL), HTTP GET and
HTTP POST (old scripts)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from contract_clients import make_client, ok

ADMIN = {"AuthUserName": "root", "AuthPassword": "Gr8-secret-pw"}
DOM = "hosted-example.com"
DA = {"AuthUserName": f"postmaster@{DOM}", "AuthPassword": "Domain-pass-1"}


def refused(result: dict, code: int) -> str:
    assert result["Result"] is False, result
    assert result["ResultCode"] == code, result
    assert result["Message"], result
    return result["Message"]


ADD_DOMAIN = dict(DomainName=DOM, Path="", PrimaryDomainAdminUserName="postmaster",
                  PrimaryDomainAdminPassword="Domain-pass-1", PrimaryDomainAdminFirstName="Post",
                  PrimaryDomainAdminLastName="Master", IP="127.0.0.1", ImapPort=143, PopPort=110, SmtpPort=25,
                  MaxAliases=10, MaxDomainSizeInMB=500, MaxDomainUsers=3, MaxMailboxSizeInMB=100,
                  MaxMessageSize=10240, MaxRecipients=50, MaxDomainAliases=2, MaxLists=0,
                  ShowDomainAliasMenu=True, ShowContentFilteringMenu=False, ShowSpamMenu=True,
                  ShowStatsMenu=True, RequireSmtpAuthentication=True, ShowListMenu=False,
                  ListCommandAddress="stserv")


@pytest.mark.parametrize("kind", ["soap11", "soap12", "get", "post"])
def test_provisioning_sequence(live_server, kind):
    live_server.server.admins.reset_primary("root", "Gr8-secret-pw")
    c = make_client(kind, live_server.url)
    domains, users, aliases, dom_aliases = "svcDomainAdmin", "svcUserAdmin", "svcAliasAdmin", "svcDomainAliasAdmin"

    # Domain with explicit limits, and its settings read back field by field.
    ok(c.call(domains, "AddDomain", **ADMIN, **ADD_DOMAIN))
    assert DOM in (ok(c.call(domains, "GetAllDomains", **ADMIN))["DomainNames"] or [])
    s = ok(c.call(domains, "GetDomainSettings", **ADMIN, domainName=DOM))
    assert (s["ServerIP"], s["MaxDomainUsers"], s["MaxDomainSizeInMB"], s["MaxMessageSize"]) == ("127.0.0.1", 3, 500, 10240)
    assert (s["ShowContentFilteringMenu"], s["RequireSmtpAuthentication"]) == (False, True)
    domain_dir = Path(s["Path"])
    assert (domain_dir / "users" / "postmaster" / "Maildir" / "new").is_dir()
    refused(c.call(domains, "AddDomain", **ADMIN, **ADD_DOMAIN), -40)

    # key=value settings in the case asked; unknown keys named, never dropped.
    ok(c.call(domains, "SetRequestedDomainSettings", **ADMIN, DomainName=DOM,
              newSettings=["MaxMessagesPerHour=250", "maxmessagesperhourenabled=True"]))
    got = ok(c.call(domains, "GetRequestedDomainSettings", **ADMIN, DomainName=DOM,
                    requestedSettings=["MaxMessagesPerHour", "maxmessagesperhourenabled", "isenabled"]))
    assert got["settingValues"] == ["MaxMessagesPerHour=250", "maxmessagesperhourenabled=True", "isenabled=True"]
    assert "nosuchkey" in refused(c.call(domains, "GetRequestedDomainSettings", **ADMIN, DomainName=DOM,
                                         requestedSettings=["isenabled", "nosuchkey"]), -15)

    # Users, up to the domain's limit of 3 (postmaster is the first).
    ok(c.call(users, "AddUser", **ADMIN, NewUsername="alice", NewPassword="Wonder-land-1", DomainName=DOM,
              FirstName="Alice", LastName="A", IsDomainAdmin=False))
    ok(c.call(users, "AddUser2", **ADMIN, NewUsername="bob", NewPassword="Builder-pass-1", DomainName=DOM,
              FirstName="Bob", LastName="B", IsDomainAdmin=False, maxMailboxSize=20))
    refused(c.call(users, "AddUser", **ADMIN, NewUsername="carol", NewPassword="Song-pass-12", DomainName=DOM,
                   FirstName="", LastName="", IsDomainAdmin=False), -50)
    info = ok(c.call(users, "GetUser", **ADMIN, EmailAddress=f"alice@{DOM}"))["UserInfo"]
    assert (info["UserName"], info["FirstName"], info["IsDomainAdmin"]) == ("alice", "Alice", False)
    names = sorted(u["UserName"] for u in ok(c.call(users, "GetUsers", **ADMIN, DomainName=DOM))["Users"])
    assert names == ["alice", "bob", "postmaster"]
    ok(c.call(users, "UpdateUserForwardingInfo", **ADMIN, EmailAddress=f"bob@{DOM}", DeleteOnForward=True,
              ForwardingAddress="bob@elsewhere.example"))
    fwd = ok(c.call(users, "GetUserForwardingInfo", **ADMIN, EmailAddress=f"bob@{DOM}"))
    assert (fwd["DeleteOnForward"], fwd["ForwardingAddress"]) == (True, "bob@elsewhere.example")
    ok(c.call(users, "UpdateUserAutoResponseInfo", **ADMIN, EmailAddress=f"alice@{DOM}", Enabled=True,
              Subject="Away", Body="Back on Monday"))
    auto = ok(c.call(users, "GetUserAutoResponseInfo", **ADMIN, EmailAddress=f"alice@{DOM}"))
    assert (auto["Enabled"], auto["Subject"], auto["Body"]) == (True, "Away", "Back on Monday")

    # Aliases and the catch-all.
    ok(c.call(aliases, "AddAlias", **ADMIN, DomainName=DOM, AliasName="sales",
              Addresses=[f"alice@{DOM}", f"bob@{DOM}"]))
    refused(c.call(aliases, "AddAlias", **ADMIN, DomainName=DOM, AliasName="sales", Addresses=[f"bob@{DOM}"]), -42)
    refused(c.call(aliases, "AddAlias", **ADMIN, DomainName=DOM, AliasName="alice", Addresses=[f"bob@{DOM}"]), -45)
    ok(c.call(aliases, "SetCatchAll", **ADMIN, DomainName=DOM, AliasName="sales"))
    al = ok(c.call(aliases, "GetAlias", **ADMIN, DomainName=DOM, AliasName="sales"))["AliasInfo"]
    assert al == {"Name": "sales", "Addresses": [f"alice@{DOM}", f"bob@{DOM}"]}
    members = ok(c.call(domains, "GetDomainUsers", **ADMIN, DomainName=DOM))
    assert members["CatchAll"] is True

    # Domain aliases, limited to 2.
    for name in ("alias-one.example", "alias-two.example"):
        ok(c.call(dom_aliases, "AddDomainAliasWithoutMxCheck", **ADMIN, DomainName=DOM, DomainAliasName=name))
    refused(c.call(dom_aliases, "AddDomainAliasWithoutMxCheck", **ADMIN, DomainName=DOM,
                   DomainAliasName="alias-three.example"), -50)
    assert ok(c.call(dom_aliases, "GetAliases", **ADMIN, DomainName=DOM))["DomainAliasNames"] == [
        "alias-one.example", "alias-two.example"]

    # Statistics: true zeros from the counter tables until traffic exists; counts are real.
    today = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    st = ok(c.call(domains, "GetDomainStatistics", **ADMIN, DomainName=DOM,
                   StartDate=today - dt.timedelta(days=30), EndDate=today))
    assert [st[k] for k in ("MessagesReceived", "MessagesSent", "BytesReceived", "BytesSent")] == [0, 0, 0, 0]
    all_stats = ok(c.call(domains, "GetAllDomainStatistics", **ADMIN, StartDate=today - dt.timedelta(days=30),
                          EndDate=today))["Stats"]
    assert [row["DomainName"] for row in all_stats] == [DOM]
    counts = ok(c.call(domains, "GetDomainCounts", **ADMIN, DomainName=DOM))
    assert (counts["Users"], counts["Aliases"], counts["MailingLists"]) == (3, 1, 0)

    # A domain administrator manages its own domain only, and nothing server-wide.
    ok(c.call(users, "UpdateUser", **DA, EmailAddress=f"alice@{DOM}", NewPassword="", NewFirstName="Alicia",
              NewLastName="A", IsDomainAdmin=False))
    refused(c.call(domains, "GetAllDomains", **DA), -5)
    refused(c.call(domains, "AddDomainEx", **DA, DomainName="other.example", Path="",
                   PrimaryDomainAdminUserName="x", PrimaryDomainAdminPassword="Xxxx-pass-1",
                   PrimaryDomainAdminFirstName="", PrimaryDomainAdminLastName="", IP=""), -5)
    ok(c.call(domains, "AddDomainEx", **ADMIN, DomainName="other.example", Path="",
              PrimaryDomainAdminUserName="admin2", PrimaryDomainAdminPassword="Other-pass-1",
              PrimaryDomainAdminFirstName="", PrimaryDomainAdminLastName="", IP=""))
    refused(c.call(users, "GetUsers", **DA, DomainName="other.example"), -5)
    refused(c.call(aliases, "GetAliases", **DA, DomainName="other.example"), -5)
    ok(c.call(aliases, "GetAliases", **DA, DomainName=DOM))
    # A plain user may only check its own credentials.
    plain = {"AuthUserName": f"alice@{DOM}", "AuthPassword": "Wonder-land-1"}
    refused(c.call(users, "GetUsers", **plain, DomainName=DOM), -5)
    assert c.call(users, "LoginValidated", Username=f"alice@{DOM}", Password="Wonder-land-1")["LoginValidated"] is True
    assert c.call(users, "LoginValidated", Username=f"alice@{DOM}", Password="wrong")["LoginValidated"] is False
    refused(c.call(domains, "GetAllDomains", AuthUserName="root", AuthPassword="wrong"), -1)

    # Deletion: store and disk agree afterwards.
    ok(c.call(aliases, "DeleteAlias", **ADMIN, DomainName=DOM, AliasName="sales"))
    assert ok(c.call(domains, "GetDomainUsers", **ADMIN, DomainName=DOM))["CatchAll"] is False
    ok(c.call(users, "DeleteUser", **ADMIN, Username="bob", DomainName=DOM))
    assert not (domain_dir / "users" / "bob").exists()
    refused(c.call(users, "GetUser", **ADMIN, EmailAddress=f"bob@{DOM}"), -31)
    ok(c.call(domains, "DeleteDomain", **ADMIN, DomainName=DOM, DeleteFiles=True))
    assert not domain_dir.exists()
    refused(c.call(domains, "GetDomainSettings", **ADMIN, domainName=DOM), -30)
    assert ok(c.call(domains, "GetAllDomains", **ADMIN))["DomainNames"] == ["other.example"]
