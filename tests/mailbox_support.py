"""The SMTP test harness plus IMAP, IMAPS, POP3 and POP3S listeners on free loopback ports.

Mail reaches a mailbox the way it does in production: over SMTP, then the queue manager's local
delivery. The clients are imaplib and poplib over real sockets.
"""
from __future__ import annotations

import datetime as dt
import imaplib
import poplib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pymap.concurrent import Subsystem

from mailsrv.access.imap.listener import remove_all_stale_locks, start_imap_listener
from mailsrv.access.pop3 import start_pop3_listener
from mailsrv.serve import tcp_listener
from mailsrv.core.tls import server_context
from smtp_support import DOMAIN, USER_PASSWORD, MailHarness, make_harness, send

ALICE, BOB = f"alice@{DOMAIN}", f"bob@{DOMAIN}"


class MailboxHarness(MailHarness):
    def start(self) -> None:
        super().start()
        remove_all_stale_locks(self.server.store)  # as `mailsrv serve` does at start
        self.executor = ThreadPoolExecutor(32)
        self.subsystem = Subsystem.for_executor(self.executor)
        tls = server_context(self.server.config)
        self.ports: dict[str, int] = {}
        for name, starter, implicit in (("imap", start_imap_listener, False), ("imaps", start_imap_listener, True),
                                        ("pop3", start_pop3_listener, False), ("pop3s", start_pop3_listener, True)):
            sock = tcp_listener("127.0.0.1", 0)
            self.listeners.append(self.call(starter(self.server.mailboxes, self.server.config, sock, tls, implicit,
                                                    self.subsystem)))
            self.ports[name] = sock.getsockname()[1]

    def stop(self) -> None:
        super().stop()
        self.executor.shutdown()

    def deliver_to(self, recipient: str, content: bytes, sender: str = "carol@remote.test") -> None:
        with self.client() as smtp:
            send(smtp, sender, [recipient], content)
        self.deliver()
        # Maildir names carry the arrival time: keep each delivery's distinct, as in real life.
        self.clock.advance(dt.timedelta(milliseconds=1))

    def imap(self, login: str | None = ALICE, password: str = USER_PASSWORD, tls: bool = True) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.ports["imap"], timeout=60)
        if tls:
            client.starttls(ssl_context=self.client_tls())
        if login:
            client.login(login, password)
        return client

    def imaps(self) -> imaplib.IMAP4_SSL:
        return imaplib.IMAP4_SSL("127.0.0.1", self.ports["imaps"], ssl_context=self.client_tls(), timeout=60)

    def pop3(self, login: str | None = ALICE, password: str = USER_PASSWORD, tls: bool = True) -> poplib.POP3:
        client = poplib.POP3("127.0.0.1", self.ports["pop3"], timeout=60)
        if tls:
            client.stls(context=self.client_tls())
        if login:
            client.user(login)
            client.pass_(password)
        return client

    def pop3s(self) -> poplib.POP3_SSL:
        return poplib.POP3_SSL("127.0.0.1", self.ports["pop3s"], context=self.client_tls(), timeout=60)


@pytest.fixture
def mailbox(tmp_path: Path) -> Iterator[MailboxHarness]:
    yield from make_harness(tmp_path, kind=MailboxHarness)


def message(subject: str, body: str = "Hello.\r\n") -> bytes:
    return (f"From: carol@remote.test\r\nTo: alice@a.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <{abs(hash(subject))}@remote.test>\r\n\r\n{body}").encode()
