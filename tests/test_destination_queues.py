"""Per-destination queues: a backlog for a dead destination (a port that refuses, a peer that never
answers) does not take the queue's room from a live one, and is deferred, not failed, without each
of its recipients being attempted."""
from __future__ import annotations

import asyncio
import datetime as dt
import socket
import time
from collections.abc import Iterator

import pytest
from smtp_peer import Peer, remote_config
from smtp_support import MailHarness, make_harness
from sqlalchemy import func, select

from mailsrv.mta import remote_delivery
from mailsrv.mta.destinations import domain_of
from mailsrv.mta.spool import REMOTE, IncomingMessage, NewRecipient, Spool
from mailsrv.store.models import SpoolRecipient

BACKLOG = 300
LIVE = 5
CAP = 8  # [delivery] max_queued_per_destination here


@pytest.fixture
def mail(tmp_path, port) -> Iterator[MailHarness]:
    yield from make_harness(tmp_path, remote_config(port) + f"max_queued_per_destination = {CAP}\n")


def enqueue(mail: MailHarness, addresses: list[str]) -> None:
    """One message per address, spooled through the engine as SMTP in does (faster than SMTP)."""
    spool = mail.server.spool

    async def all_of_them() -> None:
        await asyncio.gather(*(spool.enqueue(IncomingMessage(
            id=Spool.new_id(), sender="alice@a.test", content=b"Subject: x\r\n\r\nx\r\n",
            received_at=mail.clock.now(), client_ip="127.0.0.1", helo="client.test", trace_header="",
            recipients=[NewRecipient(address, address, REMOTE)])) for address in addresses))
    mail.call(all_of_them())


def backlog_then_live(mail: MailHarness) -> None:
    mail.server.system_settings.update({"retryminutes": "10,60"})
    mail.dns.add({("dead.test", "MX"): ["10 mx.dead.test."], ("mx.dead.test", "A"): ["127.0.0.2"],
                  ("live.test", "MX"): ["10 mx.live.test."], ("mx.live.test", "A"): ["127.0.0.1"]})
    enqueue(mail, [f"r{i}@dead.test" for i in range(BACKLOG)])
    mail.clock.advance(dt.timedelta(seconds=1))  # the live mail is the newest: oldest-first would serve it last
    enqueue(mail, [f"r{i}@live.test" for i in range(LIVE)])


def dead_rows(mail: MailHarness) -> tuple[dict[str, int], int, set[dt.datetime]]:
    """The dead destination's rows: count by status, how many were attempted, their next attempts."""
    with mail.server.store.reading() as s:
        statuses = dict(s.execute(select(SpoolRecipient.status, func.count()).where(SpoolRecipient.domain == "dead.test")
                                  .group_by(SpoolRecipient.status)).all())
        attempted = s.execute(select(func.count()).where(SpoolRecipient.domain == "dead.test",
                                                         SpoolRecipient.attempts > 0)).scalar_one()
        due = set(s.execute(select(SpoolRecipient.next_attempt_at).where(SpoolRecipient.domain == "dead.test")).scalars())
    return statuses, attempted, due


def deliver_the_backlog_later(mail: MailHarness, port: int) -> None:
    """Ten minutes on, the dead destination is up: everything is delivered, nothing bounced."""
    mail.clock.advance(dt.timedelta(minutes=10))
    peer = Peer("127.0.0.2", port)
    try:
        mail.deliver()
        assert sorted(r for a in peer.arrivals for r in a.recipients) == sorted(f"r{i}@dead.test" for i in range(BACKLOG))
    finally:
        peer.stop()
    assert mail.spool_rows() == [] and mail.messages("alice@a.test") == []


def test_a_refusing_destination_is_deferred_as_a_whole_while_a_live_one_is_delivered(mail, port):
    backlog_then_live(mail)
    live = Peer("127.0.0.1", port)
    try:
        mail.deliver()
        assert len(live.arrivals) == LIVE
    finally:
        live.stop()
    statuses, attempted, due = dead_rows(mail)
    assert statuses == {"deferred": BACKLOG}  # not failed
    assert attempted <= CAP  # the rest were deferred with them, not attempted each
    assert due == {mail.clock.now() + dt.timedelta(minutes=10)}
    deliver_the_backlog_later(mail, port)


def test_a_hanging_destination_keeps_only_its_own_slots_while_a_live_one_flows(mail, port, monkeypatch):
    # A peer that accepts connections and never greets: each attempt waits for the timeout.
    monkeypatch.setattr(remote_delivery, "TIMEOUT_SECONDS", 4)
    hanging = socket.create_server(("127.0.0.2", port), backlog=BACKLOG)
    backlog_then_live(mail)
    live = Peer("127.0.0.1", port)
    stop = asyncio.Event()
    running = asyncio.run_coroutine_threadsafe(mail.server.delivery.run(stop), mail.loop)  # as `serve` runs it
    try:
        started = time.monotonic()
        while len(live.arrivals) < LIVE and time.monotonic() - started < 30:
            time.sleep(0.05)
        # Delivered while the dead destination's first connections still wait for their greeting.
        assert len(live.arrivals) == LIVE and time.monotonic() - started < 4
        while dead_rows(mail)[0] != {"deferred": BACKLOG} and time.monotonic() - started < 30:
            time.sleep(0.1)
        statuses, attempted, _ = dead_rows(mail)
        assert statuses == {"deferred": BACKLOG} and attempted <= CAP
        # One round of timeouts found it dead: what waited for its slots was deferred at once.
        assert time.monotonic() - started < 2 * 4 + 2
    finally:
        mail.loop.call_soon_threadsafe(stop.set)
        running.result(30)
        live.stop()
        hanging.close()
    deliver_the_backlog_later(mail, port)


def test_claims_keep_each_destination_within_its_cap_across_calls(mail):
    mail.server.system_settings.update({"retryminutes": "10"})
    enqueue(mail, [f"r{i}@one.test" for i in range(20)] + [f"r{i}@two.test" for i in range(3)])
    spool = mail.server.spool
    first = spool.claim("node-a", 100, dt.timedelta(minutes=2), REMOTE, per_destination=CAP)
    taken = [domain_of(r.address) for job in first for r in job.recipients]
    assert (taken.count("one.test"), taken.count("two.test")) == (CAP, 3)
    # Another node (or the next call) finds one.test's room taken while those are in flight.
    assert spool.claim("node-b", 100, dt.timedelta(minutes=2), REMOTE, per_destination=CAP) == []
    spool.finish("node-a", [(job, [remote_delivery.Deferred("4.0.0 later")]) for job in first],
                 lambda attempts: dt.timedelta(minutes=10))
    again = spool.claim("node-b", 100, dt.timedelta(minutes=2), REMOTE, per_destination=CAP)
    assert sum(len(job.recipients) for job in again) == CAP
