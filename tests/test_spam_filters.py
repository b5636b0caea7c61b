"""SpamAssassin scoring (mailsrv.mta.filtering.spamd) with a real spamd on loopback, the spam actions
by level, spamd trouble (stopped, garbage, silent, a message over the size limit) never costing mail,
and the SOAP operations that configure it (svcServerAdmin Add/Delete/ListSpamAssassinServer(s),
svcSpamAdmin), judged by what SMTP answers and what the Maildir holds."""
from __future__ import annotations

import os
import smtplib

import pytest
from content_daemons import GTUBE, GarbagePeer, start_spamd
from contract_clients import ZeepClient, ok, refused
from smtp_peer import Peer, remote_config
from smtp_support import ADMIN, MailHarness, make_harness, send, soap, mail  # noqa: F401  (fixtures)

from mailsrv.core.errors import ResultCode

HAM = b"From: Ext <ext@example.org>\r\nTo: alice@a.test\r\nSubject: lunch\r\n\r\nSee you at noon.\r\n"
SPAM = b"From: Ext <ext@example.org>\r\nTo: alice@a.test\r\nSubject: offer\r\n\r\n" + GTUBE + b"\r\n"
SERVER_AUTH = {"authUsername": ADMIN[0], "authPassword": ADMIN[1]}
AUTH = {"AuthUserName": ADMIN[0], "AuthPassword": ADMIN[1]}


@pytest.fixture(scope="module")
def spamd(tmp_path_factory):  # type: ignore[no-untyped-def]
    daemon = start_spamd(tmp_path_factory.mktemp("spamd"))
    yield daemon
    daemon.stop()


def add_server(soap: ZeepClient, name: str, port: int, address: str = "127.0.0.1") -> None:
    ok(soap.call("svcServerAdmin", "AddSpamAssassinServer", **SERVER_AUTH, serverName=name, ipAddress=address,
                 serverPort=port))


def antispam(soap: ZeepClient, *settings: str) -> dict:
    return soap.call("svcSpamAdmin", "SetAntispamOptions", **AUTH, newSettings=list(settings))


def servers(soap: ZeepClient) -> dict[str, dict]:
    result = ok(soap.call("svcServerAdmin", "ListSpamAssassinServers", **SERVER_AUTH))
    return {s["Name"]: s for s in result["Servers"] or []}


def received(mail: MailHarness, folder: str = "") -> list[bytes]:
    new = mail.maildir("alice@a.test") / folder / "new"
    return [(new / name).read_bytes() for name in sorted(os.listdir(new))] if new.exists() else []


def send_one(mail: MailHarness, content: bytes) -> None:
    with mail.client() as smtp:
        send(smtp, "ext@example.org", ["alice@a.test"], content)
    mail.deliver()


def header(message: bytes, name: str) -> str:
    head = message.partition(b"\r\n\r\n")[0].decode()
    values = [line.split(":", 1)[1].strip() for line in head.replace("\r\n\t", " ").split("\r\n")
              if line.lower().startswith(name.lower() + ":")]
    assert len(values) == 1, (name, head)
    return values[0]


def test_gtube_is_moved_to_junk_and_ham_reaches_the_inbox(mail, soap, spamd):
    add_server(soap, "local", spamd.port)
    ok(antispam(soap, "spamassassinenabled=True"))
    send_one(mail, SPAM)
    send_one(mail, HAM)
    [junk] = received(mail, ".Junk")
    assert header(junk, "X-Spam-Status").startswith("Yes, score=") and "level=high" in header(junk, "X-Spam-Status")
    assert "GTUBE" in header(junk, "X-Spam-Status") and float(header(junk, "X-Spam-Score")) >= 1000
    [ham] = received(mail)
    assert header(ham, "X-Spam-Status").startswith("No, score=") and ham.endswith(HAM)
    listed = servers(soap)["local"]
    assert (listed["IPAddress"], listed["Port"], listed["TotalConnections"], listed["ConsecutiveFailures"],
            listed["Enabled"]) == ("127.0.0.1", spamd.port, 2, 0, True)


def test_each_level_takes_its_action(mail, soap, spamd):
    add_server(soap, "local", spamd.port)
    ok(antispam(soap, "spamassassinenabled=True", "spamhighscore=0", "spammediumscore=500",
                "spammediumaction=PrefixSubject", "spammediumargs=[Probably spam]"))
    send_one(mail, SPAM)
    [prefixed] = received(mail)
    assert header(prefixed, "Subject") == "[Probably spam] offer"
    ok(antispam(soap, "spammediumaction=AddHeader", "spammediumargs=X-Spam-Verdict: medium"))
    send_one(mail, SPAM)
    [marked] = [m for m in received(mail) if b"[Probably spam]" not in m]
    assert header(marked, "X-Spam-Verdict") == "medium" and header(marked, "Subject") == "offer"
    ok(antispam(soap, "spammediumaction=Delete"))
    send_one(mail, SPAM)  # accepted (250) and delivered to nobody
    assert len(received(mail)) == 2 and received(mail, ".Junk") == []


def test_spamd_stopped_silent_or_answering_garbage_never_costs_mail(mail, soap, spamd, tmp_path):
    stopped = start_spamd(tmp_path / "stopped")
    stopped.stop()
    garbage, silent = GarbagePeer(b"HTTP/1.0 200 OK\r\n\r\nnot spamd\r\n"), GarbagePeer(b"")
    try:
        add_server(soap, "stopped", stopped.port)
        add_server(soap, "garbage", garbage.port)
        add_server(soap, "silent", silent.port)
        ok(antispam(soap, "spamassassinenabled=True", "spamassassintimeoutms=300"))
        send_one(mail, SPAM)
        [unscored] = received(mail)
        assert header(unscored, "X-Spam-Status").startswith("Unknown") and unscored.endswith(SPAM)
        assert {name: s["ConsecutiveFailures"] for name, s in servers(soap).items()} == \
            {"stopped": 1, "garbage": 1, "silent": 1}
        # A live server beside them: every message is scored, whichever server's turn it is; the
        # failed ones rest (cool-down) and are not asked again meanwhile.
        add_server(soap, "local", spamd.port)
        send_one(mail, SPAM)
        send_one(mail, SPAM)
        assert len(received(mail, ".Junk")) == 2
        assert servers(soap)["local"]["TotalConnections"] == 2
        assert servers(soap)["garbage"]["TotalConnections"] == 1
    finally:
        garbage.close()
        silent.close()


def test_a_message_over_the_size_limit_is_accepted_unscored(mail, soap, spamd):
    add_server(soap, "local", spamd.port)
    ok(antispam(soap, "spamassassinenabled=True", "spamassassinmaxkb=1"))
    large = SPAM + (b"x" * 70 + b"\r\n") * 30
    send_one(mail, large)
    [stored] = received(mail)
    assert header(stored, "X-Spam-Status").startswith("Unknown") and servers(soap)["local"]["TotalConnections"] == 0


def test_authenticated_senders_are_not_scored(mail, soap, spamd):
    add_server(soap, "local", spamd.port)
    ok(antispam(soap, "spamassassinenabled=True"))
    with mail.authenticated("bob@a.test") as smtp:
        send(smtp, "bob@a.test", ["alice@a.test"], SPAM.replace(b"ext@example.org", b"bob@a.test"))
    mail.deliver()
    [stored] = received(mail)
    assert b"X-Spam-Status" not in stored and servers(soap)["local"]["TotalConnections"] == 0


def test_spamassassin_server_operations_refuse_bad_input(mail, soap):
    add = lambda **p: soap.call("svcServerAdmin", "AddSpamAssassinServer", **SERVER_AUTH, **p)  # noqa: E731
    assert refused(add(serverName="", ipAddress="127.0.0.1", serverPort=783))[0] == ResultCode.INVALID_SPAMASSASSIN_SERVER
    assert refused(add(serverName="a", ipAddress="not an address!", serverPort=783))[0] == \
        ResultCode.INVALID_SPAMASSASSIN_SERVER
    assert refused(add(serverName="a", ipAddress="127.0.0.1", serverPort=70000))[0] == \
        ResultCode.INVALID_SPAMASSASSIN_SERVER
    ok(add(serverName="a", ipAddress="::1", serverPort=783))
    assert refused(add(serverName="a", ipAddress="127.0.0.1", serverPort=783))[0] == ResultCode.SPAMASSASSIN_SERVER_EXISTS
    assert servers(soap)["a"]["IPAddress"] == "::1"
    ok(soap.call("svcServerAdmin", "DeleteSpamAssassinServer", **SERVER_AUTH, serverName="a"))
    assert refused(soap.call("svcServerAdmin", "DeleteSpamAssassinServer", **SERVER_AUTH, serverName="a"))[0] == \
        ResultCode.SPAMASSASSIN_SERVER_NOT_FOUND
    assert servers(soap) == {}
    alice = {"authUsername": "alice@a.test", "authPassword": "User-pass-123"}
    assert refused(soap.call("svcServerAdmin", "ListSpamAssassinServers", **alice))[0] != 0


def test_antispam_options_are_checked_before_any_is_stored(mail, soap):
    code, message = refused(antispam(soap, "spamlowscore=7", "spamhighaction=Explode"))
    assert code == ResultCode.INVALID_SETTING and "spamhighaction" in message
    assert refused(antispam(soap, "rbls=not a zone=5"))[0] == ResultCode.INVALID_SETTING
    assert refused(antispam(soap, "rbls=bl.example.org=-1"))[0] == ResultCode.INVALID_SETTING
    assert refused(antispam(soap, "nosuchkey=1"))[0] == ResultCode.INVALID_SETTING
    assert mail.server.content_filters.antispam()["spamlowscore"] == 5.0
    ok(antispam(soap, "rbls=BL.Example.org.=2.5, other.example.net=1,off.example.com=0"))
    assert ok(soap.call("svcSpamAdmin", "ListRBLs", **AUTH))["KeyValuePairs"] == \
        ["bl.example.org=2.5", "other.example.net=1"]
    assert ok(soap.call("svcSpamAdmin", "GetSPFSettings", **AUTH))["Result"] is True
    user = {"AuthUserName": "alice@a.test", "AuthPassword": "User-pass-123"}
    assert refused(soap.call("svcSpamAdmin", "ListRBLs", **user))[0] != 0
    assert refused(soap.call("svcSpamAdmin", "SetAntispamOptions", **user, newSettings=["spamlowscore=1"]))[0] != 0


def test_an_incoming_gateways_own_spam_actions_apply_to_its_domains(tmp_path, port):
    """Scored by a blocklist alone (no spamd needed): the gateway's high action prefixes the subject
    of the mail it hands to its primary, where the server's own high action would file into Junk."""
    for mail in make_harness(tmp_path, remote_config(port)):
        primary = Peer("127.0.0.1", port)
        try:
            mail.server.incoming_gateways.add(mail.admin(), {
                "gatewayMode": "Gateway", "IPAddress": f"127.0.0.1:{port}", "domainVerifyType": "List",
                "domainsToForward": ["gw.test"], "userVerifyType": "None", "enableSpamActions": True,
                "spamHighAction": "PrefixSubject", "spamHighArgs": "[GW-SPAM]"})
            mail.dns.add({("2.0.0.127.bl.test", "A"): ["127.0.0.2"]})
            mail.server.content_filters.set_antispam(mail.admin(), ["rbls=bl.test=25"])
            # From 127.0.0.2: 127.0.0.1 is the primary's own address (the gateway's loop rule).
            with smtplib.SMTP("127.0.0.1", mail.smtp_port, source_address=("127.0.0.2", 0), timeout=60) as smtp:
                send(smtp, "ext@example.org", ["someone@gw.test"], SPAM.replace(b"alice@a.test", b"someone@gw.test"))
                send(smtp, "ext@example.org", ["alice@a.test"], SPAM)
            mail.deliver()
            [handed] = primary.arrivals
            assert b"\r\nSubject: [GW-SPAM] offer\r\n" in handed.content and b"X-Spam-Score: 25.0" in handed.content
            assert len(received(mail, ".Junk")) == 1
        finally:
            primary.stop()
