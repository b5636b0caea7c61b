"""General Settings over svcServerAdmin (Get/SetRequestedSystemSettings), each enforced key proven
over SMTP on real sockets, a change through one node seen by the next session of another; and the
setup without a shell (SetSystemAdminPassword from the factory login, renaming oneself), GetEdition
and GetProductInfo as configured."""
from __future__ import annotations

import poplib
import smtplib
from collections.abc import Iterator

import pytest
from conftest import web_listener
from contract_clients import ZeepClient, ok, refused
from mailbox_support import MailboxHarness, mailbox  # noqa: F401  (the fixture: IMAP and POP3 too)
from smtp_peer import Peer, PeerHandler, remote_config
from smtp_support import ADMIN as SYSTEM_ADMIN
from smtp_support import DOMAIN, USER_PASSWORD, MailHarness, make_harness, send
from web_support import WebHarness, web  # noqa: F401  (the fixture: SMTP, SOAP and a loopback DNS server)

from mailsrv.core.config import ConfigError, parse_config

ADMIN = {"AuthUserName": SYSTEM_ADMIN[0], "AuthPassword": SYSTEM_ADMIN[1]}
DOMAIN_ADMIN = {"AuthUserName": f"postmaster@{DOMAIN}", "AuthPassword": "Domain-pass-1"}
USER = {"AuthUserName": f"alice@{DOMAIN}", "AuthPassword": USER_PASSWORD}
MSG = b"From: <ext@example.org>\r\nSubject: settings\r\n\r\nHello\r\n"

# Every server key of settings-keys.md with a value other than its default, as a client may spell
# it (any case), and as it is answered (the table's spelling).
SENT_AND_ANSWERED = [
    ("catchalls", "disabled", "Disabled"),
    ("Bouncing", "requirespf", "RequireSPF"),
    ("AUTORESPONDERS", "Disabled", "Disabled"),
    ("relay", "NOBODY", "Nobody"),
    ("retryminutes", " 5, 10 ,1440", "5,10,1440"),
    ("gatewayenabled", "true", "True"),
    ("gatewaybalance", "leastqueued", "LeastQueued"),
    ("outboundips", "192.0.2.10, 2001:DB8::1", "192.0.2.10,2001:db8::1"),
    ("smtphostname", "Mail.Example.NET", "mail.example.net"),
    ("maxmessagesize", "2048", "2048"),
    ("maxrecipients", "25", "25"),
    ("requiresmtpauthforlocalsenders", "True", "True"),
]
DEFAULTS = ["catchalls=Enabled", "bouncing=Enabled", "autoresponders=Enabled", "relay=AuthenticatedUsers",
            "retryminutes=10,10,10,1440", "gatewayenabled=False", "gatewaybalance=RoundRobin", "outboundips=",
            "smtphostname=mx.test", "maxmessagesize=51200", "maxrecipients=1000",
            "requiresmtpauthforlocalsenders=False"]
KEYS = [key.lower() for key, _, _ in SENT_AND_ANSWERED]


@pytest.fixture
def soap(web) -> ZeepClient:
    return ZeepClient(web.url)


def get(soap: ZeepClient, keys: list[str], auth: dict = ADMIN) -> list[str]:
    return ok(soap.call("svcServerAdmin", "GetRequestedSystemSettings", **auth, reqSettings=keys))["KeyValuePairs"]


def put(soap: ZeepClient, assignments: list[str], auth: dict = ADMIN) -> dict:
    return soap.call("svcServerAdmin", "SetRequestedSystemSettings", **auth, newSettings=assignments)


def setting(soap: ZeepClient, *assignments: str) -> None:
    ok(put(soap, list(assignments)))


# -- the operations -------------------------------------------------------------------------------

def test_every_key_answers_its_default_and_round_trips_in_the_tables_spelling(soap):
    assert get(soap, KEYS) == DEFAULTS  # the [smtp] values stand in for what was never stored
    ok(put(soap, [f"{key}={sent}" for key, sent, _ in SENT_AND_ANSWERED]))
    asked = [key for key, _, _ in SENT_AND_ANSWERED]  # in the case asked
    assert get(soap, asked) == [f"{key}={answered}" for key, _, answered in SENT_AND_ANSWERED]
    assert get(soap, ["MaxRecipients", "relay"]) == ["MaxRecipients=25", "relay=Nobody"]


@pytest.mark.parametrize("bad", [
    "catchalls=sometimes", "bouncing=", "relay=Everyone", "retryminutes=10,,10", "retryminutes=0",
    "gatewayenabled=yes", "gatewaybalance=Random", "outboundips=192.0.2.300", "outboundips=mail.example.net",
    "smtphostname=bad host", "smtphostname=", "smtphostname=-x.example", "maxmessagesize=-1",
    "maxrecipients=ten", "maxrecipients=99999999999", "requiresmtpauthforlocalsenders=1",
])
def test_a_bad_value_is_refused_naming_the_key_and_nothing_of_the_call_is_stored(soap, bad):
    code, message = refused(put(soap, ["maxrecipients=7", bad]))
    assert code == -15 and f"'{bad.split('=')[0]}'" in message
    assert get(soap, KEYS) == DEFAULTS


def test_an_unknown_key_is_refused_by_name_on_get_and_set(soap):
    code, message = refused(put(soap, ["maxrecipients=7", "openrelay=True"]))
    assert code == -15 and "'openrelay'" in message
    code, message = refused(soap.call("svcServerAdmin", "GetRequestedSystemSettings", **ADMIN,
                                      reqSettings=["relay", "NoSuchKey"]))
    assert code == -15 and "'NoSuchKey'" in message
    assert refused(put(soap, ["relay"]))[0] == -15  # not key=value
    assert get(soap, ["maxrecipients"]) == ["maxrecipients=1000"]


@pytest.mark.parametrize("auth", [DOMAIN_ADMIN, USER], ids=["domain admin", "user"])
def test_only_a_system_administrator_reads_or_changes_them(soap, auth):
    assert refused(soap.call("svcServerAdmin", "GetRequestedSystemSettings", **auth, reqSettings=["relay"]))[0] == -5
    assert refused(put(soap, ["relay=Nobody"], auth))[0] == -5
    assert get(soap, ["relay"]) == ["relay=AuthenticatedUsers"]


# -- enforced over SMTP -----------------------------------------------------------------------------

def rcpt(mail: MailHarness, address: str, sender: str = "ext@example.org") -> tuple[int, bytes]:
    with mail.client() as smtp:
        smtp.ehlo()
        assert smtp.mail(sender)[0] == 250
        return smtp.rcpt(address)


def greeting(mail: MailHarness) -> bytes:
    smtp = smtplib.SMTP(local_hostname="client.test", timeout=60)
    try:
        code, text = smtp.connect("127.0.0.1", mail.smtp_port)
        assert code == 220
        return text
    finally:
        smtp.close()


def test_catch_alls_disabled_refuse_an_unknown_local_part_at_rcpt(web, soap):
    mail = web.mail
    mail.server.aliases.add(mail.admin(), DOMAIN, "catcher", ["bob@a.test"])
    mail.server.aliases.set_catch_all(mail.admin(), DOMAIN, "catcher")
    assert rcpt(mail, "anything@a.test")[0] == 250
    setting(soap, "catchalls=Disabled")
    code, text = rcpt(mail, "anything@a.test")
    assert code == 550 and b"no such user" in text
    assert rcpt(mail, "alice@a.test")[0] == 250
    setting(soap, "catchalls=Enabled")  # the domain kept its catch-all for this
    assert rcpt(mail, "anything@a.test")[0] == 250


def test_relay_nobody_refuses_authenticated_users_outside_our_domains(web, soap):
    mail = web.mail
    with mail.authenticated("alice@a.test") as smtp:
        assert smtp.mail("alice@a.test")[0] == 250
        assert smtp.rcpt("friend@example.net")[0] == 250
    setting(soap, "relay=Nobody")
    with mail.authenticated("alice@a.test") as smtp:
        assert smtp.mail("alice@a.test")[0] == 250
        code, text = smtp.rcpt("friend@example.net")
        assert (code, text[:5]) == (550, b"5.7.1")
        assert smtp.rcpt("bob@a.test")[0] == 250  # local delivery is unaffected


def test_relay_nobody_still_lets_a_trusted_client_relay(tmp_path):
    for mail in make_harness(tmp_path, 'relay_networks = ["127.0.0.0/8"]\n'):
        mail.server.system_settings.update({"relay": "Nobody"})
        assert rcpt(mail, "friend@example.net")[0] == 250


def test_smtphostname_is_the_greeting_the_ehlo_name_and_the_received_header(web, soap):
    mail = web.mail
    setting(soap, "smtphostname=mail.example.net")
    assert greeting(mail).startswith(b"mail.example.net ")
    with mail.client() as smtp:
        code, ehlo = smtp.ehlo()
        assert code == 250 and ehlo.split(b"\n")[0] == b"mail.example.net"
        send(smtp, "ext@example.org", ["alice@a.test"], MSG)
    [stored] = mail.messages("alice@a.test")
    assert b"\tby mail.example.net (mailsrv) with ESMTP id " in stored


def test_maxmessagesize_is_advertised_and_enforced(web, soap):
    mail = web.mail
    setting(soap, "maxmessagesize=2")
    with mail.client() as smtp:
        smtp.ehlo()
        assert smtp.esmtp_features["size"] == "2048"
        assert smtp.mail("ext@example.org", ["SIZE=4000"])[0] == 552  # declared too big
        assert smtp.mail("ext@example.org")[0] == 250
        assert smtp.rcpt("alice@a.test")[0] == 250
        code, _ = smtp.data(MSG + b"x" * 3000 + b"\r\n")  # too big, though not declared
        assert code == 552
        send(smtp, "ext@example.org", ["alice@a.test"], MSG)
    assert len(mail.messages("alice@a.test")) == 1


def test_maxrecipients_answers_452_past_the_cap(web, soap):
    setting(soap, "maxrecipients=2")
    with web.mail.client() as smtp:
        smtp.ehlo()
        smtp.mail("ext@example.org")
        assert [smtp.rcpt(a)[0] for a in ("alice@a.test", "bob@a.test", "postmaster@a.test")] == [250, 250, 452]


def test_requiresmtpauthforlocalsenders_makes_every_local_domain_require_it(web, soap):
    mail = web.mail
    mail.server.domains.update(mail.admin(), DOMAIN, {"requiresmtpauthentication": False})
    with mail.client() as smtp:
        smtp.ehlo()
        assert smtp.mail("alice@a.test")[0] == 250
    setting(soap, "requiresmtpauthforlocalsenders=True")
    with mail.client() as smtp:
        smtp.ehlo()
        code, text = smtp.mail("alice@a.test")
        assert (code, text[:5]) == (530, b"5.7.0")
        assert smtp.mail("someone@example.org")[0] == 250  # not one of ours: not concerned
    with mail.authenticated("alice@a.test") as smtp:
        send(smtp, "alice@a.test", ["bob@a.test"], MSG.replace(b"ext@example.org", b"alice@a.test"))


class NamingPeer(PeerHandler):
    """A peer that notes the name each client says EHLO with."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    async def handle_EHLO(self, server, session, envelope, hostname: str, responses: list[str]) -> list[str]:
        self.names.append(hostname)
        session.host_name = hostname
        return responses


def test_outgoing_mail_says_ehlo_with_smtphostname(tmp_path, port):
    handler = NamingPeer()
    peer = Peer("127.0.0.1", port, handler=handler)
    try:
        for mail in make_harness(tmp_path, remote_config(port)):
            mail.dns.add({("peer.test", "MX"): ["10 mx1.peer.test."], ("mx1.peer.test", "A"): ["127.0.0.1"]})
            mail.server.system_settings.update({"smtphostname": "out.example.net"})
            with mail.authenticated("alice@a.test") as smtp:
                send(smtp, "alice@a.test", ["friend@peer.test"], MSG.replace(b"ext@example.org", b"alice@a.test"))
            mail.deliver()
            assert handler.names == ["out.example.net"] and len(peer.arrivals) == 1
    finally:
        peer.stop()


def test_pop3_and_imap_greet_with_smtphostname_and_imap_appends_within_maxmessagesize(mailbox: MailboxHarness):
    mailbox.server.system_settings.update({"smtphostname": "pop.example.net", "maxmessagesize": 100})
    pop = poplib.POP3("127.0.0.1", mailbox.ports["pop3"], timeout=60)
    assert pop.getwelcome() == b"+OK pop.example.net POP3 ready"
    pop.quit()
    imap = mailbox.imap()
    assert imap.welcome.endswith(b" Server ready pop.example.net")
    assert b"APPENDLIMIT=102400" in imap.capability()[1][0].split()  # within the domain's 25600 KB
    imap.logout()


@pytest.fixture
def nodes(web) -> Iterator[tuple[WebHarness, MailHarness]]:
    """The web harness and a second node (its own MailServer and listeners) on the same store."""
    second = MailHarness(web.mail.data_dir, web.mail.clock)
    try:
        yield web, second
    finally:
        second.close()


def test_a_change_through_one_node_holds_for_the_next_session_on_another(nodes):
    web, second = nodes
    soap = ZeepClient(web.url)
    with second.client() as smtp:
        assert smtp.ehlo()[1].split(b"\n")[0] == b"mx.test"
        assert "size" in smtp.esmtp_features
    setting(soap, "smtphostname=other.example.net", "maxmessagesize=0", "maxrecipients=1")
    assert greeting(second).startswith(b"other.example.net ")
    with second.client() as smtp:
        assert smtp.ehlo()[1].split(b"\n")[0] == b"other.example.net"
        assert "size" not in smtp.esmtp_features  # 0: no cap, none advertised
        smtp.mail("ext@example.org")
        assert [smtp.rcpt(a)[0] for a in ("alice@a.test", "bob@a.test")] == [250, 452]


# -- setup without a shell, edition, version ------------------------------------------------------

FACTORY = {"authUsername": "admin", "authPassword": "admin"}


@pytest.fixture
def fresh(live_server) -> ZeepClient:
    """A new installation: only the factory login."""
    return ZeepClient(live_server.url)


def edition(soap: ZeepClient, user: str, password: str) -> dict:
    return soap.call("svcServerAdmin", "GetEdition", AuthUserName=user, AuthPassword=password)


def test_the_factory_login_may_only_set_a_new_administrator_name_and_password(fresh):
    assert refused(edition(fresh, "admin", "admin"))[0] == -2
    assert refused(fresh.call("svcServerAdmin", "AddSystemAdmin", **FACTORY, newAdminUsername="other",
                              newAdminPassword="Other-pass-123", newAdminDescription=""))[0] == -2
    assert refused(fresh.call("svcServerAdmin", "SetSystemAdminPassword", **FACTORY,
                              systemAdminUsername="root", newPassword="admin"))[0] == -21
    ok(fresh.call("svcServerAdmin", "SetSystemAdminPassword", **FACTORY,
                  systemAdminUsername="root", newPassword="N3w-secret-pw"))
    assert refused(edition(fresh, "admin", "admin"))[0] == -1
    assert ok(edition(fresh, "root", "N3w-secret-pw"))["Edition"] == "ENT"
    admins = ok(fresh.call("svcServerAdmin", "ListSystemAdmins", authUsername="root",
                           authPassword="N3w-secret-pw"))["Admins"]
    assert [(a["Username"], a["IsPrimaryAdmin"]) for a in admins] == [("root", True)]


def test_an_administrator_renames_itself_and_still_sets_other_passwords(fresh):
    ok(fresh.call("svcServerAdmin", "SetSystemAdminPassword", **FACTORY,
                  systemAdminUsername="root", newPassword="N3w-secret-pw"))
    root = {"authUsername": "root", "authPassword": "N3w-secret-pw"}
    ok(fresh.call("svcServerAdmin", "AddSystemAdmin", **root, newAdminUsername="deputy",
                  newAdminPassword="Second-pw-123", newAdminDescription=""))
    # A name that exists: that administrator's password, as before.
    ok(fresh.call("svcServerAdmin", "SetSystemAdminPassword", **root, systemAdminUsername="deputy",
                  newPassword="Second-pw-456"))
    assert ok(edition(fresh, "deputy", "Second-pw-456"))
    # The current password is verified by the login: a wrong one changes nothing.
    assert refused(fresh.call("svcServerAdmin", "SetSystemAdminPassword", authUsername="root",
                              authPassword="wrong-password", systemAdminUsername="boss",
                              newPassword="Chief-pw-123"))[0] == -1
    # A new name: the caller takes it and the new password.
    ok(fresh.call("svcServerAdmin", "SetSystemAdminPassword", **root, systemAdminUsername="boss",
                  newPassword="Chief-pw-123"))
    assert refused(edition(fresh, "root", "N3w-secret-pw"))[0] == -1
    assert ok(edition(fresh, "boss", "Chief-pw-123"))["Edition"] == "ENT"
    admins = ok(fresh.call("svcServerAdmin", "ListSystemAdmins", authUsername="boss",
                           authPassword="Chief-pw-123"))["Admins"]
    assert sorted((a["Username"], a["IsPrimaryAdmin"]) for a in admins) == [("boss", True), ("deputy", False)]


def test_a_domain_admin_cannot_set_an_administrator_password(soap):
    for name in ("sysadmin", "newname"):
        assert refused(soap.call("svcServerAdmin", "SetSystemAdminPassword", authUsername=f"postmaster@{DOMAIN}",
                                 authPassword="Domain-pass-1", systemAdminUsername=name,
                                 newPassword="Taken-over-123"))[0] == -5
    assert ok(edition(soap, *SYSTEM_ADMIN))


def test_edition_and_reported_version_come_from_the_configuration(make_server):
    server = make_server('[product]\nedition = "FREE"\nreported_version = "10.7"\n')
    server.admins.reset_primary(*SYSTEM_ADMIN)
    with web_listener(server) as url:
        soap = ZeepClient(url)
        assert ok(edition(soap, *SYSTEM_ADMIN))["Edition"] == "FREE"
        info = ok(soap.call("svcProductInfo", "GetProductInfo", **ADMIN))
        assert info["ProductVersion"] == "10.7"
    with pytest.raises(ConfigError, match="product.edition"):
        parse_config('[product]\nedition = "Enterprise"\n')

