"""Two engine instances sharing one database and one data directory, as two nodes sharing storage;
and `mailsrv serve` with worker processes, one of them (or the supervisor) killed mid-load.

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
import signal
import smtplib
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from serve_support import Serving, listen_table, wait_until
from smtp_peer import Peer, PeerHandler, SlowPeer, free_port, remote_config
from smtp_support import DOMAIN, SPOOL_ONLY, MailHarness, make_harness, send, two_nodes, without_sender_checks
from sqlalchemy import func, select

from mailsrv.store.models import MaildirRename

MESSAGES = 120
SENDERS_PER_NODE = 3
# Small claims, so that the two nodes take many turns at the queue within one run.
BATCH = 5
_NUMBER = re.compile(rb"^X-Number: (\d+)\r$", re.MULTILINE)


# Heartbeats every second, a node dead after 3 s without one: quick tests, same mechanism.
QUICK_HEARTBEATS = "heartbeat_seconds = 1\nnode_timeout_seconds = 3\n"


@pytest.fixture
def nodes(tmp_path) -> Iterator[tuple[MailHarness, MailHarness]]:
    # Through the shared spool, local mail too: what is shared here is the queue (delivery at
    # acceptance by two nodes: tests/test_smtp_direct.py).
    for first, second in two_nodes(tmp_path, SPOOL_ONLY):
        without_sender_checks(first)  # the tests count the bytes sent
        yield first, second


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


def test_a_dead_nodes_claims_are_taken_over_once_its_heartbeat_is_older_than_the_timeout(tmp_path):
    for dead, survivor in two_nodes(tmp_path, f"{SPOOL_ONLY}[delivery]\n{QUICK_HEARTBEATS}"):
        with dead.client() as smtp:
            send(smtp, "ext@example.org", ["alice@a.test", "bob@a.test"], b"Subject: orphaned\r\n\r\nbody\r\n")
        heartbeat = dead.server.heartbeat
        heartbeat.beat()  # alive, then it claims and dies before finishing
        assert len(dead.server.spool.claim(heartbeat.node, 10, dead.server.delivery.lease)) == 1

        assert survivor.deliver() == 0  # its heartbeat is recent: the claim holds
        survivor.clock.advance(heartbeat.timeout + dt.timedelta(seconds=1))  # far less than the lease
        assert survivor.deliver() == 1

        for address in ("alice@a.test", "bob@a.test"):
            assert len(survivor.messages(address)) == 1
        assert survivor.spool_rows() == []
        t = survivor.server.stats.domain(survivor.admin(), DOMAIN, None, None)
        assert t.messages_received == 2


class HeldAtRecipient(PeerHandler):
    """A peer that holds its answer to the first RCPT until the test opens `gate`."""

    def __init__(self) -> None:
        super().__init__()
        self.receiving, self.gate = threading.Event(), threading.Event()

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if not self.receiving.is_set():
            self.receiving.set()
            await asyncio.to_thread(self.gate.wait, 60)
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


def test_a_node_declared_dead_mid_delivery_does_not_send_what_another_node_took_over(tmp_path):
    port = free_port()
    extra = remote_config(port) + QUICK_HEARTBEATS
    for stalled, survivor in two_nodes(tmp_path, extra, own_clocks=True):
        for node in (stalled, survivor):
            node.dns.add({("peer.test", "MX"): ["10 mx.peer.test."], ("mx.peer.test", "A"): ["127.0.0.1"]})
        handler = HeldAtRecipient()
        peer = Peer("127.0.0.1", port, handler=handler)
        try:
            with stalled.authenticated("alice@a.test") as smtp:
                send(smtp, "alice@a.test", ["friend@peer.test"], b"Subject: once\r\n\r\nbody\r\n")
            delivering = asyncio.run_coroutine_threadsafe(stalled.server.delivery.run_until_idle(), stalled.loop)
            assert handler.receiving.wait(30)
            claimed_as = stalled.server.delivery.node
            # The survivor's clock runs past the timeout: the stalled node's heartbeats look old.
            survivor.clock.advance(dt.timedelta(seconds=10))
            assert survivor.deliver() == 1
            assert len(peer.arrivals) == 1
            # The stalled node's next heartbeat finds it was declared dead ...
            while stalled.server.delivery.node == claimed_as:
                threading.Event().wait(0.1)
            handler.gate.set()  # ... so once its peer answers, it stops before DATA
            assert delivering.result(30) == 1
        finally:
            handler.gate.set()
            peer.stop()
        assert len(peer.arrivals) == 1
        assert survivor.spool_rows() == []


# -- `mailsrv serve` with worker processes ----------------------------------------------------------

_WORKER = re.compile(r"worker (\d+) started \(pid (\d+)\)")
_SMTP = re.compile(r"SMTP listener on 127\.0\.0\.1:(\d+)")


def serve_config(harness: MailHarness, workers: int) -> Path:
    """`mailsrv serve` on the harness's data directory and database, SMTP and web on free ports."""
    path = harness.data_dir.parent / "serve.toml"
    listen = listen_table(listen='smtp = "127.0.0.1:0"\n')
    path.write_text(f'data_dir = "{harness.data_dir}"\ndatabase_url = "{harness.database_url}"\n'
                    f'[server]\nworkers = {workers}\n[delivery]\n{QUICK_HEARTBEATS}{listen}'
                    '[smtp]\nhostname = "mx.test"\n')
    return path


def worker_pids(server: Serving, count: int) -> dict[int, int]:
    """Worker number -> pid, from the supervisor's log."""
    pids: dict[int, int] = {}
    while len(pids) < count:
        match = server.wait_for(_WORKER)
        pids[int(match[1])] = int(match[2])
    return pids


def ended(pid: int) -> bool:
    """Whether process `pid` has ended (a zombie nobody reaped yet counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def pending_renames(harness: MailHarness) -> int:
    """Direct deliveries committed and not yet moved into new/ (mailsrv.mta.spool)."""
    with harness.server.store.reading() as s:
        return s.execute(select(func.count()).select_from(MaildirRename)).scalar_one()


def test_a_killed_worker_is_started_again_and_nothing_acknowledged_is_lost_or_doubled(tmp_path, env):
    for mail in make_harness(tmp_path):
        without_sender_checks(mail)  # serve_config has no [dns]: no lookups in the machine's DNS under load
        with Serving(serve_config(mail, 2), env) as server:
            # Each worker binds SMTP itself once forked (SO_REUSEPORT), so its line follows theirs.
            victim = worker_pids(server, 2)[0]
            port = int(server.wait_for(_SMTP)[1])
            acknowledged: set[int] = set()
            lock = threading.Lock()

            def submit(numbers: range) -> None:
                for number in numbers:
                    try:  # a session on the killed worker breaks: that message was not acknowledged
                        with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=30) as smtp:
                            send(smtp, "ext@example.org", ["alice@a.test"], content(number))
                    except (OSError, smtplib.SMTPException):
                        continue
                    with lock:
                        acknowledged.add(number)

            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                sending = [pool.submit(submit, range(start, MESSAGES, 4)) for start in range(4)]
                wait_until(lambda: len(acknowledged) >= MESSAGES // 3, "a third of the load acknowledged")
                os.kill(victim, signal.SIGKILL)
                for done in sending:
                    done.result()
            server.wait_for(re.compile(rf"worker 0 \(pid {victim}\) ended \(signal SIGKILL\)"))
            server.wait_for(re.compile(r"worker 0 started \(pid \d+\)"))
            wait_until(lambda: acknowledged <= set(numbers_in(mail, "alice@a.test")), "every acknowledged message delivered")
            # A message the killed worker had committed (and counted) but not yet moved into new/
            # is moved by the worker started in its place.
            wait_until(lambda: mail.server.spool.count() == 0 and not pending_renames(mail),
                       "the spool empty and every committed delivery in new/")
            assert server.stop() == 0

        delivered = numbers_in(mail, "alice@a.test")
        assert acknowledged and all(delivered[n] == 1 for n in acknowledged)
        # A message whose session broke may have been stored all the same (the client would send it
        # again, as SMTP allows); never twice by us.
        assert set(delivered.values()) == {1}
        t = mail.server.stats.domain(mail.admin(), DOMAIN, None, None)
        assert t.messages_received == sum(delivered.values())


def test_killing_the_supervisor_leaves_no_worker_behind(tmp_path, env):
    for mail in make_harness(tmp_path):
        with Serving(serve_config(mail, 2), env) as server:
            pids = worker_pids(server, 2)
            server.process.kill()
            server.process.wait()
            wait_until(lambda: all(ended(pid) for pid in pids.values()), "the workers gone")
