"""NOOP and lean FETCHes answered on the event loop's thread (mailsrv/access/imap/protocol.py) send
exactly the bytes pymap's own server sends for the same commands on the same mailbox, and the
sessions' usual guarantees hold across both ways of answering."""
from __future__ import annotations

import asyncio
import functools
import imaplib
import re
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from proxyprotocol.reader import ProxyProtocolReader
from pymap.imap import IMAPServer

from mailbox_support import ALICE, MailboxHarness, mailbox, message  # noqa: F401
from mailsrv.access.imap.listener import mailbox_login
from mailsrv.core.tls import server_context
from smtp_support import USER_PASSWORD

# Older than this, a folder's directories count as settled (mailsrv.access.imap.maildir._SETTLE_NS).
SETTLE_SECONDS = 0.2
_LITERAL = re.compile(rb"{(\d+)}\r\n$")

# Commands whose answers are compared; the lean ones (all but the last four) are answered on the
# loop once the folder is settled.
COMMANDS = [
    b"NOOP",
    b"UID FETCH 2 (FLAGS)",
    b"FETCH 1:* (FLAGS UID RFC822.SIZE INTERNALDATE)",
    b"UID FETCH 1:* FAST",
    b"UID FETCH 1:* (UID FLAGS)",
    b"UID FETCH 3 (BODY.PEEK[])",
    b"FETCH 2,4 (BODY.PEEK[] FLAGS)",
    b"uid fetch 4 BODY.PEEK[]",
    b"FETCH * (UID)",
    b"UID FETCH 99 (FLAGS)",
    b"FETCH 9 (FLAGS)",
    b"UID FETCH 0 (FLAGS)",
    b"UID FETCH 1 (NONSENSE)",
    b"UID FETCH 1 (ENVELOPE)",
    b"CHECK",
]
ON_LOOP = COMMANDS[:-4]


class RawImap:
    """An IMAP client that hands back each answer's bytes exactly as the server sent them."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")
        self.file.readline()  # the greeting
        self.count = 0

    def send(self, command: bytes) -> bytes:
        self.count += 1
        tag = b"t%d" % self.count
        self.sock.sendall(tag + b" " + command + b"\r\n")
        answer = b""
        while True:
            line = self.file.readline()
            assert line, f"connection closed after {answer!r}"
            answer += line
            literal = _LITERAL.search(line)
            if literal:
                answer += self.file.read(int(literal[1]))
            elif line.startswith(tag + b" "):
                return answer

    def close(self) -> None:
        self.send(b"LOGOUT")
        self.sock.close()


@pytest.fixture
def pymap_port(mailbox: MailboxHarness) -> Iterator[int]:
    """pymap's own IMAP server (its IMAPConnection and ConnectionState) on the same accounts and
    mailboxes as mailsrv's listener."""
    login = mailbox_login(mailbox.server.mailboxes, mailbox.server.config, server_context(mailbox.server.config),
                          False, mailbox.subsystem, "imap")
    callback = ProxyProtocolReader(login.config.proxy_protocol).get_callback(IMAPServer(login, login.config))

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        login.config.apply_context()
        await callback(reader, writer)

    async def start() -> asyncio.Server:
        return await asyncio.start_server(connection, "127.0.0.1", 0)

    server = mailbox.call(start())
    yield server.sockets[0].getsockname()[1]
    mailbox.close_listener(server)


def pool_calls(mailbox: MailboxHarness) -> Callable[[], int]:
    """How many calls pymap's thread pool has taken so far (a count kept around the real pool)."""
    executor = mailbox.executor
    calls = [0]
    submit = executor.submit

    @functools.wraps(submit)
    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return submit(*args, **kwargs)

    executor.submit = counted  # type: ignore[method-assign]
    return lambda: calls[0]


def fill_inbox(mailbox: MailboxHarness) -> None:
    """Four messages: three delivered, one appended with a flag and a date of its own; one seen;
    all had as \\Recent by an earlier session, so that no session claims any."""
    for n in range(3):
        mailbox.deliver_to(ALICE, message(f"number {n}", "Line one.\r\nLine two.\r\n" * (n + 1)))
    client = mailbox.imap()
    client.append("INBOX", r"(\Flagged)", imaplib.Time2Internaldate(1_700_000_000),
                  message("appended", "Kept.\r\n"))
    client.select("INBOX")
    client.uid("STORE", "1", "+FLAGS", r"(\Seen)")
    client.logout()


def test_loop_answers_are_pymaps_bytes(mailbox: MailboxHarness, pymap_port: int) -> None:
    fill_inbox(mailbox)
    time.sleep(SETTLE_SECONDS)
    ours, theirs = RawImap(mailbox.ports["imap"]), RawImap(pymap_port)
    for client in (ours, theirs):
        assert client.send(f"LOGIN {ALICE} {USER_PASSWORD}".encode()).endswith(b"Authentication successful.\r\n")
        assert b" OK [READ-WRITE]" in client.send(b"SELECT INBOX")
    calls = pool_calls(mailbox)
    for command in COMMANDS:
        before = calls()
        answer = ours.send(command)
        if command in ON_LOOP:
            assert calls() == before, f"{command!r} was handed to pymap's thread pool"
        assert answer == theirs.send(command), command
    assert ours.send(b"UID FETCH 3 (BODY.PEEK[])").endswith(b"OK UID FETCH completed.\r\n")
    ours.close()
    theirs.close()


def test_changes_made_by_other_sessions_show_as_pymap_shows_them(mailbox: MailboxHarness, pymap_port: int) -> None:
    fill_inbox(mailbox)
    time.sleep(SETTLE_SECONDS)
    ours, theirs = RawImap(mailbox.ports["imap"]), RawImap(pymap_port)
    for client in (ours, theirs):
        client.send(f"LOGIN {ALICE} {USER_PASSWORD}".encode())
        client.send(b"SELECT INBOX")
        client.send(b"NOOP")
    other = mailbox.imap()
    other.select("INBOX")
    other.uid("STORE", "2", "+FLAGS", r"(\Answered)")
    other.uid("STORE", "3", "+FLAGS", r"(\Deleted)")
    other.expunge()
    other.logout()
    mailbox.deliver_to(ALICE, message("number 4"))
    time.sleep(SETTLE_SECONDS)
    answers = []
    for command in (b"NOOP", b"NOOP", b"UID FETCH 1:* (FLAGS)"):
        answers.append(ours.send(command))
        assert answers[-1] == theirs.send(command), command
    assert answers[0].startswith(b"* 3 EXPUNGE\r\n* 4 EXISTS\r\n") and b"\\Answered" in answers[0]
    # All told: the next NOOP, answered on the loop, has nothing to add.
    assert ours.send(b"NOOP") == b"t7 OK NOOP completed.\r\n"
    ours.close()
    theirs.close()


def test_an_update_is_told_once_by_a_loop_answer(mailbox: MailboxHarness) -> None:
    fill_inbox(mailbox)
    time.sleep(SETTLE_SECONDS)
    client = RawImap(mailbox.ports["imap"])
    client.send(f"LOGIN {ALICE} {USER_PASSWORD}".encode())
    client.send(b"SELECT INBOX")
    other = mailbox.imap()
    other.select("INBOX")
    other.uid("STORE", "4", "+FLAGS", r"(\Answered)")
    other.logout()
    time.sleep(SETTLE_SECONDS)
    assert client.send(b"UID FETCH 2 (FLAGS)") == (b"* 2 FETCH (FLAGS () UID 2)\r\n"
                                                   b"* 4 FETCH (FLAGS (\\Answered \\Flagged) UID 4)\r\n"
                                                   b"t3 OK UID FETCH completed.\r\n")
    assert client.send(b"UID FETCH 2 (FLAGS)") == b"* 2 FETCH (FLAGS () UID 2)\r\nt4 OK UID FETCH completed.\r\n"
    assert client.send(b"NOOP") == b"t5 OK NOOP completed.\r\n"
    client.close()


def test_a_fetch_too_big_for_the_loop_is_pymaps_bytes_too(mailbox: MailboxHarness, pymap_port: int) -> None:
    client = mailbox.imap()
    for n in range(70):  # more messages than one answer on the loop takes
        client.append("INBOX", r"(\Seen)" if n % 3 else "", imaplib.Time2Internaldate(1_700_000_000 + n),
                      message(f"appended {n}", "Some text.\r\n" * n))
    client.logout()
    time.sleep(SETTLE_SECONDS)
    ours, theirs = RawImap(mailbox.ports["imap"]), RawImap(pymap_port)
    for client in (ours, theirs):
        client.send(f"LOGIN {ALICE} {USER_PASSWORD}".encode())
        client.send(b"EXAMINE INBOX")
    for command in (b"UID FETCH 1:* (FLAGS RFC822.SIZE)", b"FETCH 1:* (BODY.PEEK[] INTERNALDATE)", b"NOOP"):
        answer = ours.send(command)
        assert answer == theirs.send(command), command
        assert answer.count(b" FETCH (") == (70 if command != b"NOOP" else 0)
    ours.close()
    theirs.close()
