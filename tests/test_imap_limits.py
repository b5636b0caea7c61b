"""IMAP input limits and mailbox names, over raw loopback sockets: what a hostile or broken client
sends (huge literals, endless lines, names that are no folder) gets a clear answer and costs the
server no more than the limits, and touches nothing outside the user's Maildir."""
from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailbox_support import ALICE, MailboxHarness, mailbox, message  # noqa: F401
from mailsrv.directory.domains import get_domain
from mailsrv.core.errors import MailsrvError
from mailsrv.mailstore.folders import Mailbox
from smtp_support import DOMAIN, USER_PASSWORD, make_harness

# More than any limit, and more than the kernel buffers between client and server can hold: a
# server that stops reading makes the client's send fail long before this.
FLOOD = 32 * 1024 * 1024
# What the client may still push into the socket buffers after the server has stopped reading.
BUFFERED = 4 * 1024 * 1024


class Wire:
    """One IMAP connection spoken byte by byte, as a client that does not play by the rules would."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        self.file = self.sock.makefile("rb")
        self.greeting = self.file.readline()
        assert self.greeting.startswith(b"* OK"), self.greeting

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def readline(self) -> bytes:
        return self.file.readline()

    def tagged(self, tag: bytes) -> tuple[bytes, list[bytes]]:
        """The tagged answer to `tag` and the lines before it."""
        lines = []
        while not (line := self.readline()).startswith(tag + b" "):
            assert line, f"connection closed before {tag!r} was answered; got {lines}"
            lines.append(line)
        return line, lines

    def command(self, tag: bytes, text: bytes) -> bytes:
        self.send(tag + b" " + text + b"\r\n")
        return self.tagged(tag)[0]

    def login(self) -> None:
        assert self.command(b"l", f'LOGIN "{ALICE}" "{USER_PASSWORD}"'.encode()).startswith(b"l OK")

    def flood(self, total: int = FLOOD) -> int:
        """Send up to `total` bytes until the server closes; the number sent."""
        chunk = b"x" * 65536
        sent = 0
        try:
            while sent < total:
                sent += self.sock.send(chunk)
        except OSError:
            pass
        return sent

    def rest(self) -> bytes:
        """Whatever the server still sent before it closed."""
        data = b""
        try:
            while chunk := self.sock.recv(65536):
                data += chunk
        except OSError:
            pass
        return data

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def wire(mailbox: MailboxHarness) -> Iterator[Wire]:
    connection = Wire(mailbox.ports["imap"])
    yield connection
    connection.close()


def _flood_after(wire: Wire, header: bytes) -> tuple[int, bytes]:
    """Send `header`, then bytes until the server closes: (bytes sent after the header, what it answered)."""
    wire.send(header)
    answer: list[bytes] = []
    reader = threading.Thread(target=lambda: answer.append(wire.rest()))
    reader.start()
    sent = wire.flood()
    reader.join(60)
    return sent, answer[0] if answer else b""


def test_a_huge_non_synchronising_literal_before_login_ends_the_connection_unread(wire: Wire) -> None:
    sent, answer = _flood_after(wire, b"a LOGIN {999999999+}\r\n")
    assert sent < BUFFERED, f"the server read {sent} bytes of a literal before login"
    assert answer.startswith(b"* BYE [TOOBIG]"), answer


def test_a_line_without_end_ends_the_connection(wire: Wire) -> None:
    sent, answer = _flood_after(wire, b"a LOGIN ")
    assert sent < BUFFERED, f"the server read {sent} bytes of one command line"
    assert answer.startswith(b"* BYE [TOOBIG]"), answer


def test_many_literals_in_one_command_end_the_connection(wire: Wire) -> None:
    # Each literal is small; together they would still grow the command without bound.
    piece = b"{4000+}\r\n" + b"x" * 4000 + b" "
    wire.send(b"a LOGIN ")
    sent = 0
    try:
        while sent < FLOOD:
            wire.send(piece)
            sent += len(piece)
    except OSError:
        pass
    assert sent < BUFFERED, f"the server read {sent} bytes of one command"
    assert wire.rest().startswith(b"* BYE [TOOBIG]")


def test_append_before_login_is_refused_before_the_continuation(wire: Wire) -> None:
    wire.send(b"a APPEND INBOX {999999999}\r\n")
    line = wire.readline()
    assert line.startswith(b"a NO [TOOBIG]"), line
    assert wire.command(b"n", b"NOOP").startswith(b"n OK")


def _set_max_message_kb(mailbox: MailboxHarness, kb: int) -> None:
    with mailbox.server.store.session() as s:
        domain = get_domain(s, DOMAIN)
        domain.settings = {**domain.settings, "maxmessagesize": kb}


def _append_limit(wire: Wire) -> bytes:
    wire.send(b"c CAPABILITY\r\n")
    tagged, lines = wire.tagged(b"c")
    assert tagged.startswith(b"c OK")
    capability = next(line for line in lines if line.startswith(b"* CAPABILITY"))
    return next(word for word in capability.split() if word.startswith(b"APPENDLIMIT="))


def test_append_is_limited_to_the_domains_message_size(mailbox: MailboxHarness, wire: Wire) -> None:
    _set_max_message_kb(mailbox, 100)
    wire.login()
    assert _append_limit(wire) == b"APPENDLIMIT=102400"
    # Refused before the continuation: the client never sends the message.
    wire.send(b"a APPEND INBOX {102401}\r\n")
    line = wire.readline()
    assert line.startswith(b"a NO [TOOBIG]"), line
    assert wire.command(b"n", b"NOOP").startswith(b"n OK")
    fits = message("just fits")
    fits += b"x" * (102400 - len(fits))
    wire.send(b"b APPEND INBOX {102400}\r\n")
    assert wire.readline().startswith(b"+ ")
    wire.send(fits + b"\r\n")
    assert wire.tagged(b"b")[0].startswith(b"b OK")
    assert mailbox.messages(ALICE) == [fits]
    # Sent without waiting, a message over the limit ends the connection unread (RFC 7888).
    sent, answer = _flood_after(wire, b"d APPEND INBOX {102401+}\r\n")
    assert sent < BUFFERED
    assert answer.startswith(b"* BYE [TOOBIG]"), answer


@pytest.fixture
def small_server_limit(tmp_path: Path) -> Iterator[MailboxHarness]:
    yield from make_harness(tmp_path, "max_message_kb = 300\n", kind=MailboxHarness)


def test_append_limit_is_the_servers_when_the_domain_sets_none(small_server_limit: MailboxHarness) -> None:
    _set_max_message_kb(small_server_limit, 0)
    wire = Wire(small_server_limit.ports["imap"])
    wire.login()
    assert _append_limit(wire) == b"APPENDLIMIT=307200"
    wire.send(b"a APPEND INBOX {307201}\r\n")
    assert wire.readline().startswith(b"a NO [TOOBIG]")
    wire.close()


def _literal(name: bytes) -> bytes:
    return b"{%d+}\r\n%b" % (len(name), name)


def _tree(root: Path) -> set[Path]:
    return {path.relative_to(root) for path in root.rglob("*")}


def test_delete_of_dot_or_empty_name_deletes_nothing(mailbox: MailboxHarness, wire: Wire) -> None:
    mailbox.deliver_to(ALICE, message("one"))
    mailbox.deliver_to(ALICE, message("two"))
    wire.login()
    # "." was Maildir/.. (the user's whole directory), "" the Maildir itself.
    for name in (b'"."', b'""', _literal(b"."), _literal(b"")):
        answer = wire.command(b"d", b"DELETE " + name)
        assert answer.startswith(b"d NO"), answer
        assert wire.command(b"n", b"NOOP").startswith(b"n OK")
    assert len(mailbox.messages(ALICE)) == 2
    assert wire.command(b"s", b"SELECT INBOX").startswith(b"s OK")


BAD_NAMES = [b".", b"..", b"", b"../../x", b"x" * 300, b"a\r\nb", b"a\nb", b"a\x01b", b"a\x7fb",
             b"/x", b"x/", b"a//b", b"a/../b", b"a/./b", b"a.b", b"Projects/.."]
# (command, whether it needs a selected mailbox); the name goes where %b is.
NAME_COMMANDS = [(b"CREATE %b", False), (b"DELETE %b", False), (b"RENAME %b Renamed", False),
                 (b"RENAME Projects %b", False), (b"SELECT %b", False), (b"EXAMINE %b", False),
                 (b"STATUS %b (MESSAGES UIDNEXT)", False), (b"SUBSCRIBE %b", False),
                 (b"UNSUBSCRIBE %b", False), (b"APPEND %b {8+}\r\nSubject:", False),
                 (b"COPY 1 %b", True), (b"MOVE 1 %b", True), (b"UID COPY 1 %b", True)]


def test_a_name_that_is_no_folder_gets_a_tagged_no_and_touches_nothing(mailbox: MailboxHarness,
                                                                        wire: Wire) -> None:
    mailbox.deliver_to(ALICE, message("stays"))
    wire.login()
    assert wire.command(b"p", b"CREATE Projects").startswith(b"p OK")
    assert wire.command(b"s", b"SELECT INBOX").startswith(b"s OK")
    before = _tree(mailbox.data_dir)
    for name in BAD_NAMES:
        for template, selected in NAME_COMMANDS:
            if selected:
                assert wire.command(b"s", b"SELECT INBOX").startswith(b"s OK")
            answer = wire.command(b"c", template % _literal(name))
            assert answer.startswith(b"c NO"), (template, name, answer)
            assert wire.command(b"n", b"NOOP").startswith(b"n OK"), (template, name)
    assert _tree(mailbox.data_dir) == before
    assert wire.command(b"s", b"SELECT INBOX").startswith(b"s OK")
    wire.send(b"f FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n")
    assert any(b"Subject: stays" in line for line in wire.tagged(b"f")[1])


def test_directories_no_folder_name_reaches_are_listed_by_neither_imap_nor_the_web(mailbox: MailboxHarness,
                                                                                 wire: Wire) -> None:
    # As the unchecked names left them: the web and IMAP apply the same rule.
    root = mailbox.maildir(ALICE)
    for bad in (".a\r\nb", ".a..b", ".x."):
        for part in ("cur", "new", "tmp"):
            (root / bad / part).mkdir(parents=True)
    wire.login()
    wire.send(b'l LIST "" "*"\r\n')
    tagged, lines = wire.tagged(b"l")
    assert tagged.startswith(b"l OK")
    assert sorted(line.rsplit(b" ", 1)[1] for line in lines) == [b"Drafts\r\n", b"INBOX\r\n", b"Junk\r\n",
                                                                 b"Sent\r\n", b"Trash\r\n"]
    assert [folder.name for folder in Mailbox(root).folders()] == ["INBOX", "Sent", "Drafts", "Trash", "Junk"]
    for name in ("a\r\nb", "a..b", "x.", ".", ""):
        with pytest.raises(MailsrvError):
            Mailbox(root).page(name, 1)
