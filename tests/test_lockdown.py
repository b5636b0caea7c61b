"""The seed's "Locking Down Your Server", run through the API as a control panel would (SOAP), each
step proven over SMTP on real sockets.

One function per step (`disable_catch_alls`, `restrict_bounces_and_auto_responders`,
`relay_nobody`, `whitelist_the_relaying_client`, `require_smtp_authentication`): each makes its SOAP
calls and then shows over SMTP what changed. A test runs each step alone on a fresh server, and one
runs the whole procedure in the seed's order on one server, so that a later step is shown not to
undo an earlier one."""
from __future__ import annotations

import smtplib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from contract_clients import ZeepClient, ok
from smtp_peer import Peer, remote_config
from smtp_support import ADMIN as SYSTEM_ADMIN
from smtp_support import DOMAIN, MailHarness, make_harness, send
from web_support import WebHarness

ADMIN = {"AuthUserName": SYSTEM_ADMIN[0], "AuthPassword": SYSTEM_ADMIN[1]}
TRUSTED_IP = "127.0.0.2"  # in the relay networks; every other client here connects from 127.0.0.1
WHITELISTED_IP = "127.0.0.3"  # e.g. the primary server of an outgoing gateway: on the SMTP IP whitelist


def message(sender: str) -> bytes:
    return f"From: <{sender}>\r\nSubject: lockdown\r\n\r\nHello\r\n".encode()


@dataclass
class Lab:
    mail: MailHarness
    soap: ZeepClient
    peer: Peer  # the remote world: peer.test, and where DSNs to pass.example / fail.example go


@pytest.fixture
def lab(tmp_path, port) -> Iterator[Lab]:
    extra = f'relay_networks = ["{TRUSTED_IP}"]\n' + remote_config(port)
    for mail in make_harness(tmp_path, extra):
        mail.dns.add({("peer.test", "MX"): ["10 mx1.peer.test."], ("mx1.peer.test", "A"): ["127.0.0.1"],
                      ("pass.example", "TXT"): ['"v=spf1 ip4:127.0.0.1 -all"'],
                      ("pass.example", "MX"): ["10 mx1.peer.test."],
                      # A spoofed sender: its SPF record does not list us, the client's address.
                      ("fail.example", "TXT"): ['"v=spf1 ip4:192.0.2.1 -all"'],
                      ("fail.example", "MX"): ["10 mx1.peer.test."]})
        # Before the lockdown: a.test lets anyone send as its users, and has a catch-all.
        mail.server.domains.update(mail.admin(), DOMAIN, {"requiresmtpauthentication": False})
        mail.server.aliases.add(mail.admin(), DOMAIN, "catcher", ["bob@a.test"])
        mail.server.aliases.set_catch_all(mail.admin(), DOMAIN, "catcher")
        # carol forwards to a peer mailbox that refuses: what an accepted message that cannot be
        # delivered looks like, for the bounce step.
        mail.add_user(DOMAIN, "carol", forwarding_addresses=["gone@peer.test"], delete_on_forward=True)
        peer = Peer("127.0.0.1", port)
        peer.handler.refuse["gone@peer.test"] = "550 5.1.1 <gone@peer.test>: no such user"
        web = WebHarness(mail)
        try:
            yield Lab(mail, ZeepClient(web.url), peer)
        finally:
            web.stop()
            peer.stop()


def system_settings(lab: Lab, *assignments: str) -> None:
    ok(lab.soap.call("svcServerAdmin", "SetRequestedSystemSettings", **ADMIN, newSettings=list(assignments)))


def client(lab: Lab, source: str = "127.0.0.1") -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", lab.mail.smtp_port, local_hostname="client.test", timeout=60,
                        source_address=(source, 0))


def rcpt(lab: Lab, sender: str, recipient: str, source: str = "127.0.0.1") -> int:
    with client(lab, source) as smtp:
        smtp.ehlo()
        code, _ = smtp.mail(sender)
        return code if code != 250 else smtp.rcpt(recipient)[0]


def dsn_recipients(lab: Lab) -> list[list[str]]:
    lab.mail.deliver()
    return [arrival.recipients for arrival in lab.peer.arrivals if arrival.sender in ("", "<>")]


# -- the steps ----------------------------------------------------------------------------------------

def disable_catch_alls(lab: Lab) -> None:
    assert rcpt(lab, "someone@pass.example", "anything@a.test") == 250
    system_settings(lab, "catchalls=Disabled")
    assert rcpt(lab, "someone@pass.example", "anything@a.test") == 550
    assert rcpt(lab, "someone@pass.example", "alice@a.test") == 250


def restrict_bounces_and_auto_responders(lab: Lab) -> None:
    system_settings(lab, "bouncing=RequireSPF", "autoresponders=RequireSPF")
    for sender in ("spoofed@fail.example", "someone@pass.example"):
        with client(lab) as smtp:
            send(smtp, sender, ["carol@a.test"], message(sender))
    # The forwarded copy is refused by the peer: only the sender that passed SPF hears of it.
    assert dsn_recipients(lab) == [["someone@pass.example"]], [(a.sender, a.recipients) for a in lab.peer.arrivals]


def relay_nobody(lab: Lab) -> None:
    with lab.mail.authenticated("alice@a.test") as smtp:
        smtp.mail("alice@a.test")
        assert smtp.rcpt("friend@peer.test")[0] == 250
    system_settings(lab, "relay=Nobody")
    with lab.mail.authenticated("alice@a.test") as smtp:
        smtp.mail("alice@a.test")
        assert smtp.rcpt("friend@peer.test")[0] == 550  # a login alone relays nothing now
        assert smtp.rcpt("bob@a.test")[0] == 250
    assert rcpt(lab, "someone@pass.example", "friend@peer.test") == 550
    assert rcpt(lab, "forms@a.test", "friend@peer.test", source=TRUSTED_IP) == 250  # a trusted client does


def whitelist_the_relaying_client(lab: Lab) -> None:
    """The seed's outgoing gateway: relay=Nobody, and the primary's address on the SMTP IP whitelist."""
    system_settings(lab, "relay=Nobody")
    assert rcpt(lab, "someone@pass.example", "friend@peer.test", source=WHITELISTED_IP) == 550
    ok(lab.soap.call("svcServerAdmin", "SetWhitelistEntry", authUsername=ADMIN["AuthUserName"],
                     authPassword=ADMIN["AuthPassword"], ipAddress=WHITELISTED_IP, ipRangeStart="", ipRangeEnd="",
                     whitelistSMTP=True, whitelistPOP=False, whitelistIMAP=False, description="primary"))
    assert rcpt(lab, "someone@pass.example", "friend@peer.test", source=WHITELISTED_IP) == 250
    with client(lab, WHITELISTED_IP) as smtp:  # and the message goes out
        send(smtp, "someone@pass.example", ["friend@peer.test"], message("someone@pass.example"))
    lab.mail.deliver()
    assert any(a.recipients == ["friend@peer.test"] for a in lab.peer.arrivals)
    # Only that address: the others still relay nothing, authenticated or not.
    assert rcpt(lab, "someone@pass.example", "friend@peer.test") == 550
    assert rcpt(lab, "someone@pass.example", "friend@peer.test", source=WHITELISTED_IP) == 250
    with lab.mail.authenticated("alice@a.test") as smtp:
        smtp.mail("alice@a.test")
        assert smtp.rcpt("friend@peer.test")[0] == 550


def require_smtp_authentication(lab: Lab) -> None:
    """In the domain defaults (new domains) and propagated to every existing domain (svcGlobalUpdate)."""
    assert rcpt(lab, "alice@a.test", "bob@a.test") == 250  # a.test lets anyone send as its users
    ok(lab.soap.call("svcDomainAdmin", "SetRequestedDomainDefaults", **ADMIN,
                     newSettings=["defaultrequiresmtpauthentication=True"]))
    ok(lab.soap.call("svcGlobalUpdate", "UpdateAllDomainSettings", **ADMIN,
                     newSettings=["requiresmtpauthentication=True"]))
    assert lab.mail.server.jobs.run_until_idle("lockdown-node") >= 1  # what every node's job loop does
    state = lab.soap.call("svcGlobalUpdate", "GetGlobalUpdateStatus", **ADMIN)["KeyValuePairs"]
    assert "state=Finished" in state, state
    assert rcpt(lab, "alice@a.test", "bob@a.test") == 530
    ok(lab.soap.call("svcDomainAdmin", "AddDomainEx", **ADMIN, DomainName="b.test", Path="",
                     PrimaryDomainAdminUserName="postmaster", PrimaryDomainAdminPassword="Domain-pass-2",
                     PrimaryDomainAdminFirstName="", PrimaryDomainAdminLastName="", IP=""))
    settings = lab.soap.call("svcDomainAdmin", "GetRequestedDomainSettings", **ADMIN, DomainName="b.test",
                             requestedSettings=["requiresmtpauthentication"])
    assert settings["settingValues"] == ["requiresmtpauthentication=True"]
    assert rcpt(lab, "postmaster@b.test", "alice@a.test") == 530
    with lab.mail.authenticated("alice@a.test") as smtp:  # users who log in send as before
        send(smtp, "alice@a.test", ["bob@a.test"], message("alice@a.test"))


STEPS: list[Callable[[Lab], None]] = [disable_catch_alls, restrict_bounces_and_auto_responders, relay_nobody,
                                      whitelist_the_relaying_client, require_smtp_authentication]


@pytest.mark.parametrize("step", STEPS, ids=[step.__name__ for step in STEPS])
def test_each_step_alone(lab, step):
    step(lab)


def test_the_whole_procedure_in_order(lab):
    for step in STEPS:
        step(lab)
    # Every step still holds at the end.
    assert rcpt(lab, "someone@pass.example", "anything@a.test") == 550
    assert rcpt(lab, "alice@a.test", "bob@a.test") == 530
    assert rcpt(lab, "someone@pass.example", "friend@peer.test") == 550
    assert rcpt(lab, "someone@pass.example", "friend@peer.test", source=WHITELISTED_IP) == 250
