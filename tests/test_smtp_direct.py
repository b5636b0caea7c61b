"""Delivery at acceptance (mailsrv.mta.spool, direct delivery) and the cached recipient lookups
(mailsrv.mta.recipients) as a user of two nodes sees them: crash recovery, exact counters, and a
directory change through one node answered by the next transaction on the other."""
from __future__ import annotations

import concurrent.futures
import datetime as dt
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from smtp_support import DOMAIN, MailHarness, make_harness, send, two_nodes, without_sender_checks

from mailsrv.directory.abuse import BlockEnd
from mailsrv.mailstore.disk import FAULT_POINT_VARIABLE
from mailsrv.mta import recipients
from mailsrv.mta.recipients import OPENING_REUSE_SECONDS, Opening, reuses_opening

BODY = b"Subject: direct\r\n\r\nstraight into the mailbox\r\n"

# A second process on the same configuration that takes one message for alice through the
# engine's intake (as the SMTP listener does) and is killed by the fault point after the commit.
CHILD = """
import asyncio, datetime, sys
from mailsrv.core.clock import ManualClock
from mailsrv.core.config import parse_config
from mailsrv.mta.intake import Submission
from mailsrv.server import MailServer
server = MailServer(parse_config(sys.argv[1]), ManualClock(datetime.datetime.fromisoformat(sys.argv[3])))

async def main():
    server.heartbeat.beat()  # a node the others know, until its heartbeat stops
    intake = server.intake
    await intake.begin()
    client = intake.client("192.0.2.7", None)
    route = await intake.check_recipient(client, "ext@example.org", None, [], "alice@a.test", 0)
    await intake.submit(Submission(sender="ext@example.org", content=sys.argv[2].encode(),
                                   accepted=[("alice@a.test", route)], own_domain=None, actor=None,
                                   client_ip="192.0.2.7", helo="client.test",
                                   trace=lambda message_id, now: f"Received: by test id {message_id}\\r\\n"))

asyncio.run(main())
"""


@pytest.fixture
def mail(tmp_path) -> Iterator[MailHarness]:
    for harness in make_harness(tmp_path):
        without_sender_checks(harness)  # the tests count the bytes sent
        yield harness


def received(mail: MailHarness, address: str) -> tuple[int, int]:
    """(messages, bytes) received as GetUserStats reports them."""
    t = mail.server.user_activity.traffic(mail.admin(), address, None, None)
    return t.messages_received, t.bytes_received


def test_local_mail_is_in_the_mailbox_and_counted_when_the_250_comes(mail):
    with mail.client() as smtp:
        send(smtp, "ext@example.org", ["alice@a.test", "bob@a.test"], BODY)
    for address in ("alice@a.test", "bob@a.test"):
        [stored] = mail.messages(address)
        assert stored.startswith(f"Return-Path: <ext@example.org>\r\nDelivered-To: {address}\r\nReceived: ".encode())
        assert stored.endswith(b"\r\n\r\n" + BODY) or stored.endswith(BODY)
        assert received(mail, address) == (1, len(BODY))
        assert os.listdir(mail.maildir(address) / "tmp") == []
    assert mail.server.spool.count() == 0  # nothing left for the queue


def crash_between_commit_and_rename(mail: MailHarness) -> Path:
    """A node, known by its heartbeat, killed after the transaction that counts a delivery to alice
    and before the file is in new/ (the client had no 250); alice's Maildir."""
    mail.stop()
    try:
        child = subprocess.run([sys.executable, "-c", CHILD, mail.config_text, BODY.decode(),
                                mail.clock.now().isoformat()],
                               env={**os.environ, FAULT_POINT_VARIABLE: "maildir-renames-committed"},
                               capture_output=True, timeout=120)
    finally:
        mail.start()
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    maildir = mail.maildir("alice@a.test")
    assert os.listdir(maildir / "new") == [] and len(os.listdir(maildir / "tmp")) == 1
    assert received(mail, "alice@a.test") == (1, len(BODY))
    return maildir


def test_a_crash_between_commit_and_rename_is_finished_once_at_start(mail):
    """The message is committed, so the start makes it visible exactly once."""
    maildir = crash_between_commit_and_rename(mail)
    mail.server.spool.sweep()  # what `mailsrv serve` runs at start
    [stored] = mail.messages("alice@a.test")
    assert stored.endswith(BODY)
    assert os.listdir(maildir / "tmp") == []
    assert received(mail, "alice@a.test") == (1, len(BODY))
    mail.server.spool.sweep()  # again, as another node may: nothing more happens
    assert len(mail.messages("alice@a.test")) == 1
    assert received(mail, "alice@a.test") == (1, len(BODY))


def test_a_crash_between_commit_and_rename_is_finished_by_a_node_that_outlives_it(mail):
    """No start needed: the first heartbeat that finds the crashed node dead moves its copy into new/."""
    maildir = crash_between_commit_and_rename(mail)
    mail.deliver()
    assert mail.messages("alice@a.test") == []  # its heartbeat is fresh: it may be renaming right now
    mail.clock.advance(dt.timedelta(seconds=mail.server.config.delivery.node_timeout_seconds + 1))
    mail.deliver()
    [stored] = mail.messages("alice@a.test")
    assert stored.endswith(BODY) and os.listdir(maildir / "tmp") == []
    assert received(mail, "alice@a.test") == (1, len(BODY))


# The group commit's insert of rename rows refused by the database itself, until dropped.
REFUSE_RENAMES = {
    "sqlite": ["CREATE TRIGGER refuse BEFORE INSERT ON maildir_renames BEGIN SELECT RAISE(ABORT, 'refused'); END"],
    "postgresql": ["CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$",
                   "CREATE TRIGGER refuse BEFORE INSERT ON maildir_renames FOR EACH ROW EXECUTE FUNCTION refuse()"],
}
ALLOW_RENAMES = {"sqlite": ["DROP TRIGGER refuse"],
                 "postgresql": ["DROP TRIGGER refuse ON maildir_renames", "DROP FUNCTION refuse()"]}


def test_a_commit_the_database_fails_answers_451_and_the_next_message_is_delivered_once(mail):
    engine = mail.server.store.engine
    with engine.begin() as conn:
        for statement in REFUSE_RENAMES[engine.dialect.name]:
            conn.exec_driver_sql(statement)
    with mail.client() as smtp:
        assert smtp.ehlo()[0] == 250 and smtp.mail("ext@example.org")[0] == 250
        assert smtp.rcpt("alice@a.test")[0] == 250
        assert smtp.data(BODY)[0] == 451
    assert mail.messages("alice@a.test") == [] and received(mail, "alice@a.test") == (0, 0)
    assert os.listdir(mail.maildir("alice@a.test") / "tmp") == []
    with engine.begin() as conn:
        for statement in ALLOW_RENAMES[engine.dialect.name]:
            conn.exec_driver_sql(statement)
    with mail.client() as smtp:
        send(smtp, "ext@example.org", ["alice@a.test"], BODY)
    [stored] = mail.messages("alice@a.test")
    assert stored.endswith(BODY) and received(mail, "alice@a.test") == (1, len(BODY))


def test_a_maildir_without_tmp_gets_the_message_through_the_spool_once(mail):
    """The copy cannot be written (mailsrv.mta.spool, Spool.enqueue): the message is spooled
    instead, for every recipient, and the queue's delivery creates tmp/."""
    os.rmdir(mail.maildir("alice@a.test") / "tmp")
    with mail.client() as smtp:
        send(smtp, "ext@example.org", ["alice@a.test", "bob@a.test"], BODY)
    assert mail.messages("alice@a.test") == [] and mail.messages("bob@a.test") == []
    mail.deliver()
    for address in ("alice@a.test", "bob@a.test"):
        [stored] = mail.messages(address)
        assert stored.endswith(BODY) and received(mail, address) == (1, len(BODY))
    assert mail.server.spool.count() == 0


def test_a_crash_before_the_commit_leaves_nothing_visible_and_nothing_counted(mail):
    """A copy written into tmp/ whose transaction never committed: swept once old enough."""
    tmp = mail.maildir("alice@a.test") / "tmp"
    orphan = tmp / "1773135015.M250000Q0123456789abcdef0123456789abcdef_1.mailsrv"
    orphan.write_bytes(BODY)
    assert mail.server.spool.sweep() == 0  # too young: its node may be about to commit it
    os.utime(orphan, (0, 0))
    assert mail.server.spool.sweep() == 1
    assert os.listdir(tmp) == [] and mail.messages("alice@a.test") == []
    assert received(mail, "alice@a.test") == (0, 0)


@pytest.fixture
def nodes(tmp_path) -> Iterator[tuple[MailHarness, MailHarness]]:
    for first, second in two_nodes(tmp_path):
        without_sender_checks(first)  # the tests count the bytes sent
        yield first, second


def rcpt(node: MailHarness, address: str) -> int:
    with node.client() as smtp:
        smtp.ehlo()
        smtp.mail("ext@example.org")
        return smtp.rcpt(address)[0]


def test_a_user_deleted_through_one_node_is_refused_by_the_next_transaction_on_the_other(nodes):
    first, second = nodes
    assert rcpt(first, "bob@a.test") == 250
    assert rcpt(first, "bob@a.test") == 250  # answered from the cache now
    second.server.users.delete(second.admin(), "bob", DOMAIN)
    assert rcpt(first, "bob@a.test") == 550


def test_a_sessions_first_mail_soon_after_its_opening_uses_the_generation_read_then():
    opened = Opening("192.0.2.1", BlockEnd(None), read_at=100.0)
    assert reuses_opening(opened, 100.0 + OPENING_REUSE_SECONDS / 2)
    assert not reuses_opening(opened, 100.0 + OPENING_REUSE_SECONDS)
    assert not reuses_opening(None, 100.0)


@pytest.mark.parametrize("reuse_seconds, first, second", [(3600.0, 250, 550), (0.0, 550, 550)])
def test_a_change_made_after_a_session_opened_applies_from_its_first_transaction_begun_too_late_to_reuse_it(
        nodes, monkeypatch, reuse_seconds, first, second):
    """A session's first transaction within the reuse time answers as of the session's opening; its
    next transactions, and a first one begun later, as of their MAIL."""
    monkeypatch.setattr(recipients, "OPENING_REUSE_SECONDS", reuse_seconds)
    one, other = nodes
    assert rcpt(one, "bob@a.test") == 250  # kept under the generation: answered from memory while it holds
    with one.client() as smtp:
        smtp.ehlo()  # the session is open: its generation read
        other.server.users.delete(other.admin(), "bob", DOMAIN)
        smtp.mail("ext@example.org")
        assert smtp.rcpt("bob@a.test")[0] == first
        smtp.rset()
        smtp.mail("ext@example.org")
        assert smtp.rcpt("bob@a.test")[0] == second


def test_an_alias_added_and_changed_through_one_node_resolves_anew_on_the_other(nodes):
    first, second = nodes
    assert rcpt(first, "team@a.test") == 550
    second.server.aliases.add(second.admin(), DOMAIN, "team", ["alice@a.test"])
    with first.client() as smtp:
        send(smtp, "ext@example.org", ["team@a.test"], BODY)
    assert len(first.messages("alice@a.test")) == 1 and first.messages("bob@a.test") == []
    second.server.aliases.update(second.admin(), DOMAIN, "team", ["bob@a.test"])
    with first.client() as smtp:
        send(smtp, "ext@example.org", ["team@a.test"], BODY)
    assert len(first.messages("alice@a.test")) == 1 and len(first.messages("bob@a.test")) == 1


def test_two_nodes_delivering_at_acceptance_at_once_deliver_and_count_each_message_once(nodes):
    first, second = nodes
    numbers = range(60)

    def submit(node: MailHarness, mine: range) -> None:
        with node.client() as smtp:
            for number in mine:
                send(smtp, "ext@example.org", ["alice@a.test", "bob@a.test"],
                     b"Subject: n\r\nX-Number: %d\r\n\r\nbody\r\n" % number)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for done in [pool.submit(submit, node, numbers[start::4])
                     for start, node in enumerate([first, second] * 2)]:
            done.result()
    size = len(b"Subject: n\r\nX-Number: 10\r\n\r\nbody\r\n")
    for address in ("alice@a.test", "bob@a.test"):
        found = sorted(int(re.search(rb"X-Number: (\d+)", m)[1]) for m in first.messages(address))
        assert found == list(numbers)
        messages, total = received(second, address)
        assert messages == len(numbers) and total == sum(size - (n < 10) for n in numbers)


def raw_session(mail: MailHarness, data: bytes) -> list[bytes]:
    """One pipelined session (EHLO, MAIL, RCPT, DATA, the data, then QUIT in the same write); the replies."""
    import socket
    with socket.create_connection(("127.0.0.1", mail.smtp_port), timeout=30) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220")
        sock.sendall(b"EHLO client.test\r\n")
        while not reader.readline().startswith(b"250 "):
            pass
        sock.sendall(b"MAIL FROM:<ext@example.org>\r\nRCPT TO:<alice@a.test>\r\nDATA\r\n")
        replies = [reader.readline() for _ in range(3)]
        sock.sendall(data + b"QUIT\r\n")
        replies += [reader.readline(), reader.readline()]
    return replies


@pytest.mark.parametrize("data, stored", [
    (b".\r\n", b""),  # an empty message: the end marker is the first line
    (b"..\r\n.\r\n", b".\r\n"),  # a line of one dot, stuffed
    (b"Subject: s\r\n\r\n..a\r\n.b\r\nc.\r\n\r\n.\r\n", b"Subject: s\r\n\r\n.a\r\nb\r\nc.\r\n\r\n"),
    (b"Subject: s\r\n\r\n" + b"x" * 998 + b"\r\n" + b"y\r\n" * 5000 + b".\r\n",
     b"Subject: s\r\n\r\n" + b"x" * 998 + b"\r\n" + b"y\r\n" * 5000),  # many blocks, a longest line
])
def test_data_is_read_to_its_end_marker_exactly_and_a_pipelined_command_after_it_is_answered(mail, data, stored):
    replies = raw_session(mail, data)
    assert [r[:3] for r in replies] == [b"250", b"250", b"354", b"250", b"221"]
    [message] = mail.messages("alice@a.test")
    assert message.endswith(stored) and message.split(b"\r\n\r\n", 1)[0].count(b"Received:") == 1


def test_a_client_that_sends_a_whole_session_in_one_write_gets_every_reply_in_order(mail):
    """Replies held while the next command is already read (pipelining) all go out, in order, the
    354 even though the data came before it, and an unknown command's reply between them."""
    import socket
    transaction = b"MAIL FROM:<ext@example.org>\r\nRCPT TO:<alice@a.test>\r\nDATA\r\nSubject: s\r\n\r\nbody\r\n.\r\n"
    with socket.create_connection(("127.0.0.1", mail.smtp_port), timeout=30) as sock:
        sock.sendall(b"EHLO client.test\r\n" + transaction + b"NOOP\r\nBOGUS\r\n" + transaction + b"RSET\r\nQUIT\r\n")
        replies = sock.makefile("rb").read().split(b"\r\n")
    codes = [reply[:4] for reply in replies if reply and not reply.startswith(b"250-")]
    assert codes == [b"220 ", b"250 ", b"250 ", b"250 ", b"354 ", b"250 ", b"250 ", b"500 ",
                     b"250 ", b"250 ", b"354 ", b"250 ", b"250 ", b"221 "]
    assert len(mail.messages("alice@a.test")) == 2


def test_a_line_over_1000_octets_is_refused_after_the_data_and_nothing_is_delivered(mail):
    replies = raw_session(mail, b"Subject: s\r\n\r\n" + b"x" * 1000 + b"\r\n.\r\n")
    assert replies[3].startswith(b"500 5.5.2 Line too long") and replies[4][:3] == b"221"
    assert mail.messages("alice@a.test") == []
