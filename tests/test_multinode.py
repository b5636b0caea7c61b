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
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from smtp_peer import Peer, SlowPeer, free_port, remote_config
from smtp_support import DOMAIN, SPOOL_ONLY, MailHarness, make_harness, send

MESSAGES = 120
SENDERS_PER_NODE = 3
# Small claims, so that the two nodes take many turns at the queue within one run.
BATCH = 5
_NUMBER = re.compile(rb"^X-Number: (\d+)\r$", re.MULTILINE)


def two_nodes(tmp_path, extra_config: str = "") -> Iterator[tuple[MailHarness, MailHarness]]:
    for first in make_harness(tmp_path, extra_config):
        second = MailHarness(first.data_dir, first.clock, extra_config)
        try:
            yield first, second
        finally:
            second.stop()  # before the first node's teardown empties the database


@pytest.fixture
def nodes(tmp_path) -> Iterator[tuple[MailHarness, MailHarness]]:
    # Through the shared spool, local mail too: what is shared here is the queue (delivery at
    # acceptance by two nodes: tests/test_smtp_direct.py).
    yield from two_nodes(tmp_path, SPOOL_ONLY)


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


def test_a_node_renews_its_leases_while_a_slow_delivery_lasts(tmp_path):
    port = free_port()
    for busy, other in two_nodes(tmp_path, remote_config(port)):
        busy.dns.add({("peer.test", "MX"): ["10 mx.peer.test."], ("mx.peer.test", "A"): ["127.0.0.1"]})
        handler = SlowPeer()
        peer = Peer("127.0.0.1", port, handler=handler)
        try:
            with busy.authenticated("alice@a.test") as smtp:
                send(smtp, "alice@a.test", ["friend@peer.test"], b"Subject: slow\r\n\r\nbody\r\n")
            queue = busy.server.delivery
            queue.lease = dt.timedelta(seconds=0.6)  # renewed every 0.2 s
            delivering = asyncio.run_coroutine_threadsafe(queue.run_until_idle(), busy.loop)
            assert handler.receiving.wait(30)
            # The delivery outlasts its first lease; renewals keep it, so no other node may take it.
            busy.clock.advance(dt.timedelta(minutes=30))
            threading.Event().wait(0.5)
            assert other.server.spool.claim("other-node", 10, queue.lease) == []
            handler.gate.set()
            assert delivering.result(30) == 1
        finally:
            handler.gate.set()
            peer.stop()
        assert len(peer.arrivals) == 1
        assert busy.spool_rows() == []


def ended_process() -> int:
    """The pid of a process that has just ended (as a node killed with SIGKILL leaves it)."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    return int(child.stdout)


def test_a_restarted_node_releases_the_leases_of_its_ended_predecessor_at_once(nodes):
    restarted, _ = nodes
    with restarted.client() as smtp:
        send(smtp, "ext@example.org", ["alice@a.test"], b"Subject: orphaned\r\n\r\nbody\r\n")
        send(smtp, "ext@example.org", ["bob@a.test"], b"Subject: held\r\n\r\nbody\r\n")
    host, spool = socket.gethostname(), restarted.server.spool
    # One lease held by a process of this host that ended, one by a live process (pytest's parent).
    ended, alive = f"{host}:{ended_process()}:0dead000", f"{host}:{os.getppid()}:0a11fe00"
    assert len(spool.claim(ended, 1, dt.timedelta(minutes=2))) == 1
    assert len(spool.claim(alive, 1, dt.timedelta(minutes=2))) == 1

    assert restarted.call(restarted.server.delivery.release_dead_predecessors()) == 1
    assert restarted.deliver() == 1  # no clock advanced: the released lease is due now
    assert [m.endswith(b"Subject: orphaned\r\n\r\nbody\r\n") for m in restarted.messages("alice@a.test")] == [True]
    assert restarted.messages("bob@a.test") == []  # the live process's lease still holds
    assert spool.lease_holders() == {alive}
