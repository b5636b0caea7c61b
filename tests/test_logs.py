"""The event log as an operator reads it: a real `mailsrv serve` logging to a file ([log]), sending
to a real peer that takes one recipient, defers one (451) and refuses one (550), and refusing a
wrong password over every protocol; then the lines, in the text and the JSON format, and Debian's
`fail2ban-regex` with the shipped filter against that very file."""
from __future__ import annotations

import imaplib
import json
import os
import poplib
import re
import shutil
import signal
import smtplib
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import unavailable
from contract_clients import HttpClient, ok, refused
from serve_support import Serving, wait_until
from servers_support import ADMIN, USER_PASSWORD, LabServer, ServerLab, server_lab
from smtp_peer import Peer, PeerHandler, free_port

FILTER = Path(__file__).resolve().parent.parent / "contrib" / "fail2ban" / "filter.d" / "mailsrv.conf"
PEER_IP = "127.0.0.30"
WRONG = "Wrong-pass-1"
_LISTENERS = re.compile(r"(web) listener \(SOAP/HTTP\) on http://(\S+)|(SMTP) listener on (\S+)$")


@pytest.fixture
def lab(tmp_path, env) -> Iterator[ServerLab]:
    yield from server_lab(tmp_path, env)


def messages_of(line: str) -> str:
    """The message of a log line of either format (the server's own lines, not events)."""
    if line.startswith("{"):
        return str(json.loads(line).get("message", ""))
    return line


def start_logging_to(server: LabServer, log: Path, timeout: float = 60) -> None:
    """`mailsrv serve` for `server`, whose log goes to the file `log`: ready once the file names
    the web and SMTP listeners."""
    server.serving = Serving(server.config, server.env)
    deadline = time.monotonic() + timeout
    found: dict[str, str] = {}
    while len(found) < 2:
        assert time.monotonic() < deadline, log.read_text() if log.exists() else "no log file"
        assert server.serving.process.poll() is None, log.read_text() if log.exists() else "ended"
        for line in (log.read_text().splitlines() if log.exists() else []):
            if match := _LISTENERS.search(messages_of(line)):
                found[match[1] or match[3]] = match[2] or match[4]
        time.sleep(0.1)
    server.base_url = f"http://{found['web']}"
    server.soap = HttpClient(server.base_url, "POST")


def configure(server: LabServer, log: Path, log_format: str, imap_port: int, pop_port: int) -> None:
    text = server.config.read_text()
    text = text.replace('imap = ""\n', f'imap = "{server.address}:{imap_port}"\n') \
        .replace('pop3 = ""\n', f'pop3 = "{server.address}:{pop_port}"\n')
    server.config.write_text(text + f'[log]\nformat = "{log_format}"\nfile = "{log}"\n')


def send(server: LabServer, recipients: list[str], content: bytes) -> str:
    """alice's message over SMTP with STARTTLS and AUTH; its queue id, from the 250 after DATA."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with server.smtp() as smtp:
        smtp.starttls(context=context)
        smtp.login("alice@a.test", USER_PASSWORD)
        assert smtp.mail("alice@a.test")[0] == 250
        for recipient in recipients:
            assert smtp.rcpt(recipient)[0] == 250
        code, reply = smtp.data(content)
    assert code == 250, reply
    return reply.decode().rsplit(" ", 1)[1]


def fail_every_login(server: LabServer, imap_port: int, pop_port: int) -> None:
    """A wrong password over SMTP AUTH, POP3, IMAP, the web sign-in and SOAP: five failures."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with server.smtp() as smtp:
        smtp.starttls(context=context)
        smtp.ehlo()
        smtp.user, smtp.password = "alice@a.test", WRONG
        with pytest.raises(smtplib.SMTPAuthenticationError):  # one try (login() would try PLAIN, then LOGIN)
            smtp.auth("PLAIN", smtp.auth_plain)
    pop = poplib.POP3(server.address, pop_port, timeout=30)
    pop.stls(context)
    pop.user("alice@a.test")
    with pytest.raises(poplib.error_proto):
        pop.pass_(WRONG)
    pop.quit()
    imap = imaplib.IMAP4(server.address, imap_port, timeout=30)
    imap.starttls(context)
    with pytest.raises(imaplib.IMAP4.error):
        imap.login("alice@a.test", WRONG)
    imap.logout()
    page = httpx.post(f"{server.base_url}/Login.aspx", data={"email": "alice@a.test", "password": WRONG})
    assert page.status_code == 401
    assert refused(server.soap.call("svcUserAdmin", "GetUser", AuthUserName="sysadmin", AuthPassword=WRONG,
                                    EmailAddress="alice@a.test"))[0] != 0


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_log_tells_what_happened_to_each_message_and_login(lab, tmp_path, log_format):
    if shutil.which("fail2ban-regex") is None:
        unavailable("fail2ban-regex is missing: apt-get install -y fail2ban (.ci/run installs it)")
    log = tmp_path / "mailsrv.log"
    imap_port, pop_port = free_port(), free_port()
    server = lab.add("mx", start=False)
    configure(server, log, log_format, imap_port, pop_port)
    start_logging_to(server, log)
    handler = PeerHandler(refuse={"later@peer.test": "451 4.7.1 Try again later",
                                  "gone@peer.test": "550 5.1.1 No such user"})
    peer = Peer(PEER_IP, lab.smtp_port, handler=handler)
    try:
        lab.dns.add({("peer.test", "MX"): ["10 in.peer.test."], ("in.peer.test", "A"): [PEER_IP]})
        server.add_domain("a.test")
        server.add_user("alice@a.test")
        content = b"From: alice@a.test\r\nTo: ok@peer.test\r\nSubject: logged\r\n\r\nhello\r\n"
        queue_id = send(server, ["ok@peer.test", "later@peer.test", "gone@peer.test"], content)
        outcomes = {"ok@peer.test": "delivered", "later@peer.test": "deferred", "gone@peer.test": "failed"}
        wait_until(lambda: {address: status for address, _, status, _ in server.spool_rows()
                            if address in outcomes} == outcomes, "the three outcomes recorded")
        fail_every_login(server, imap_port, pop_port)
        wait_until(lambda: log.read_text().count("auth_failed") == 5, "five failed logins logged")
    finally:
        peer.stop()
    server.stop()
    lines = log.read_text().splitlines()
    for secret in (USER_PASSWORD, WRONG, ADMIN["AuthPassword"], "Lab-domain-pass-1"):
        assert secret not in log.read_text()

    if log_format == "text":
        def has(pattern: str) -> str:
            found = [line for line in lines if re.search(pattern, line)]
            assert found, f"no line matching {pattern!r} in:\n" + "\n".join(lines)
            return found[0]

        stamp = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z mailsrv\[\d+\]: "
        has(stamp + rf"{queue_id}: from=<alice@a\.test>, size={len(content)}, nrcpt=3, path=spool, "
                    r"ip=\[127\.0\.0\.1\], login=<alice@a\.test>$")
        has(stamp + rf"{queue_id}: to=<ok@peer\.test>, kind=remote, size=\d+, relay=in\.peer\.test, delay=\d+\.?\d*, "
                    r"dsn=2\.0\.0, status=sent \(250 2\.0\.0 queued\)")
        has(stamp + rf"{queue_id}: to=<later@peer\.test>, kind=remote, size=\d+, relay=in\.peer\.test, delay=\d+\.?\d*, "
                    r"dsn=4\.7\.1, status=deferred \(451 4\.7\.1 Try again later\)")
        has(stamp + rf"{queue_id}: to=<gone@peer\.test>, kind=remote, size=\d+, relay=in\.peer\.test, delay=\d+\.?\d*, "
                    r"dsn=5\.1\.1, status=bounced \(550 5\.1\.1 No such user\)")
        # The DSN to alice, queued and delivered into her mailbox.
        has(r": to=<alice@a\.test>, kind=local, size=\d+, relay=local, delay=\d+\.?\d*, dsn=2\.0\.0, status=sent")
        has(stamp + r"connect: protocol=smtp, ip=\[127\.0\.0\.1\]$")
        for protocol in ("smtp", "pop3", "imap"):
            has(stamp + rf"tls: protocol={protocol}, ip=\[127\.0\.0\.1\], version=TLSv1\.[23], cipher=\S+$")
        has(stamp + r"auth_ok: protocol=smtp, ip=\[127\.0\.0\.1\], login=<alice@a\.test>$")
        has(stamp + r"disconnect: protocol=smtp, ip=\[127\.0\.0\.1\]$")
        for protocol in ("smtp", "pop3", "imap", "webmail"):
            has(stamp + rf"auth_failed: protocol={protocol}, ip=\[127\.0\.0\.1\], login=<alice@a\.test>$")
        has(stamp + r"auth_failed: protocol=soap, ip=\[127\.0\.0\.1\], login=<sysadmin>$")
        has(stamp + r"admin: by=sysadmin, ip=\[127\.0\.0\.1\], service=svcDomainAdmin, operation=AddDomain, "
                    r"DomainName=a\.test, .*result=0$")
        has(stamp + r"admin: by=sysadmin, .*operation=AddUser, NewUsername=alice, DomainName=a\.test, result=0$")
    else:
        records = [json.loads(line) for line in lines]  # every line is one JSON object
        events = [r for r in records if "event" in r]

        def one(**fields: object) -> dict:
            found = [r for r in events if all(r.get(k) == v for k, v in fields.items())]
            assert found, f"no event with {fields} in:\n" + "\n".join(lines)
            return found[0]

        one(event="queued", queue_id=queue_id, **{"from": "alice@a.test"}, size=len(content), nrcpt=3,
            path="spool", ip="127.0.0.1", login="alice@a.test")
        sent = one(event="delivery", queue_id=queue_id, to="ok@peer.test", status="sent", dsn="2.0.0",
                   relay="in.peer.test", reply="250 2.0.0 queued", kind="remote")
        assert isinstance(sent["delay"], float) and sent["delay"] >= 0
        one(event="delivery", queue_id=queue_id, to="later@peer.test", status="deferred", dsn="4.7.1",
            reply="451 4.7.1 Try again later")
        one(event="delivery", queue_id=queue_id, to="gone@peer.test", status="bounced", dsn="5.1.1",
            reply="550 5.1.1 No such user")
        one(event="delivery", to="alice@a.test", status="sent", kind="local")
        for protocol in ("smtp", "pop3", "imap"):
            one(event="tls", protocol=protocol, ip="127.0.0.1")
        for protocol, login in (("smtp", "alice@a.test"), ("pop3", "alice@a.test"), ("imap", "alice@a.test"),
                                ("webmail", "alice@a.test"), ("soap", "sysadmin")):
            one(event="auth_failed", protocol=protocol, ip="127.0.0.1", login=login, level="warning")
        one(event="admin", by="sysadmin", operation="AddDomain", DomainName="a.test", result=0)
        assert all(isinstance(r["pid"], int) and r["time"].endswith("Z") for r in records)

    # fail2ban reads the same file: each failed login is one match, and nothing else is.
    result = subprocess.run(["fail2ban-regex", "--print-all-matched", str(log), str(FILTER)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    summary = re.search(r"Lines: (\d+) lines, (\d+) ignored, (\d+) matched", result.stdout)
    assert summary and int(summary[3]) == 5, result.stdout
    assert result.stdout.count("127.0.0.1") >= 5


def test_sighup_reopens_the_log_file_in_every_worker(lab, tmp_path):
    """logrotate moves the file and sends SIGHUP: the lines after it go to a new file of the old name."""
    log = tmp_path / "mailsrv.log"
    server = lab.add("mx", start=False)
    server.config.write_text(server.config.read_text().replace("workers = 1", "workers = 2")
                             + f'[log]\nfile = "{log}"\n')
    start_logging_to(server, log)
    ok(server.call("svcDomainAdmin", "AddDomain", DomainName="before.test", Path="",
                   PrimaryDomainAdminUserName="postmaster", PrimaryDomainAdminPassword="Lab-domain-pass-1",
                   PrimaryDomainAdminFirstName="", PrimaryDomainAdminLastName="", IP=server.address, ImapPort=143,
                   PopPort=110, SmtpPort=25, MaxAliases=10, MaxDomainSizeInMB=0, MaxDomainUsers=0,
                   MaxMailboxSizeInMB=0, MaxMessageSize=0, MaxRecipients=0, MaxDomainAliases=0, MaxLists=0,
                   ShowDomainAliasMenu=True, ShowContentFilteringMenu=True, ShowSpamMenu=True, ShowStatsMenu=True,
                   RequireSmtpAuthentication=True, ShowListMenu=False, ListCommandAddress=""))
    rotated = tmp_path / "mailsrv.log.1"
    os.rename(log, rotated)
    assert server.serving is not None
    server.serving.process.send_signal(signal.SIGHUP)
    wait_until(log.exists, "the log file opened again")
    # The supervisor and both workers: each has the new file open, none the rotated one.
    supervisor = server.serving.process.pid
    workers = [int(pid) for pid in Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()]
    assert len(workers) == 2

    def open_logs(pid: int) -> set[str]:
        names = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                names.add(os.readlink(fd))
            except OSError:  # closed meanwhile
                continue
        return names & {str(log), str(rotated)}

    wait_until(lambda: all(open_logs(pid) == {str(log)} for pid in [supervisor, *workers]),
               "every process writing into the new file")
    assert refused(server.soap.call("svcUserAdmin", "GetUser", AuthUserName="sysadmin", AuthPassword=WRONG,
                                    EmailAddress="x@before.test"))[0] != 0
    wait_until(lambda: "auth_failed" in log.read_text(), "the failure in the new file")
    server.stop()
    assert "operation=AddDomain" in rotated.read_text() and "auth_failed" not in rotated.read_text()


def test_a_locked_out_address_is_logged_and_counted(make_server, caplog):
    """Past the brute-force limit the next try is refused unheard: an `auth_locked` line (which the
    fail2ban filter matches too) and the blocked counter, beside the failures before it."""
    from prometheus_client import REGISTRY

    from mailsrv.core.errors import MailsrvError, ResultCode

    server = make_server("[security]\nmax_failures_per_login = 2\n")

    def counted(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = (counted("mailsrv_auth_failures_total", protocol="imap"),
              counted("mailsrv_blocked_total", protocol="imap", reason="lockout"))
    codes = []
    with caplog.at_level("INFO", logger="mailsrv.events"):
        for _ in range(3):
            with pytest.raises(MailsrvError) as refusal:
                server.auth.login("nobody@a.test", WRONG, "192.0.2.66", "imap")
            codes.append(refusal.value.code)
    assert codes == [ResultCode.LOGIN_FAILED, ResultCode.LOGIN_FAILED, ResultCode.LOGIN_LOCKED]
    assert [(r.event, r.fields) for r in caplog.records] == [  # type: ignore[attr-defined]
        ("auth_failed", {"protocol": "imap", "ip": "192.0.2.66", "login": "nobody@a.test", "reason": None}),
        ("auth_failed", {"protocol": "imap", "ip": "192.0.2.66", "login": "nobody@a.test", "reason": None}),
        ("auth_locked", {"protocol": "imap", "ip": "192.0.2.66", "login": "nobody@a.test"})]
    assert (counted("mailsrv_auth_failures_total", protocol="imap"),
            counted("mailsrv_blocked_total", protocol="imap", reason="lockout")) == (before[0] + 2, before[1] + 1)
    # The text line fail2ban reads, made by the formatter `[log] format = "text"` installs.
    from mailsrv.core.logs import TextFormatter
    line = TextFormatter().format(caplog.records[2])
    assert re.fullmatch(r"\S+ mailsrv\[\d+\]: auth_locked: protocol=imap, ip=\[192\.0\.2\.66\], "
                        r"login=<nobody@a\.test>", line), line
