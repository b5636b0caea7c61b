"""Virus scanning (mailsrv.mta.filtering.clamd) with a real clamd on loopback and a signature
database the test makes (no freshclam): an infected attachment refused with 554 naming the
signature, clamd down deferring or accepting as configured, garbage and size limits; and the
svcVirusAdmin operations."""
from __future__ import annotations

import base64
import os

import pytest
from content_daemons import INFECTED_FILE, GarbagePeer, start_clamd
from contract_clients import ZeepClient, ok, refused
from smtp_support import ADMIN, MailHarness, send, soap, mail  # noqa: F401  (fixtures)

from mailsrv.core.errors import ResultCode

AUTH = {"AuthUserName": ADMIN[0], "AuthPassword": ADMIN[1]}
CLEAN = b"From: Ext <ext@example.org>\r\nTo: alice@a.test\r\nSubject: report\r\n\r\nAll fine.\r\n"


def with_attachment(data: bytes) -> bytes:
    encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
    return (b"From: Ext <ext@example.org>\r\nTo: alice@a.test\r\nSubject: invoice\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\n"
            b"See attached.\r\n--b1\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Disposition: attachment; filename=\"invoice.txt\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + encoded + b"--b1--\r\n")


@pytest.fixture(scope="module")
def clamd(tmp_path_factory):  # type: ignore[no-untyped-def]
    daemon = start_clamd(tmp_path_factory.mktemp("clamd"))
    yield daemon
    daemon.stop()


def antivirus(soap: ZeepClient, *settings: str) -> dict:
    return soap.call("svcVirusAdmin", "SetAntivirusOptions", **AUTH, newSettings=list(settings))


def inbox(mail: MailHarness) -> list[bytes]:
    new = mail.maildir("alice@a.test") / "new"
    return [(new / name).read_bytes() for name in sorted(os.listdir(new))]


def data_reply(mail: MailHarness, content: bytes, login: str | None = None) -> tuple[int, bytes]:
    with (mail.authenticated(login) if login else mail.client()) as smtp:
        smtp.ehlo()
        assert smtp.mail(login or "ext@example.org")[0] == 250
        assert smtp.rcpt("alice@a.test")[0] == 250
        reply = smtp.data(content)
    mail.deliver()
    return reply


def test_an_infected_attachment_is_refused_with_554_naming_the_signature(mail, soap, clamd):
    ok(antivirus(soap, "enabled=True", f"clamdaddress=127.0.0.1:{clamd.port}"))
    code, text = data_reply(mail, with_attachment(INFECTED_FILE))
    assert code == 554 and b"5.7.1" in text and b"Mailsrv.Test.Signature" in text
    # Authenticated senders' mail too (a compromised account), and over clamd's unix socket.
    ok(antivirus(soap, f"clamdaddress={clamd.log.parent / 'clamd.sock'}"))
    assert data_reply(mail, with_attachment(INFECTED_FILE), login="bob@a.test")[0] == 554
    with mail.client() as smtp:
        send(smtp, "ext@example.org", ["alice@a.test"], with_attachment(b"a harmless invoice\n"))
    mail.deliver()
    [clean] = inbox(mail)
    assert b"X-Virus-Scanned: clean (ClamAV)\r\n" in clean


@pytest.mark.parametrize("onfailure, expected", [("Defer", 451), ("Accept", 250)])
def test_clamd_stopped_defers_or_accepts_as_configured(mail, soap, tmp_path, onfailure, expected):
    stopped = start_clamd(tmp_path / "stopped")
    stopped.stop()
    ok(antivirus(soap, "enabled=True", f"clamdaddress=127.0.0.1:{stopped.port}", f"onfailure={onfailure}"))
    code, text = data_reply(mail, CLEAN)
    assert code == expected, text
    if expected == 451:
        assert text.startswith(b"4.7.1") and inbox(mail) == []
    else:
        [accepted] = inbox(mail)
        assert b"X-Virus-Scanned: no (scanner unavailable)\r\n" in accepted and accepted.endswith(CLEAN)


@pytest.mark.parametrize("answer", [b"\xff\xfe garbage without an end", b"stream: who knows\0", b""])
def test_garbage_or_a_silent_clamd_is_a_failure_never_a_crash(mail, soap, answer):
    peer = GarbagePeer(answer)
    try:
        ok(antivirus(soap, "enabled=True", f"clamdaddress=127.0.0.1:{peer.port}", "timeoutms=300",
                     "onfailure=Defer"))
        assert data_reply(mail, CLEAN)[0] == 451
    finally:
        peer.close()


def test_a_message_over_the_size_limit_is_accepted_unscanned(mail, soap, clamd):
    ok(antivirus(soap, "enabled=True", f"clamdaddress=127.0.0.1:{clamd.port}", "maxkb=1"))
    large = with_attachment(INFECTED_FILE * 30)
    assert data_reply(mail, large)[0] == 250
    [accepted] = inbox(mail)
    assert b"X-Virus-Scanned: no (over the size limit)\r\n" in accepted


def test_antivirus_operations(mail, soap, clamd):
    assert ok(soap.call("svcVirusAdmin", "GetAntivirusOptions", **AUTH))["KeyValuePairs"] == \
        ["enabled=False", "maxkb=25600", "onfailure=Defer"]
    ok(antivirus(soap, "enabled=true", "clamdaddress=[::1]:3310", "onfailure=accept", "timeoutms=5000"))
    assert ok(soap.call("svcVirusAdmin", "GetAntivirusOptions", **AUTH))["KeyValuePairs"] == \
        ["enabled=True", "maxkb=25600", "onfailure=Accept"]
    assert ok(soap.call("svcVirusAdmin", "GetClamAvSettings", **AUTH))["KeyValuePairs"] == \
        ["clamdaddress=[::1]:3310", "timeoutms=5000"]
    for bad in ("clamdaddress=no port", "onfailure=Sometimes", "maxkb=-1", "enabled=maybe", "virus=yes"):
        assert refused(antivirus(soap, "enabled=False", bad))[0] == ResultCode.INVALID_SETTING, bad
    assert mail.server.content_filters.antivirus()["enabled"] is True
    user = {"AuthUserName": "alice@a.test", "AuthPassword": "User-pass-123"}
    assert refused(soap.call("svcVirusAdmin", "GetClamAvSettings", **user))[0] != 0
    assert refused(soap.call("svcVirusAdmin", "SetAntivirusOptions", **user, newSettings=["enabled=False"]))[0] != 0
