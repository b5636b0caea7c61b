"""Two engine instances sharing one database and one data directory, as two nodes sharing storage.

Each node is a MailHarness of its own: its own MailServer (store handle, spool writer, queue
manager with its own node id) with its own SMTP listener, on its own event loop in its own thread.
Mail is accepted through both nodes at once and both queue managers deliver at once; the shared
spool must end empty with every message in its Maildir exactly once and the counters exact.

On PostgreSQL the claims race for real (FOR UPDATE SKIP LOCKED); SQLite serialises the writers
(BEGIN IMMEDIATE), which must give the same result.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import datetime as dt
import re
from collections.abc import Iterator

import pytest
from smtp_support import DOMAIN, MailHarness, make_harness, send

MESSAGES = 120
SENDERS_PER_NODE = 3
# Small claims, so that the two nodes take many turns at the queue within one run.
BATCH = 5
_NUMBER = re.compile(rb"^X-Number: (\d+)\r$", re.MULTILINE)


@pytest.fixture
def nodes(tmp_path) -> Iterator[tuple[MailHarness, MailHarness]]:
    for first in make_harness(tmp_path):
        second = MailHarness(first.data_dir, first.clock)
        try:
            yield first, second
        finally:
            second.stop()  # before the first node's teardown empties the database


def recipients_of(number: int) -> list[str]:
    # Every third message goes to both mailboxes: one message, two deliveries, possibly by two nodes.
    return [["alice@a.test"], ["bob@a.test"], ["alice@a.test", "bob@a.test"]][number % 3]


def content(number: int) -> bytes:
    return f"Subject: shared {number}\r\nX-Number: {number}\r\n\r\n".encode() + b"line\r\n" * (number % 7 + 1)


def numbers_in(node: MailHarness, address: str) -> collections.Counter[int]:
    return collections.Counter(int(n) for stored in node.messages(address) for n in _NUMBER.findall(stored))


def deliver_concurrently(*harnesses: MailHarness) -> list[int]:
    """The nodes' queue managers until idle, all at once, each on its own loop; jobs per node."""
    running = [asyncio.run_coroutine_threadsafe(h.server.delivery.run_until_idle(), h.loop) for h in harnesses]
    return [future.result(120) for future in running]


def test_two_nodes_accept_and_deliver_a_shared_spool_with_nothing_lost_or_doubled(nodes):
    first, second = nodes
    assert first.server.delivery.node != second.server.delivery.node

    def submit(node: MailHarness, numbers: range) -> None:
        with node.client() as smtp:
            for number in numbers:
                send(smtp, "ext@example.org", recipients_of(number), content(number))

    # Interleaved slices: each node accepts every other message, over several sessions at once.
    sessions = [(node, range(start, MESSAGES, 2 * SENDERS_PER_NODE))
                for start, node in enumerate([first, second] * SENDERS_PER_NODE)]
    with concurrent.futures.ThreadPoolExecutor(len(sessions)) as pool:
        for done in [pool.submit(submit, node, numbers) for node, numbers in sessions]:
            done.result()
    assert first.server.spool.count() == MESSAGES

    for h in (first, second):
        h.server.delivery.batch = BATCH
    jobs = deliver_concurrently(first, second)
    deliveries = sum(len(recipients_of(n)) for n in range(MESSAGES))
    # A claim may split a message's two recipients into two jobs, never more.
    assert MESSAGES <= sum(jobs) <= deliveries
    assert all(jobs), f"one node delivered nothing: {jobs}"

    for address in ("alice@a.test", "bob@a.test"):
        expected = [n for n in range(MESSAGES) if address in recipients_of(n)]
        assert numbers_in(first, address) == collections.Counter(expected)
    assert first.spool_rows() == [] and second.server.spool.count() == 0
    assert list((first.data_dir / "spool").iterdir()) == []
    t = second.server.stats.domain(second.admin(), DOMAIN, None, None)
    assert t.messages_received == deliveries
    assert t.bytes_received == sum(len(content(n)) * len(recipients_of(n)) for n in range(MESSAGES))


def test_a_node_that_dies_holding_a_lease_is_taken_over_once_it_expires(nodes):
    dead, survivor = nodes
    with dead.client() as smtp:
        send(smtp, "ext@example.org", ["alice@a.test", "bob@a.test"], b"Subject: orphaned\r\n\r\nbody\r\n")
    queue = dead.server.delivery
    assert len(dead.server.spool.claim(queue.node, 10, queue.lease)) == 1  # and never finishes
    # (A node that died after writing the Maildir: test_smtp_delivery's crash test.)

    assert deliver_concurrently(survivor) == [0]  # the lease still holds
    survivor.clock.advance(queue.lease + dt.timedelta(seconds=1))
    assert deliver_concurrently(survivor) == [1]

    for address in ("alice@a.test", "bob@a.test"):
        assert len(survivor.messages(address)) == 1
    assert survivor.spool_rows() == []
    t = survivor.server.stats.domain(survivor.admin(), DOMAIN, None, None)
    assert (t.messages_received, t.bytes_received) == (2, 2 * len(b"Subject: orphaned\r\n\r\nbody\r\n"))
