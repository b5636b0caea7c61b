"""From DATA to the Maildir through the spool: exact bytes, exact counters, and a spool that survives
restarts and crashes.

Mail to local mailboxes only is delivered at acceptance (tests/test_smtp_direct.py); here the harness
sends it through the spool too (SPOOL_ONLY), as mail with remote recipients or auto-replies goes."""
from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import os

import pytest
from smtp_support import DOMAIN, SPOOL_ONLY, START, make_harness, send, without_sender_checks

from mailsrv.mta.spool import Delivered
from mailsrv.directory.stats import Traffic



@pytest.fixture
def mail(tmp_path):
    for harness in make_harness(tmp_path, SPOOL_ONLY):
        without_sender_checks(harness)  # the tests count the bytes sent
        yield harness


BODY = (b"From: Ext <ext@example.org>\r\n"
        b"To: alice@a.test\r\n"
        b"Subject: exact\r\n"
        b"\r\n"
        b".a line that starts with a dot (dot-stuffed on the wire)\r\n"
        b"caf\xc3\xa9 8-bit text\r\n"
        b"  trailing spaces  \r\n"
        b"\r\n"
        b"last line without newline")


def test_the_maildir_file_is_our_trace_headers_then_the_message_byte_for_byte(mail):
    with mail.client() as smtp:
        spool_id = send(smtp, "ext@example.org", ["Alice@A.Test"], BODY, ("BODY=8BITMIME",))
    assert mail.server.spool.count() == 1
    assert mail.deliver() == 1

    [stored] = mail.messages("alice@a.test")
    # smtplib ends the DATA with CRLF; that CRLF is part of the message as transferred.
    transferred = BODY + b"\r\n"
    expected_headers = (
        "Return-Path: <ext@example.org>\r\n"
        "Delivered-To: alice@a.test\r\n"
        "Received: from client.test ([127.0.0.1])\r\n"
        f"\tby mx.test (mailsrv) with ESMTP id {spool_id}\r\n"
        f"\tfor <Alice@A.Test>; {email.utils.format_datetime(START)}\r\n").encode()
    assert stored == expected_headers + transferred
    # The Maildir name is derived from the spool id: what makes a redelivery detectable.
    [name] = os.listdir(mail.maildir("alice@a.test") / "new")
    assert spool_id in name and name.startswith(f"{int(START.timestamp())}.")
    # Delivered: nothing left in the spool, neither rows nor file.
    assert mail.server.spool.count() == 0 and mail.spool_rows() == []
    assert os.listdir(mail.data_dir / "spool") == []


def test_the_null_sender_is_accepted_and_kept_as_an_empty_return_path(mail):
    with mail.client() as smtp:
        send(smtp, "<>", ["bob@a.test"], b"Subject: bounce\r\n\r\nx\r\n")
    mail.deliver()
    [stored] = mail.messages("bob@a.test")
    assert stored.startswith(b"Return-Path: <>\r\nDelivered-To: bob@a.test\r\n")


def test_counters_are_exact_to_the_byte_after_a_mix_of_traffic(mail):
    one = b"Subject: one\r\n\r\n" + b"x" * 100 + b"\r\n"
    two = b"Subject: two\r\n\r\n" + (b"y" * 76 + b"\r\n") * 33
    three = b"Subject: three\r\n\r\n" + b"z" * 777 + b"\r\n"
    mail.server.aliases.add(mail.admin(), DOMAIN, "team", ["alice@a.test", "bob@a.test"])

    with mail.client() as smtp:  # inbound: one reception for alice
        send(smtp, "ext@example.org", ["alice@a.test"], one)
    with mail.authenticated("alice@a.test") as smtp:  # sent by alice: to bob and to a remote address
        send(smtp, "alice@a.test", ["bob@a.test", "friend@example.net"], two)
    with mail.client() as smtp:  # inbound to an alias: one reception for each of alice and bob
        send(smtp, "ext@example.org", ["team@a.test"], three)
    mail.deliver()

    t = mail.server.stats.domain(mail.admin(), DOMAIN, None, None)
    assert (t.messages_received, t.bytes_received) == (4, len(one) + len(two) + 2 * len(three))
    assert (t.messages_sent, t.bytes_sent) == (1, len(two))
    # Delivering again (nothing due) changes nothing; the remote copy waits in the spool.
    mail.deliver()
    again = mail.server.stats.domain(mail.admin(), DOMAIN, None, None)
    assert again == Traffic(4, 1, len(one) + len(two) + 2 * len(three), len(two), again.bytes_size)
    # Rows of a message stay until its last recipient is final; here the remote copy waits.
    assert mail.spool_rows() == [("bob@a.test", "local", "delivered"), ("friend@example.net", "remote", "deferred")]
    assert mail.server.spool.count() == 1


def test_a_restart_delivers_what_was_pending_once_and_what_was_delivered_never_again(mail):
    with mail.client() as smtp:
        send(smtp, "ext@example.org", ["alice@a.test"], b"Subject: first\r\n\r\n1\r\n")
    mail.deliver()
    with mail.client() as smtp:
        send(smtp, "ext@example.org", ["alice@a.test"], b"Subject: second\r\n\r\n2\r\n")
    assert mail.server.spool.count() == 1

    mail.restart()  # same data directory, same database
    assert mail.server.spool.count() == 1
    assert mail.deliver() == 1
    mail.restart()
    assert mail.deliver() == 0
    subjects = sorted(m.split(b"Subject: ")[1].split(b"\r\n")[0] for m in mail.messages("alice@a.test"))
    assert subjects == [b"first", b"second"]
    t = mail.server.stats.domain(mail.admin(), DOMAIN, None, None)
    assert t.messages_received == 2


def test_a_crash_between_writing_the_maildir_and_recording_it_neither_duplicates_nor_loses(mail):
    with mail.client() as smtp:
        send(smtp, "ext@example.org", ["alice@a.test", "bob@a.test"], b"Subject: crash\r\n\r\nbody\r\n")
    # A node claims the delivery and writes the Maildir files, then dies before recording it.
    queue = mail.server.delivery
    [job] = mail.server.spool.claim(queue.node, 10, queue.lease)
    [outcomes] = mail.call(queue.targets["local"].deliver_batch([job]))
    assert all(isinstance(o, Delivered) for o in outcomes)
    mail.restart()

    assert mail.deliver() == 0  # the dead node's lease still holds
    mail.clock.advance(mail.server.delivery.lease + dt.timedelta(seconds=1))
    assert mail.deliver() == 1
    assert len(mail.messages("alice@a.test")) == 1 and len(mail.messages("bob@a.test")) == 1
    assert mail.spool_rows() == []
    t = mail.server.stats.domain(mail.admin(), DOMAIN, None, None)
    assert t.messages_received == 2  # counted once, by the delivery that was recorded


def test_a_late_outcome_from_a_node_whose_lease_ran_out_is_ignored(mail):
    with mail.client() as smtp:
        send(smtp, "ext@example.org", ["alice@a.test"], b"Subject: slow\r\n\r\nbody\r\n")
    spool, queue = mail.server.spool, mail.server.delivery
    [slow_job] = spool.claim("slow-node", 10, queue.lease)
    mail.clock.advance(queue.lease + dt.timedelta(seconds=1))
    assert mail.deliver() == 1  # this node takes over and records the delivery
    spool.finish("slow-node", [(slow_job, [Delivered(mailbox=(1, 1))])], lambda _: dt.timedelta(0))
    t = mail.server.stats.domain(mail.admin(), DOMAIN, None, None)
    assert t.messages_received == 1 and len(mail.messages("alice@a.test")) == 1


def test_files_without_a_row_are_swept_and_spooled_ones_kept(mail):
    with mail.client() as smtp:
        spool_id = send(smtp, "ext@example.org", ["alice@a.test"], b"Subject: kept\r\n\r\nx\r\n")
    orphan = mail.data_dir / "spool" / "0123456789abcdef0123456789abcdef"
    orphan.write_bytes(b"accepted by nobody: the node died before its commit")
    (mail.data_dir / "spool" / "feedfeed.tmp").write_bytes(b"half written")
    assert mail.server.spool.sweep(dt.timedelta(hours=1)) == 0  # too young: a node may be mid-commit
    assert mail.server.spool.sweep(dt.timedelta(0)) == 2
    assert os.listdir(mail.data_dir / "spool") == [spool_id]


def test_concurrent_sessions_are_all_acknowledged_and_all_delivered(mail):
    count = 20

    def one(n: int) -> None:
        with mail.client() as smtp:
            send(smtp, "ext@example.org", ["bob@a.test"], f"Subject: {n}\r\n\r\n{n}\r\n".encode())

    async def all_at_once() -> None:
        await asyncio.gather(*(asyncio.to_thread(one, n) for n in range(count)))

    asyncio.run(all_at_once())
    assert mail.server.spool.count() == count
    mail.deliver()
    assert len(mail.messages("bob@a.test")) == count


def test_the_queue_manager_task_delivers_on_its_own(mail):
    stop = asyncio.Event()
    running = asyncio.run_coroutine_threadsafe(mail.server.delivery.run(stop), mail.loop)
    try:
        with mail.client() as smtp:
            send(smtp, "ext@example.org", ["alice@a.test"], b"Subject: by itself\r\n\r\nx\r\n")
        # Woken by the spool commit; bounded only so that a bug fails instead of hanging.
        for _ in range(600):
            if not mail.server.spool.count():
                break
            mail.call(asyncio.sleep(0.05))
        assert mail.server.spool.count() == 0
        assert len(mail.messages("alice@a.test")) == 1
    finally:
        mail.loop.call_soon_threadsafe(stop.set)
        running.result(30)


def test_a_spool_failure_answers_451_and_the_session_goes_on(mail):
    spool_dir, away = mail.data_dir / "spool", mail.data_dir / "spool.away"
    spool_dir.rename(away)
    spool_dir.write_bytes(b"")  # a file where the spool directory was: no message can be written
    try:
        with mail.client() as smtp:
            smtp.ehlo()
            smtp.mail("ext@example.org")
            smtp.rcpt("alice@a.test")
            code, reply = smtp.data(b"Subject: x\r\n\r\nx\r\n")
            assert (code, reply) == (451, b"4.3.0 Temporary failure; please try again later")
            spool_dir.unlink()
            away.rename(spool_dir)
            send(smtp, "ext@example.org", ["alice@a.test"], b"Subject: y\r\n\r\ny\r\n")
    finally:
        if away.exists():
            spool_dir.unlink()
            away.rename(spool_dir)
    mail.deliver()
    assert len(mail.messages("alice@a.test")) == 1
