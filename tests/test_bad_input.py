"""Every class of bad input gets its stable ResultCode and a message, over the live HTTP binding."""
from __future__ import annotations

import pytest

from contract_clients import HttpClient

ADMIN = {"AuthUserName": "root", "AuthPassword": "Gr8-secret-pw"}
DOM = "example.com"


@pytest.fixture
def c(live_server):
    live_server.server.admins.reset_primary("root", "Gr8-secret-pw")
    client = HttpClient(live_server.url, "GET")
    add_domain(client, DOM)
    return client


def add_domain(c, name, **extra):
    params = dict(ADMIN, DomainName=name, Path="", PrimaryDomainAdminUserName="postmaster",
                  PrimaryDomainAdminPassword="Domain-pass-1", PrimaryDomainAdminFirstName="",
                  PrimaryDomainAdminLastName="", IP="")
    params.update(extra)
    return c.call("svcDomainAdmin", "AddDomainEx", **params)


def answer(result):
    assert result["Result"] is False, result
    return result["ResultCode"], result["Message"]


@pytest.mark.parametrize("name, fragment", [
    ("", "A domain name is required."),
    ("localhost", "needs at least two labels"),
    ("a..example.com", "label '' must be 1-63"),
    ("-bad.example.com", "label '-bad' must be 1-63"),
    ("x" * 64 + ".com", "must be 1-63 letters"),
    (".".join(["abcdefghi"] * 26) + ".com", "longer than 253 characters"),
    ("under_score.com", "label 'under_score'"),
    ("space here.com", "label 'space here'"),
    ("example.123", "ends in a numeric label"),
    ("../../etc.com", "is not a valid domain name"),
    ("xn--zz.test", "label 'xn--zz' is not a valid A-label"),
    ("mail.xn--ab.test", "label 'xn--ab' is not a valid A-label"),
])
def test_domain_names_refused(c, name, fragment):
    code, message = answer(add_domain(c, name))
    assert code == -10 and fragment in message


def test_invalid_a_label_refused_wherever_a_domain_is_named(c):
    assert answer(c.call("svcDomainAliasAdmin", "AddDomainAliasWithoutMxCheck", **ADMIN, DomainName=DOM,
                         DomainAliasName="xn--zz.test"))[0] == -10
    assert answer(c.call("svcAliasAdmin", "AddAlias", **ADMIN, DomainName=DOM, AliasName="team",
                         Addresses=["someone@xn--zz.test"]))[0] == -12
    assert "xn--zz.test" not in c.call("svcDomainAdmin", "GetAllDomains", **ADMIN)["DomainNames"]


def test_idna_domain_is_stored_in_ascii_form(c):
    assert add_domain(c, "Bücher.Example")["Result"] is True
    assert "xn--bcher-kva.example" in c.call("svcDomainAdmin", "GetAllDomains", **ADMIN)["DomainNames"]
    assert answer(add_domain(c, "xn--bcher-kva.example"))[0] == -40


@pytest.mark.parametrize("user", ["", "has space", "x" * 65, "slash/name", ".leadingdot", "two..dots"])
def test_user_names_refused(c, user):
    code, message = answer(c.call("svcUserAdmin", "AddUser", **ADMIN, NewUsername=user, NewPassword="Good-pass-12",
                                  DomainName=DOM, FirstName="", LastName="", IsDomainAdmin=False))
    assert code == -11 and "user name" in message


@pytest.mark.parametrize("target", ["notanaddress", "user@", "@example.com", "a b@example.com", "x@bad_domain.com"])
def test_addresses_refused(c, target):
    code, message = answer(c.call("svcAliasAdmin", "AddAlias", **ADMIN, DomainName=DOM, AliasName="team",
                                  Addresses=[target]))
    assert code == -12 and target in message


def test_numbers_out_of_range(c):
    full = dict(ADMIN, DomainName="ports.example", Path="", PrimaryDomainAdminUserName="postmaster",
                PrimaryDomainAdminPassword="Domain-pass-1", PrimaryDomainAdminFirstName="",
                PrimaryDomainAdminLastName="", IP="", ImapPort=70000, PopPort=110, SmtpPort=25, MaxAliases=0,
                MaxDomainSizeInMB=0, MaxDomainUsers=0, MaxMailboxSizeInMB=0, MaxMessageSize=0, MaxRecipients=0,
                MaxDomainAliases=0, MaxLists=0, ShowDomainAliasMenu=True, ShowContentFilteringMenu=True,
                ShowSpamMenu=True, ShowStatsMenu=True, RequireSmtpAuthentication=True, ShowListMenu=True,
                ListCommandAddress="")
    assert answer(c.call("svcDomainAdmin", "AddDomain", **full)) == (-13, "ImapPort must be a whole number from 0 to 65535.")
    full.update(ImapPort=143, MaxDomainUsers=-1)
    assert answer(c.call("svcDomainAdmin", "AddDomain", **full))[0] == -13
    full.update(MaxDomainUsers=0, MaxDomainSizeInMB=3_000_000)
    assert answer(c.call("svcDomainAdmin", "AddDomain", **full))[0] == -13
    for bad in ("maxusers=-5", "maxusers=99999999999", "maxusers=ten", "isenabled=maybe", "imapport=70000"):
        code, message = answer(c.call("svcDomainAdmin", "SetRequestedDomainSettings", **ADMIN, DomainName=DOM,
                                      newSettings=[bad]))
        assert code in (-15, -13) and bad.split("=")[0] in message
    assert answer(c.call("svcDomainAdmin", "GenerateDomainKeysCert", **ADMIN, DomainName=DOM, KeySize=100,
                         selector="mail"))[0] == -13


def test_duplicates(c):
    assert answer(add_domain(c, "EXAMPLE.com")) == (-40, "The domain example.com already exists.")
    user = dict(ADMIN, NewUsername="alice", NewPassword="Wonder-land-1", DomainName=DOM, FirstName="", LastName="",
                IsDomainAdmin=False)
    assert c.call("svcUserAdmin", "AddUser", **user)["Result"] is True
    assert answer(c.call("svcUserAdmin", "AddUser", **user))[0] == -41
    alias = dict(ADMIN, DomainName=DOM, AliasName="sales", Addresses=[f"alice@{DOM}"])
    assert c.call("svcAliasAdmin", "AddAlias", **alias)["Result"] is True
    assert answer(c.call("svcAliasAdmin", "AddAlias", **alias))[0] == -42
    da = dict(ADMIN, DomainName=DOM, DomainAliasName="alias.example")
    assert c.call("svcDomainAliasAdmin", "AddDomainAliasWithoutMxCheck", **da)["Result"] is True
    assert answer(c.call("svcDomainAliasAdmin", "AddDomainAliasWithoutMxCheck", **da))[0] == -43
    assert answer(add_domain(c, "alias.example"))[0] == -40
    admin = dict(authUsername="root", authPassword="Gr8-secret-pw", newAdminUsername="ops",
                 newAdminPassword="Night-shift-1", newAdminDescription="")
    assert c.call("svcServerAdmin", "AddSystemAdmin", **admin)["Result"] is True
    assert answer(c.call("svcServerAdmin", "AddSystemAdmin", **admin))[0] == -44


def test_missing_parents_and_objects(c):
    assert answer(c.call("svcUserAdmin", "AddUser", **ADMIN, NewUsername="a", NewPassword="Good-pass-12",
                         DomainName="nowhere.example", FirstName="", LastName="", IsDomainAdmin=False)) == (
        -30, "The domain nowhere.example does not exist.")
    assert answer(c.call("svcAliasAdmin", "AddAlias", **ADMIN, DomainName="nowhere.example", AliasName="a",
                         Addresses=[f"postmaster@{DOM}"]))[0] == -30
    assert answer(c.call("svcUserAdmin", "GetUser", **ADMIN, EmailAddress=f"ghost@{DOM}"))[0] == -31
    assert answer(c.call("svcAliasAdmin", "DeleteAlias", **ADMIN, DomainName=DOM, AliasName="ghost"))[0] == -32
    assert answer(c.call("svcAliasAdmin", "SetCatchAll", **ADMIN, DomainName=DOM, AliasName="ghost"))[0] == -32
    assert answer(c.call("svcDomainAliasAdmin", "DeleteDomainAlias", **ADMIN, DomainName=DOM,
                         DomainAliasName="ghost.example"))[0] == -33
    assert answer(c.call("svcServerAdmin", "DeleteSystemAdmin", authUsername="root", authPassword="Gr8-secret-pw",
                         systemAdminUsername="ghost"))[0] == -34


def test_password_rules(c):
    for password, fragment in (("short", "at least 8"), ("alice-Long-1", "must not contain the user name"),
                               (" padded-pass ", "spaces")):
        code, message = answer(c.call("svcUserAdmin", "AddUser", **ADMIN, NewUsername="alice", NewPassword=password,
                                      DomainName=DOM, FirstName="", LastName="", IsDomainAdmin=False))
        assert code == -21 and fragment in message
    assert answer(c.call("svcServerAdmin", "SetSystemAdminPassword", authUsername="root",
                         authPassword="Gr8-secret-pw", systemAdminUsername="root", newPassword="x"))[0] == -21


def test_paths_outside_the_data_directory(c):
    # (Not /etc/mail: Debian's spamassassin, which the content filter tests install, creates it.)
    for path in ("/var/mailsrv-elsewhere/mail", "../../escape"):
        code, message = answer(add_domain(c, "pathy.example", Path=path))
        assert code == -14 and "inside the data directory" in message


def test_factory_login_only_allows_setup(live_server):
    c = HttpClient(live_server.url, "GET")
    code, message = answer(c.call("svcDomainAdmin", "GetAllDomains", AuthUserName="admin", AuthPassword="admin"))
    assert code == -2 and "Setup must be completed" in message


def test_brute_force_lockout_same_answer_for_existing_and_unknown_names(live_server):
    live_server.server.admins.reset_primary("root", "Gr8-secret-pw")
    c = HttpClient(live_server.url, "GET")
    limit = live_server.server.config.security.max_failures_per_login
    for name in ("root", "nosuchadmin"):
        answers = {answer(c.call("svcDomainAdmin", "GetAllDomains", AuthUserName=name, AuthPassword="bad"))
                   for _ in range(limit)}
        assert answers == {(-1, "Failed to log in: the user name or password is incorrect.")}
        locked = answer(c.call("svcDomainAdmin", "GetAllDomains", AuthUserName=name, AuthPassword="bad"))
        assert locked == (-3, "Failed to log in: too many failed attempts; try again later.")
    # Even the right password is refused during the cool-down.
    assert answer(c.call("svcDomainAdmin", "GetAllDomains", **ADMIN))[0] == -3


def test_ip_restriction_applies_to_the_client_address(c):
    sa = {"authUsername": "root", "authPassword": "Gr8-secret-pw"}
    assert c.call("svcServerAdmin", "AddSystemAdmin", **sa, newAdminUsername="remote", newAdminPassword="Far-away-pass-1",
                  newAdminDescription="")["Result"] is True
    assert answer(c.call("svcServerAdmin", "AddIPRestrictionToSystemAdmin", **sa, adminUsername="remote",
                         ipAddressOrRange="not-an-ip", restrictionDescription=""))[0] == -16
    assert c.call("svcServerAdmin", "AddIPRestrictionToSystemAdmin", **sa, adminUsername="remote",
                  ipAddressOrRange="10.0.0.0/8", restrictionDescription="office")["Result"] is True
    remote = {"authUsername": "remote", "authPassword": "Far-away-pass-1"}
    assert answer(c.call("svcServerAdmin", "ListSystemAdmins", **remote))[0] == -1
    assert c.call("svcServerAdmin", "AddIPRestrictionToSystemAdmin", **sa, adminUsername="remote",
                  ipAddressOrRange="127.0.0.1-127.0.0.9", restrictionDescription="")["Result"] is True
    admins = c.call("svcServerAdmin", "ListSystemAdmins", **remote)
    assert admins["Result"] is True
    assert {a["Username"]: a["RestrictedByIp"] for a in admins["Admins"]} == {"remote": True, "root": False}
    assert c.call("svcServerAdmin", "RemoveIPRestrictionFromSystemAdmin", **sa, adminUsername="remote",
                  ipAddressOrRange="127.0.0.1-127.0.0.9")["Result"] is True
    assert answer(c.call("svcServerAdmin", "ListSystemAdmins", **remote))[0] == -1
