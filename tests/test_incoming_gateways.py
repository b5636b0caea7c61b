"""Backup MX and incoming gateway (svcServerAdmin `AddIncomingGateway` …; mailsrv.directory.incoming_gateways,
mailsrv.mta.incoming_gateways): the operations, their refusals and rights, and two real servers on
loopback — a "primary" hosting a.test (its own data directory and SQLite database, its SMTP and web
listeners) and a "backup" (the test database) accepting a.test's mail and handing it on.

Clients connect to the backup from 127.0.0.2: 127.0.0.1 is the primary's own address, from which the
backup refuses the forwarded domains' mail (the loop rule)."""
from __future__ import annotations

import datetime as dt
import http.server
import smtplib
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import web_listener
from contract_clients import ZeepClient
from smtp_support import ADMIN, DOMAIN, START, MailHarness, make_harness

from mailsrv.access.smtp import start_listener
from mailsrv.core.clock import ManualClock
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.core.names import ServerAddress
from mailsrv.directory.incoming_gateways import IncomingGateway, parse_primary
from mailsrv.mta.incoming_gateways import PrimaryApi, PrimaryUnreachable
from mailsrv.mta.policy import RELAY_DENIED, Policy, RecipientCheck, Reply
from mailsrv.serve import tcp_listener

SA = "svcServerAdmin"
AUTH = {"AuthUserName": ADMIN[0], "AuthPassword": ADMIN[1]}
SENDER = "someone@elsewhere.test"
BODY = b"Subject: via the backup\r\n\r\nHello through the backup MX.\r\n"
CLIENT_IP = "127.0.0.2"


def attributes(**fields: Any) -> dict[str, Any]:
    """IncomingGatewayAttributes with every field, `fields` over the defaults (a BackupMX for a.test)."""
    values: dict[str, Any] = {
        "guid": "", "gatewayMode": "BackupMX", "IPAddress": "127.0.0.1", "IPStartRange": "", "IPEndRange": "",
        "userVerifyType": "None", "webserviceURL": "", "domainVerifyType": "List", "domainsToForward": [DOMAIN],
        "enableSpamActions": False, "spamLowAction": "None", "spamLowArgs": "", "spamMedAction": "None",
        "spamMedArgs": "", "spamHighAction": "None", "spamHighArgs": "", "smarterMailMode": False,
        "smarterMailURL": "", "authSmarterMailUserName": "", "authSmarterMailPassword": ""}
    values.update(fields)
    return values


def wire(values: dict[str, Any]) -> dict[str, Any]:
    return {k: {"string": v} if isinstance(v, list) else v for k, v in values.items()}


def plain(gateway: dict[str, Any]) -> dict[str, Any]:
    """A gateway as read back, with empty strings as "" and the domain array as a list."""
    out = {k: "" if v is None else v for k, v in gateway.items()}
    domains = out["domainsToForward"]
    out["domainsToForward"] = [] if not domains else domains if isinstance(domains, list) else domains["string"]
    return out


class Node(MailHarness):
    """A harness whose SMTP listener keeps its port across `restart` (a primary that comes back)."""
    ports: dict[bool, int]

    def _listen(self, submission: bool, tls: ssl.SSLContext) -> int:
        ports = getattr(self, "ports", None) or {}
        sock = tcp_listener("127.0.0.1", ports.get(submission, 0))
        self.listeners.append(self.call(start_listener(self.server.intake, self.server.auth, self.server.config.smtp,
                                                       sock, submission, tls)))
        self.ports = {**ports, submission: sock.getsockname()[1]}
        return self.ports[submission]

    def soap(self, operation: str, auth: dict[str, str] | None = None, **params: Any) -> Any:
        return self.zeep.call(SA, operation, **(AUTH if auth is None else auth), **params)  # type: ignore[attr-defined]

    def add_gateway(self, **fields: Any) -> dict[str, Any]:
        return self.soap("AddIncomingGateway", newIncomingGateway=wire(attributes(**fields)))

    def gateways(self) -> list[dict[str, Any]]:
        result = self.soap("ListIncomingGateways")
        assert result["Result"], result
        return [plain(g) for g in result["incGateways"] or []]

    def smtp_from(self, source: str = CLIENT_IP) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.smtp_port, local_hostname="client.test", timeout=60,
                            source_address=(source, 0))


@pytest.fixture
def backup(tmp_path: Path) -> Iterator[Node]:
    """A server hosting only b.test (the test database) with its web listener."""
    harness = Node((tmp_path / "backup").resolve(), ManualClock(START))
    try:
        harness.server.admins.reset_primary(*ADMIN)
        harness.server.domains.add(harness.admin(), "b.test", "", "postmaster", "Domain-pass-1", "", "", {})
        with web_listener(harness.server) as url:
            harness.zeep = ZeepClient(url)  # type: ignore[attr-defined]
            yield harness
    finally:
        if harness.database_url:
            harness.server.store.drop_all()
        harness.close()


@pytest.fixture
def primary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Node]:
    """A server hosting a.test (alice, bob) on its own SQLite database: another server entirely."""
    monkeypatch.delenv("MAILSRV_TEST_DATABASE_URL", raising=False)
    harnesses = make_harness(tmp_path / "primary", kind=Node)
    harness = next(harnesses)
    monkeypatch.undo()
    yield harness
    next(harnesses, None)


def refused(result: dict[str, Any], code: ResultCode) -> None:
    assert (result["Result"], result["ResultCode"]) == (False, int(code)), result


def rcpt(node: Node, recipient: str, source: str = CLIENT_IP) -> tuple[int, bytes]:
    with node.smtp_from(source) as smtp:
        smtp.ehlo()
        assert smtp.mail(SENDER)[0] == 250
        return smtp.rcpt(recipient)


def send_via(node: Node, recipient: str) -> None:
    with node.smtp_from() as smtp:
        smtp.ehlo()
        assert smtp.mail(SENDER)[0] == 250
        assert smtp.rcpt(recipient)[0] == 250
        assert smtp.data(BODY)[0] == 250


# -- pure rules ----------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected, ip", [
    ("192.0.2.7", ServerAddress("192.0.2.7", None), "192.0.2.7"),
    ("192.0.2.7:2525", ServerAddress("192.0.2.7", 2525), "192.0.2.7"),
    ("[2001:db8::1]:26", ServerAddress("2001:db8::1", 26), "2001:db8::1"),
    ("2001:db8::1", ServerAddress("2001:db8::1", None), "2001:db8::1"),
    ("Mail.Example.COM", ServerAddress("mail.example.com", None), None),
    ("mail.example.com:587", ServerAddress("mail.example.com", 587), None),
])
def test_primary_address_forms(raw: str, expected: ServerAddress, ip: str | None) -> None:
    assert parse_primary(raw) == expected and expected.ip == ip
    assert parse_primary(str(expected)) == expected


@pytest.mark.parametrize("raw", ["", "300.1.1.1:25x", "192.0.2.7:0", "192.0.2.7:70000", "[2001:db8::1", "bad host",
                                 "[mail.example.com]:25", "-x-.test"])
def test_bad_primary_addresses_are_refused(raw: str) -> None:
    with pytest.raises(MailsrvError) as caught:
        parse_primary(raw)
    assert caught.value.code == ResultCode.INVALID_ARGUMENT


def test_the_primary_is_its_range_and_its_own_address() -> None:
    gateway = IncomingGateway("g", "BackupMX", "10.0.0.1:25", "10.0.1.0", "10.0.1.255", "None", "List", ("a.test",),
                              "", False, "", "", "", {})
    assert gateway.from_primary("10.0.1.77") and gateway.from_primary("::ffff:10.0.1.1")
    assert gateway.from_primary("10.0.0.1")
    assert not gateway.from_primary("10.0.2.1") and not gateway.from_primary("2001:db8::1")


def test_relay_domain_rules() -> None:
    policy = Policy([])
    stranger = policy.client("192.0.2.1", None)
    trusted = Policy(["192.0.2.0/24"]).client("192.0.2.1", None)
    def check(client, **facts: bool) -> Reply | None:  # type: ignore[no-untyped-def]
        return policy.check_recipient(RecipientCheck(client, SENDER, "x@a.test", local=False, **facts))
    assert check(stranger) == RELAY_DENIED
    assert check(stranger, relay_domain=True) is None
    for client in (stranger, trusted):  # the primary is refused even where it may relay
        refusal = check(client, relay_domain=True, from_primary=True)
        assert refusal is not None and (refusal.code, refusal.status) == (554, "5.4.6")


# -- the operations ------------------------------------------------------------------------------

def test_operations_round_trip(backup: Node) -> None:
    assert backup.gateways() == []
    assert backup.add_gateway(IPAddress="192.0.2.10:2525", IPStartRange="192.0.2.0", IPEndRange="192.0.2.255",
                              domainsToForward=["A.test", "c.test"], enableSpamActions=True,
                              spamHighAction="PrefixSubject", spamHighArgs="[SPAM]")["Result"]
    [stored] = backup.gateways()
    guid = stored["guid"]
    assert stored == {**attributes(guid=guid, IPAddress="192.0.2.10:2525", IPStartRange="192.0.2.0",
                                   IPEndRange="192.0.2.255", domainsToForward=["a.test", "c.test"],
                                   enableSpamActions=True, spamHighAction="PrefixSubject", spamHighArgs="[SPAM]")}
    got = backup.soap("GetIncomingGateway", guid=guid)
    assert got["Result"] and plain(got["gateway"]) == stored
    assert backup.soap("UpdateIncomingGateway", guid=guid, updatedIncomingGateway=wire(attributes(
        gatewayMode="gateway", IPAddress="[2001:db8::5]:25", userVerifyType="SmarterMail",
        smarterMailURL="https://primary.test/", authSmarterMailUserName="admin",
        authSmarterMailPassword="pw")))["Result"]
    updated = plain(backup.soap("GetIncomingGateway", guid=guid)["gateway"])
    assert (updated["gatewayMode"], updated["IPAddress"], updated["userVerifyType"], updated["smarterMailURL"],
            updated["domainsToForward"], updated["enableSpamActions"]) == \
        ("Gateway", "[2001:db8::5]:25", "SmarterMail", "https://primary.test/", [DOMAIN], False)
    assert backup.soap("RemoveIncomingGateway", guid=guid)["Result"]
    assert backup.gateways() == []
    refused(backup.soap("GetIncomingGateway", guid=guid), ResultCode.ITEM_NOT_FOUND)
    refused(backup.soap("RemoveIncomingGateway", guid=guid), ResultCode.ITEM_NOT_FOUND)


@pytest.mark.parametrize("fields, code", [
    ({"gatewayMode": "Primary"}, ResultCode.INVALID_ARGUMENT),
    ({"gatewayMode": ""}, ResultCode.INVALID_ARGUMENT),
    ({"IPAddress": ""}, ResultCode.INVALID_ARGUMENT),
    ({"IPAddress": "999.1.1.1:99999"}, ResultCode.INVALID_ARGUMENT),
    ({"IPStartRange": "192.0.2.9", "IPEndRange": "192.0.2.1"}, ResultCode.INVALID_ARGUMENT),
    ({"IPStartRange": "192.0.2.1", "IPEndRange": ""}, ResultCode.INVALID_ARGUMENT),
    ({"IPStartRange": "192.0.2.1", "IPEndRange": "2001:db8::1"}, ResultCode.INVALID_ARGUMENT),
    ({"IPStartRange": "not-an-ip", "IPEndRange": "192.0.2.1"}, ResultCode.INVALID_ARGUMENT),
    ({"domainsToForward": []}, ResultCode.INVALID_ARGUMENT),
    ({"domainsToForward": ["not a domain"]}, ResultCode.INVALID_DOMAIN_NAME),
    ({"domainsToForward": ["b.test"]}, ResultCode.GATEWAY_DOMAIN_CONFLICT),
    ({"domainVerifyType": "Maybe"}, ResultCode.INVALID_ARGUMENT),
    ({"userVerifyType": "LDAP"}, ResultCode.INVALID_ARGUMENT),
    ({"userVerifyType": "SmarterMail"}, ResultCode.INVALID_ARGUMENT),
    ({"domainVerifyType": "SmarterMail", "domainsToForward": []}, ResultCode.INVALID_ARGUMENT),
    ({"userVerifyType": "SmarterMail", "smarterMailURL": "ftp://primary.test/"}, ResultCode.INVALID_ARGUMENT),
    ({"userVerifyType": "SmarterMail", "webserviceURL": "not a url"}, ResultCode.INVALID_ARGUMENT),
    ({"spamLowAction": "Quarantine"}, ResultCode.INVALID_ARGUMENT),
    ({"spamMedArgs": "two\nlines"}, ResultCode.INVALID_ARGUMENT),
])
def test_bad_input_is_refused_and_nothing_stored(backup: Node, fields: dict[str, Any], code: ResultCode) -> None:
    refused(backup.add_gateway(**fields), code)
    assert backup.gateways() == []


def test_bad_update_leaves_the_gateway_as_it_was(backup: Node) -> None:
    assert backup.add_gateway()["Result"]
    assert backup.add_gateway(domainsToForward=["c.test"], IPAddress="192.0.2.1")["Result"]
    before = backup.gateways()
    guid = next(g["guid"] for g in before if g["domainsToForward"] == ["c.test"])
    refused(backup.soap("UpdateIncomingGateway", guid=guid, updatedIncomingGateway=wire(attributes())),
            ResultCode.GATEWAY_DOMAIN_CONFLICT)  # a.test is the other gateway's
    refused(backup.soap("UpdateIncomingGateway", guid=guid, updatedIncomingGateway=wire(attributes(IPAddress="x y"))),
            ResultCode.INVALID_ARGUMENT)
    refused(backup.soap("UpdateIncomingGateway", guid="nope", updatedIncomingGateway=wire(attributes())),
            ResultCode.ITEM_NOT_FOUND)
    assert backup.gateways() == before


def test_only_system_administrators(backup: Node) -> None:
    assert backup.add_gateway()["Result"]
    guid = backup.gateways()[0]["guid"]
    domain_admin = {"AuthUserName": "postmaster@b.test", "AuthPassword": "Domain-pass-1"}
    for operation, params in [("AddIncomingGateway", {"newIncomingGateway": wire(attributes(domainsToForward=["d.test"]))}),
                              ("UpdateIncomingGateway", {"guid": guid, "updatedIncomingGateway": wire(attributes())}),
                              ("RemoveIncomingGateway", {"guid": guid}), ("GetIncomingGateway", {"guid": guid}),
                              ("ListIncomingGateways", {})]:
        refused(backup.soap(operation, auth=domain_admin, **params), ResultCode.PERMISSION_DENIED)
    assert [g["domainsToForward"] for g in backup.gateways()] == [[DOMAIN]]


# -- two servers ---------------------------------------------------------------------------------

def test_backup_mx_hands_mail_to_the_primary_and_keeps_it_while_the_primary_is_down(backup: Node, primary: Node) -> None:
    code, reply = rcpt(backup, f"alice@{DOMAIN}")
    assert (code, reply[:5]) == (550, b"5.7.1")  # not ours: no relaying
    assert backup.add_gateway(IPAddress=f"127.0.0.1:{primary.smtp_port}")["Result"]
    send_via(backup, f"alice@{DOMAIN}")
    backup.deliver()
    assert backup.spool_rows() == []
    [message] = primary.messages(f"alice@{DOMAIN}")
    assert b"Hello through the backup MX." in message

    primary.stop()
    send_via(backup, f"bob@{DOMAIN}")
    backup.deliver()
    for _ in range(3):  # every attempt but the last of "10,10,10,1440": deferred, never bounced
        backup.clock.advance(dt.timedelta(minutes=10))
        backup.deliver()
        assert backup.spool_rows() == [(f"bob@{DOMAIN}", "remote", "deferred")]
    primary.start()
    backup.clock.advance(dt.timedelta(minutes=1440))
    backup.deliver()
    assert backup.spool_rows() == []
    [message] = primary.messages(f"bob@{DOMAIN}")
    assert b"Hello through the backup MX." in message


def test_backup_mx_bounces_only_after_the_last_attempt(backup: Node, primary: Node) -> None:
    assert backup.add_gateway(IPAddress=f"127.0.0.1:{primary.smtp_port}")["Result"]
    primary.stop()
    try:
        send_via(backup, f"bob@{DOMAIN}")
        backup.deliver()
        for minutes in (10, 10, 10):
            backup.clock.advance(dt.timedelta(minutes=minutes))
            backup.deliver()
        assert backup.spool_rows() == [(f"bob@{DOMAIN}", "remote", "deferred")]
        backup.clock.advance(dt.timedelta(minutes=1440))
        backup.deliver()
        # The fifth failure was the last: the sender is told (a DSN, itself waiting for elsewhere.test).
        assert [(address, kind) for address, kind, _ in backup.spool_rows()] == [(SENDER, "remote")]
    finally:
        primary.start()


def test_gateway_mode_and_the_loop_rule(backup: Node, primary: Node) -> None:
    assert backup.add_gateway(gatewayMode="Gateway", IPAddress=f"127.0.0.1:{primary.smtp_port}",
                              IPStartRange="127.0.0.5", IPEndRange="127.0.0.9")["Result"]
    for source in ("127.0.0.1", "127.0.0.6"):  # the primary's own address, and its range
        code, reply = rcpt(backup, f"alice@{DOMAIN}", source)
        assert (code, reply[:5]) == (554, b"5.4.6") and b"loop" in reply
    send_via(backup, f"alice@{DOMAIN}")
    backup.deliver()
    assert len(primary.messages(f"alice@{DOMAIN}")) == 1


def test_recipients_and_domains_verified_over_the_primarys_api(backup: Node, primary: Node) -> None:
    with web_listener(primary.server) as url:
        assert backup.add_gateway(IPAddress=f"127.0.0.1:{primary.smtp_port}", domainVerifyType="SmarterMail",
                                  domainsToForward=[], userVerifyType="SmarterMail", smarterMailURL=url,
                                  authSmarterMailUserName=ADMIN[0], authSmarterMailPassword=ADMIN[1])["Result"]
        code, reply = rcpt(backup, f"nobody@{DOMAIN}")
        assert (code, reply[:5]) == (550, b"5.1.1")
        assert rcpt(backup, f"alice@{DOMAIN}")[0] == 250
        primary.server.aliases.add(primary.admin(), DOMAIN, "sales", [f"bob@{DOMAIN}"])
        assert rcpt(backup, f"sales@{DOMAIN}")[0] == 250  # an alias of the primary's
        primary.server.domains.set_requested_settings(primary.admin(), DOMAIN,
                                                      ["enablecatchalls=Enabled", "catchall=sales"])
        assert rcpt(backup, f"anything@{DOMAIN}")[0] == 250  # the primary's catch-all takes it
        assert rcpt(backup, "alice@unknown-to-primary.test")[0] == 550  # not one of the primary's domains
        send_via(backup, f"bob@{DOMAIN}")
    # The primary's API is gone: an unverified recipient is accepted, the domain list read last stands.
    assert rcpt(backup, f"someone-new@{DOMAIN}")[0] == 250
    assert rcpt(backup, f"nobody@{DOMAIN}")[0] == 550  # the answer it gave is kept for a while
    backup.deliver()
    assert len(primary.messages(f"bob@{DOMAIN}")) == 1
    # The store keeps the primary's domain list: the backup restarted while the API is down still
    # takes the domain's mail.
    backup.restart()
    assert rcpt(backup, f"nobody@{DOMAIN}")[0] == 250
    assert rcpt(backup, "alice@unknown-to-primary.test")[0] == 550


def test_api_login_refused_means_accept(backup: Node, primary: Node) -> None:
    with web_listener(primary.server) as url:
        assert backup.add_gateway(IPAddress=f"127.0.0.1:{primary.smtp_port}", userVerifyType="SmarterMail",
                                  smarterMailURL=url, authSmarterMailUserName=ADMIN[0],
                                  authSmarterMailPassword="wrong-password")["Result"]
        assert rcpt(backup, f"nobody@{DOMAIN}")[0] == 250


def test_a_change_through_one_node_holds_for_the_next_session_on_another(backup: Node, primary: Node) -> None:
    """Two nodes of the backup on one store: what the first one is told over SOAP, the second one's
    SMTP and queue obey at their next transaction and run, without a restart."""
    other = Node(backup.data_dir, backup.clock)
    try:
        assert rcpt(other, f"alice@{DOMAIN}")[0] == 550
        assert backup.add_gateway(IPAddress=f"127.0.0.1:{primary.smtp_port}")["Result"]
        send_via(other, f"alice@{DOMAIN}")
        other.deliver()
        assert len(primary.messages(f"alice@{DOMAIN}")) == 1
        guid = backup.gateways()[0]["guid"]
        assert backup.soap("RemoveIncomingGateway", guid=guid)["Result"]
        code, reply = rcpt(other, f"alice@{DOMAIN}")
        assert (code, reply[:5]) == (550, b"5.7.1")
    finally:
        other.close()


# -- the primary's API client against a hostile or silent peer ------------------------------------

class _Answering(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def answering(body: bytes) -> Iterator[str]:
    handler = type("Handler", (_Answering,), {"body": body})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/Services/svcDomainAdmin.asmx"
    finally:
        server.shutdown()
        server.server_close()


def test_api_client_resolves_no_entities_and_treats_nonsense_as_unreachable(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("evil.test")
    hostile = (f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file://{secret}">]>'
               '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
               '<GetAllDomainsResponse xmlns="http://tempuri.org/"><GetAllDomainsResult><Result>true</Result>'
               '<ResultCode>0</ResultCode><DomainNames><string>&e;</string><string>ok.test</string></DomainNames>'
               '</GetAllDomainsResult></GetAllDomainsResponse></soap:Body></soap:Envelope>').encode()
    with answering(hostile) as url:
        assert PrimaryApi(url, "u", "p", timeout=5).domains() == {"ok.test"}
    with answering(b"<html>not soap</html>") as url, pytest.raises(PrimaryUnreachable):
        PrimaryApi(url, "u", "p", timeout=5).domains()
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    try:
        with pytest.raises(PrimaryUnreachable):
            PrimaryApi(f"http://127.0.0.1:{silent.getsockname()[1]}", "u", "p", timeout=0.5).knows("a@b.test")
    finally:
        silent.close()
