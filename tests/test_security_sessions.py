"""Security #8, logins and sessions: the brute-force limit as no switch for strangers, password
changes ending sessions, web uploads bounded while streamed, and logins on a full disk."""
from __future__ import annotations

import datetime as dt
import errno
import imaplib
import os
import poplib
import re
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mailbox_support import ALICE, MailboxHarness, message
from smtp_support import ADMIN, USER_PASSWORD, make_harness
from web_support import WebHarness, csrf

STRANGER, OWNER = "127.0.0.2", "127.0.0.1"  # loopback aliases: Linux answers on all of 127/8
LIMITS = "[security]\nmax_failures_per_login = 3\nmax_failures_per_login_all_addresses = 8\nbackoff_seconds = 60\n" \
         'trusted_networks = ["127.0.0.9"]\n'


@pytest.fixture
def site(tmp_path: Path) -> Iterator[WebHarness]:
    """SOAP, the web and IMAP/POP3 listeners of one server, with small brute-force limits."""
    for mail in make_harness(tmp_path, LIMITS, kind=MailboxHarness):
        web = WebHarness(mail)
        try:
            yield web
        finally:
            web.stop()


def soap_code(site: WebHarness, source: str, login: str, password: str) -> int:
    """The ResultCode of a SOAP login made from `source` (HTTP GET binding): a mailbox user's
    LoginValidated, or an administrator's GetUser."""
    if "@" in login:
        operation, params = "LoginValidated", {"Username": login, "Password": password}
    else:
        operation, params = "GetUser", {"AuthUserName": login, "AuthPassword": password, "EmailAddress": ALICE}
    with httpx.Client(base_url=site.url, timeout=30, transport=httpx.HTTPTransport(local_address=source)) as client:
        answer = client.get(f"/Services/svcUserAdmin.asmx/{operation}", params=params)
    return int(re.search(r"<ResultCode>(-?\d+)</ResultCode>", answer.text)[1])


class _ImapFrom(imaplib.IMAP4):
    """imaplib connecting from a chosen loopback address (plain text: loopback may log in so)."""

    def __init__(self, source: str, port: int) -> None:
        self.source = source
        super().__init__("127.0.0.1", port, timeout=60)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout, source_address=(self.source, 0))


def imap_login(site: WebHarness, source: str, login: str, password: str) -> bool:
    client = _ImapFrom(source, site.mail.ports["imap"])
    try:
        client.login(login, password)
    except imaplib.IMAP4.error:
        return False
    finally:
        client.logout()
    return True


def test_a_stranger_failing_over_soap_does_not_lock_the_administrator_out(site: WebHarness) -> None:
    admin, password = ADMIN
    assert [soap_code(site, STRANGER, admin, "guess") for _ in range(3)] == [-1, -1, -1]
    # The stranger's address is held back, even with the right password...
    assert soap_code(site, STRANGER, admin, password) == -3
    # ...but the administrator at another address is not.
    assert soap_code(site, OWNER, admin, password) == 0
    # The back-off grows: 60 s after the limit one more try, then 120 s, then 240 s.
    clock = site.mail.clock
    for wait in (60, 120, 240):
        clock.advance(dt.timedelta(seconds=wait - 1))
        assert soap_code(site, STRANGER, admin, "guess") == -3
        clock.advance(dt.timedelta(seconds=1))
        assert soap_code(site, STRANGER, admin, "guess") == -1
    assert soap_code(site, OWNER, admin, password) == 0


def test_the_limit_is_shared_by_imap_and_soap_per_address(site: WebHarness) -> None:
    assert not any(imap_login(site, STRANGER, ALICE, "guess") for _ in range(3))
    assert not imap_login(site, STRANGER, ALICE, USER_PASSWORD)  # held back, right password or not
    assert soap_code(site, STRANGER, ALICE, USER_PASSWORD) == -3
    assert imap_login(site, OWNER, ALICE, USER_PASSWORD)
    assert soap_code(site, OWNER, ALICE, USER_PASSWORD) == 0


def test_many_addresses_failing_slow_down_failing_addresses_only(site: WebHarness) -> None:
    # A distributed attack: the login's failures from all addresses reach 8 …
    for n in range(2, 6):
        assert [soap_code(site, f"127.0.0.{n}", ALICE, "guess") for _ in range(2)] == [-1, -1]
    # … so from now on any address waits after its first failure, not its third …
    assert soap_code(site, "127.0.0.6", ALICE, "guess") == -1
    assert soap_code(site, "127.0.0.6", ALICE, "guess") == -3
    # … but an address without failures still gets in, over every protocol.
    assert imap_login(site, OWNER, ALICE, USER_PASSWORD)
    assert soap_code(site, "127.0.0.7", ALICE, USER_PASSWORD) == 0


def test_trusted_networks_are_never_locked_out(site: WebHarness) -> None:
    assert [soap_code(site, "127.0.0.9", ALICE, "guess") for _ in range(5)] == [-1] * 5
    assert soap_code(site, "127.0.0.9", ALICE, USER_PASSWORD) == 0


def _fill(directory: Path) -> None:
    """Write a file into `directory` until its file system has no byte left."""
    with open(directory / "filler", "wb", buffering=0) as filler:
        for size in (65536, 512):  # then the last partial block
            try:
                while True:
                    filler.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC


@pytest.fixture
def small_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MailboxHarness]:
    """A mailbox harness whose data directory and SQLite database are on an 8 MB tmpfs."""
    # The SQLite file on the small disk is what is under test, whatever database the suite uses.
    monkeypatch.delenv("MAILSRV_TEST_DATABASE_URL", raising=False)
    data = tmp_path / "data"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(data)], check=True)
    # As `mailsrv serve` does: pymap renames its temporary files into the Maildir.
    (data / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(data / "tmp"))
    try:
        yield from make_harness(tmp_path, kind=MailboxHarness)
    finally:
        subprocess.run(["umount", "-l", str(data)], check=True)


def test_a_full_disk_still_lets_users_log_in_and_read_their_mail(small_disk: MailboxHarness) -> None:
    small_disk.deliver_to(ALICE, message("before the disk filled up"))
    # Seen once, so the Maildir needs no write to be listed again.
    pop3 = small_disk.pop3()
    assert pop3.stat()[0] == 1
    pop3.quit()
    _fill(small_disk.data_dir)
    # Well past the one-minute resolution of last-login times: each login below tries to note one.
    small_disk.clock.advance(dt.timedelta(minutes=5))
    # A wrong password gets its ordinary answer, not a server error.
    with pytest.raises(imaplib.IMAP4.error, match="Invalid authentication credentials"):
        small_disk.imap(ALICE, "wrong")
    client = small_disk.imap()
    assert client.select("INBOX") == ("OK", [b"1"])
    typ, data = client.fetch("1", "(BODY.PEEK[])")
    assert typ == "OK" and b"Subject: before the disk filled up" in data[0][1]
    client.logout()
    small_disk.clock.advance(dt.timedelta(minutes=5))
    pop3 = small_disk.pop3()
    assert b"Subject: before the disk filled up" in b"\r\n".join(pop3.retr(1)[1])
    pop3.quit()


def test_an_administrator_inside_its_ip_restrictions_is_never_held_back(site: WebHarness) -> None:
    admin, password = ADMIN
    site.mail.server.admins.add_ip_restriction(site.mail.admin(), admin, "127.0.0.0/30", "")
    assert [soap_code(site, OWNER, admin, "typo") for _ in range(5)] == [-1] * 5
    assert soap_code(site, OWNER, admin, password) == 0
    # Outside them the password is refused anyway, and the address is held back as any other.
    assert [soap_code(site, "127.0.0.8", admin, password) for _ in range(4)] == [-1, -1, -1, -3]


def test_a_password_change_ends_web_imap_and_pop3_sessions(site: WebHarness) -> None:
    site.mail.deliver_to(ALICE, message("still there"))
    web = site.signed_in()
    assert web.get("/Mail").status_code == 200
    imap = site.mail.imap()
    assert imap.select("INBOX")[0] == "OK"
    pop3 = site.mail.pop3()
    assert pop3.stat()[0] == 1
    with site.client() as soap:
        answer = soap.get("/Services/svcUserAdmin.asmx/UpdateUser", params={
            "AuthUserName": ADMIN[0], "AuthPassword": ADMIN[1], "EmailAddress": ALICE, "NewPassword": "New-pass-456",
            "NewFirstName": "", "NewLastName": "", "IsDomainAdmin": "false"})
    assert "<Result>true</Result>" in answer.text, answer.text
    # The web answers as for an expired session; IMAP says BYE and closes; POP3 -ERR and closes.
    expired = web.get("/Mail")
    assert (expired.status_code, expired.headers.get("location")) == (303, "/Login.aspx")
    with pytest.raises(imaplib.IMAP4.abort, match="password"):
        imap.noop()
    with pytest.raises(poplib.error_proto, match="password"):
        pop3.stat()
    assert pop3.sock.recv(1) == b""  # closed by the server
    # The new password works everywhere.
    assert site.signed_in(ALICE, "New-pass-456").get("/Mail").status_code == 200
    imap = site.mail.imap(ALICE, "New-pass-456")
    assert imap.select("INBOX")[0] == "OK"
    imap.logout()
    pop3 = site.mail.pop3(ALICE, "New-pass-456")
    assert pop3.stat()[0] == 1
    pop3.quit()


@pytest.mark.parametrize("operation, params", [
    ("svcUserAdmin.asmx/SetRequestedUserSettings", {"EmailAddress": ALICE, "newSettings": "isenabled=False"}),
    ("svcDomainAdmin.asmx/DisableDomain", {"domainName": "a.test"}),
])
def test_disabling_the_account_or_its_domain_ends_imap_and_pop3_sessions(site: WebHarness, operation: str,
                                                                         params: dict[str, str]) -> None:
    site.mail.deliver_to(ALICE, message("still there"))
    imap = site.mail.imap()
    assert imap.select("INBOX")[0] == "OK"
    pop3 = site.mail.pop3()
    assert pop3.stat()[0] == 1
    with site.client() as soap:
        answer = soap.get(f"/Services/{operation}", params={"AuthUserName": ADMIN[0], "AuthPassword": ADMIN[1],
                                                             **params})
    assert "<Result>true</Result>" in answer.text, answer.text
    with pytest.raises(imaplib.IMAP4.abort, match="disabled"):
        imap.noop()
    with pytest.raises(poplib.error_proto, match="disabled"):
        pop3.stat()
    assert pop3.sock.recv(1) == b""  # closed by the server


@pytest.fixture
def small_web(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebHarness]:
    """The web interface with a 576 KiB limit on /Mail/Send (512 KiB message + 64 KiB form) and
    its temporary files (where the form parser spools uploads) on an 8 MB tmpfs."""
    spool = tmp_path / "spool"
    spool.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(spool)], check=True)
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    try:
        for mail in make_harness(tmp_path, "max_message_kb = 512\n[web]\nmax_request_bytes = 65536\n"):
            web = WebHarness(mail)
            try:
                yield web
            finally:
                web.stop()
    finally:
        subprocess.run(["umount", "-l", str(spool)], check=True)


def _used(directory: str) -> int:
    stats = os.statvfs(directory)
    return (stats.f_blocks - stats.f_bfree) * stats.f_frsize


def raw_post(web: WebHarness, target: str, cookie: str, headers: str, body: Iterator[bytes]) -> bytes:
    """POST over a bare socket, the body sent from another thread: the status line, as soon as the
    server answers, whether or not it has read (or the client has sent) the whole body."""
    sock = socket.create_connection(("127.0.0.1", int(web.url.rsplit(":", 1)[1])), timeout=30)

    def send_body() -> None:
        try:
            for part in body:
                sock.sendall(part)
        except OSError:  # the server answered and closed: the rest is not wanted
            pass

    sock.sendall(f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: mailsrv_session={cookie}\r\n"
                 f"{headers}\r\n".encode())
    sender = threading.Thread(target=send_body, daemon=True)
    sender.start()
    try:
        answer = b""
        while b"\r\n" not in answer:
            part = sock.recv(4096)
            if not part:
                break
            answer += part
        return answer.split(b"\r\n", 1)[0]
    finally:
        sock.close()
        sender.join(30)


def _chunked(total: int, size: int = 65536) -> Iterator[bytes]:
    boundary = b"--x\r\nContent-Disposition: form-data; name=\"attachments\"; filename=\"big.bin\"\r\n" \
               b"Content-Type: application/octet-stream\r\n\r\n"
    yield b"%x\r\n%b\r\n" % (len(boundary), boundary)
    for _ in range(total // size):
        yield b"%x\r\n%b\r\n" % (size, b"a" * size)
    yield b"0\r\n\r\n"


def test_a_chunked_upload_is_cut_at_the_limit_without_filling_the_disk(small_web: WebHarness) -> None:
    client = small_web.signed_in()
    token = csrf(client.get("/Mail/Compose"))
    before = _used(tempfile.gettempdir())
    status = raw_post(small_web, f"/Mail/Send?csrf={token}", client.cookies["mailsrv_session"],
                      "Content-Type: multipart/form-data; boundary=x\r\nTransfer-Encoding: chunked\r\n",
                      _chunked(20 * 1024 * 1024))
    assert status == b"HTTP/1.1 413 Request Entity Too Large"
    assert _used(tempfile.gettempdir()) - before < 1024 * 1024
    assert client.get("/Mail").status_code == 200  # the listener is fine


def test_a_post_without_the_csrf_token_is_refused_before_its_body_is_read(small_web: WebHarness) -> None:
    client = small_web.signed_in()
    cookie = client.cookies["mailsrv_session"]
    for target in ("/Mail/Action", "/Mail/Action?csrf=forged", "/Mail/Send"):
        # 60,000 bytes announced, 10 sent: the answer cannot wait for the rest.
        status = raw_post(small_web, target, cookie,
                          "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 60000\r\n",
                          iter([b"action=rea"]))
        assert status == b"HTTP/1.1 403 Forbidden", target
