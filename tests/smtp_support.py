"""A MailServer with its SMTP and submission listeners on free loopback ports, for the SMTP tests.

The listeners run on an asyncio loop in a background thread, exactly as `mailsrv serve` runs them;
the tests talk to them with smtplib. DNS is the harness's own loopback server (`dns`): tests add
the records they need; any other name is a SERVFAIL, so remote mail stays deferred and no test
depends on the real DNS. Delivery is driven explicitly (`deliver()` runs the queue
manager until nothing is due), so no test waits on a timer. The clock is a ManualClock.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import smtplib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import dns.rcode
import pytest
from conftest import web_listener
from contract_clients import ZeepClient
from dns_server import DnsServer
from sqlalchemy import select

from mailsrv.core import settings
from mailsrv.core.clock import ManualClock
from mailsrv.core.config import parse_config
from mailsrv.mailstore.disk import Disk
from mailsrv.directory.domains import get_domain
from mailsrv.directory.passwords import hash_password
from mailsrv.serve import tcp_listener
from mailsrv.server import MailServer
from mailsrv.access.smtp import start_listener
from mailsrv.store.models import SpoolRecipient, User
from mailsrv.core.tls import SELF_SIGNED_NAME, server_context

START = dt.datetime(2026, 3, 10, 9, 30, 15, 250000, tzinfo=dt.timezone.utc)
ADMIN = ("sysadmin", "Secret-pass-123")
DOMAIN = "a.test"
USER_PASSWORD = "User-pass-123"


class MailHarness:
    def __init__(self, data_dir: Path, clock: ManualClock, extra_config: str = "") -> None:
        self.data_dir = data_dir
        self.clock = clock
        self.database_url = os.environ.get("MAILSRV_TEST_DATABASE_URL", "")
        self.dns = DnsServer({}, unknown=dns.rcode.SERVFAIL)
        self.config_text = (f'data_dir = "{data_dir}"\ndatabase_url = "{self.database_url}"\n'
                            f'[dns]\nnameservers = ["{self.dns.address}"]\n'
                            f'[listen]\nsmtp = ""\nsubmission = ""\n'
                            f'[smtp]\nhostname = "mx.test"\n{extra_config}')
        self.start()

    def start(self) -> None:
        self.server = MailServer(parse_config(self.config_text), self.clock)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        tls = server_context(self.server.config)
        self.listeners: list[asyncio.Server] = []
        self.smtp_port = self._listen(False, tls)
        self.submission_port = self._listen(True, tls)

    def _listen(self, submission: bool, tls: ssl.SSLContext) -> int:
        sock = tcp_listener("127.0.0.1", 0)
        self.listeners.append(self.call(start_listener(self.server.intake, self.server.auth, self.server.config.smtp,
                                                               sock, submission, tls)))
        return sock.getsockname()[1]

    def call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    def close_listener(self, listener: asyncio.Server) -> None:
        """asyncio servers are not thread-safe: close on the loop that owns them."""
        async def close() -> None:
            listener.close()
        self.call(close())

    def deliver(self) -> int:
        """Run the queue manager until nothing is due; the number of jobs attempted."""
        return self.call(self.server.delivery.run_until_idle())

    def stop(self) -> None:
        async def shutdown() -> None:
            for listener in self.listeners:
                listener.close()
            await self.server.spool.close()
        self.call(shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
        self.server.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop for good: the server, and the DNS server (which a restart keeps)."""
        self.stop()
        self.dns.close()

    # -- clients ----------------------------------------------------------------------------

    def client(self, submission: bool = False, tls: bool = False) -> smtplib.SMTP:
        smtp = smtplib.SMTP("127.0.0.1", self.submission_port if submission else self.smtp_port,
                            local_hostname="client.test", timeout=60)
        if tls:
            smtp.starttls(context=self.client_tls())
        return smtp

    def client_tls(self) -> ssl.SSLContext:
        """Trusts exactly the server's self-signed certificate (the name is mx.test, we dial 127.0.0.1)."""
        context = ssl.create_default_context(cafile=str(self.data_dir / "tls" / SELF_SIGNED_NAME))
        context.check_hostname = False
        return context

    def authenticated(self, login: str, password: str = USER_PASSWORD, submission: bool = True) -> smtplib.SMTP:
        smtp = self.client(submission=submission, tls=True)
        smtp.login(login, password)
        return smtp

    # -- the store --------------------------------------------------------------------------

    def admin(self):  # type: ignore[no-untyped-def]
        return self.server.login(*ADMIN, "127.0.0.1")

    def add_user(self, domain: str, name: str, password: str = USER_PASSWORD,
                 user_settings: dict[str, Any] | None = None, **columns: Any) -> None:
        # Straight into the store: what matters here is that SMTP sees a new row at once.
        with self.server.store.session() as s:
            d = get_domain(s, domain)
            s.add(User(domain_id=d.id, name=name, password_hash=hash_password(password),
                       settings={**settings.defaults(settings.USER), **(user_settings or {})}, **columns))
            path = d.path
        self.server.disk.create_mailbox(path, name)

    def maildir(self, address: str) -> Path:
        user, _, domain = address.partition("@")
        with self.server.store.session() as s:
            path = get_domain(s, domain).path
        return Disk.maildir(path, user)

    def messages(self, address: str) -> list[bytes]:
        """The messages in a mailbox's new/ directory, oldest name first."""
        new = self.maildir(address) / "new"
        return [(new / name).read_bytes() for name in sorted(os.listdir(new))]

    def spool_rows(self) -> list[tuple[str, str, str]]:
        """(address, kind, status) of every spool recipient still recorded."""
        with self.server.store.session() as s:
            rows = s.execute(select(SpoolRecipient.address, SpoolRecipient.kind, SpoolRecipient.status)
                             .order_by(SpoolRecipient.address)).all()
        return [tuple(row) for row in rows]


H = TypeVar("H", bound=MailHarness)

# For the tests of the spool and its queue with local mailboxes: without it, mail to local mailboxes
# is delivered at acceptance and never queued (extra config; it belongs to the [smtp] section).
SPOOL_ONLY = "deliver_at_acceptance = false\n"


def without_sender_checks(harness: MailHarness) -> None:
    """SPF, DKIM verification and DMARC off (mailsrv.mta.filtering.dmarc), for the tests that count a
    message's bytes as the client sent them: with them on, every unauthenticated message gains an
    Authentication-Results header."""
    harness.server.system_settings.update({"spfcheck": False, "dkimverify": False, "dmarcaction": "Off"})


def two_nodes(tmp_path, extra_config: str = "", own_clocks: bool = False) -> Iterator[tuple[MailHarness, MailHarness]]:
    """Two nodes on one database and data directory; with `own_clocks`, the second node's clock
    moves alone (so the first node's heartbeats look old to it)."""
    for first in make_harness(tmp_path, extra_config):
        second = MailHarness(first.data_dir, ManualClock(first.clock.now()) if own_clocks else first.clock, extra_config)
        try:
            yield first, second
        finally:
            second.close()  # before the first node's teardown empties the database


@pytest.fixture
def mail(tmp_path: Path) -> Iterator[MailHarness]:
    yield from make_harness(tmp_path)


@pytest.fixture
def soap(mail: MailHarness) -> Iterator[ZeepClient]:
    """SOAP, as a control panel calls it (zeep), on a web listener of `mail`'s server (a module's own
    `mail` fixture, when it has one)."""
    with web_listener(mail.server) as url:
        yield ZeepClient(url)


@pytest.fixture
def spooled(tmp_path: Path) -> Iterator[MailHarness]:
    """The harness with all mail, local too, going through the spool and the queue (SPOOL_ONLY)."""
    yield from make_harness(tmp_path, SPOOL_ONLY)


def make_harness(tmp_path: Path, extra_config: str = "", kind: type[H] = MailHarness) -> Iterator[H]:  # type: ignore[assignment]  # mypy cannot default a TypeVar
    """A started harness of `kind` with the admin, DOMAIN and its users alice and bob; emptied,
    stopped and its DNS server closed afterwards."""
    harness = kind((tmp_path / "data").resolve(), ManualClock(START), extra_config)
    try:
        harness.server.admins.reset_primary(*ADMIN)
        harness.server.domains.add(harness.admin(), DOMAIN, "", "postmaster", "Domain-pass-1", "", "", {})
        harness.add_user(DOMAIN, "alice")
        harness.add_user(DOMAIN, "bob")
        yield harness
    finally:
        if harness.database_url:
            harness.server.store.drop_all()
        harness.close()


def send(smtp: smtplib.SMTP, sender: str, recipients: list[str], content: bytes,
         options: tuple[str, ...] = ()) -> str:
    """MAIL, RCPT…, DATA; asserts every step is accepted and returns the spool id from the 250."""
    assert smtp.ehlo()[0] == 250
    code, reply = smtp.mail(sender, list(options))
    assert code == 250, reply
    for recipient in recipients:
        code, reply = smtp.rcpt(recipient)
        assert code == 250, (recipient, reply)
    code, reply = smtp.data(content)
    assert code == 250, reply
    return reply.decode().rsplit(" ", 1)[1]


def first_line(port: int, source: str) -> tuple[bytes, bool]:
    """What a new connection from `source` is told first, and whether the server then closed it."""
    with socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0)) as sock:
        reader = sock.makefile("rb")
        line = reader.readline()
        sock.settimeout(5)
        try:
            closed = reader.read() == b""
        except TimeoutError:
            closed = False
        return line, closed
