"""Remote delivery over real sockets: MX lookup on the harness's loopback DNS, SMTP to aiosmtpd
peers, STARTTLS, per-recipient replies and the retry schedule."""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import time
from collections.abc import Callable, Iterator

import pytest
from smtp_peer import HangingPeer, Peer, SlowPeer, free_port, remote_config
from smtp_support import MailHarness, make_harness, send

from mailsrv.mta.routing import Hop, Route

MSG = (b"From: Alice <alice@a.test>\r\nTo: friend@peer.test\r\nSubject: hi\r\n\r\n"
       b"Hello there\r\n.a line that starts with a dot\r\n")


@pytest.fixture
def mail(tmp_path, port) -> Iterator[MailHarness]:
    yield from make_harness(tmp_path, remote_config(port))


def mx(mail: MailHarness, domain: str, *hosts: tuple[int, str, str]) -> None:
    """`domain`'s MX records as (preference, host, address)."""
    mail.dns.add({(domain, "MX"): [f"{preference} {host}." for preference, host, _ in hosts],
                  **{(host, "A"): [address] for _, host, address in hosts}})


def from_alice(mail: MailHarness, recipients: list[str], content: bytes = MSG) -> str:
    with mail.authenticated("alice@a.test") as smtp:
        return send(smtp, "alice@a.test", recipients, content)


def test_a_message_arrives_byte_exact_with_our_received_header(mail, port):
    mx(mail, "peer.test", (10, "mx1.peer.test", "127.0.0.1"))
    peer = Peer("127.0.0.1", port)
    try:
        spool_id = from_alice(mail, ["friend@peer.test"])
        assert mail.deliver() == 1
        [arrival] = peer.arrivals
    finally:
        peer.stop()
    assert (arrival.sender, arrival.recipients, arrival.tls) == ("alice@a.test", ["friend@peer.test"], False)
    trace = re.escape("Received: from client.test ([127.0.0.1])\r\n"
                      f"\tby mx.test (mailsrv) with ESMTPSA id {spool_id}\r\n"
                      "\tfor <friend@peer.test>; ")
    # Dot-stuffed on both hops and unstuffed again: the bytes alice sent, after our trace header.
    assert re.fullmatch(trace.encode() + rb"[^\r\n]+\r\n" + re.escape(MSG), arrival.content)
    assert mail.spool_rows() == [] and mail.server.spool.count() == 0


def test_mx_hosts_are_tried_in_preference_order(mail, port):
    # Listed out of order; the best (10) is down, so 20 takes it and 30 is never needed.
    mx(mail, "peer.test", (30, "mx3.peer.test", "127.0.0.3"), (10, "mx1.peer.test", "127.0.0.2"),
       (20, "mx2.peer.test", "127.0.0.1"))
    second, third = Peer("127.0.0.1", port), Peer("127.0.0.3", port)
    try:
        from_alice(mail, ["friend@peer.test"])
        mail.deliver()
        assert (len(second.arrivals), len(third.arrivals)) == (1, 0)
    finally:
        second.stop()
        third.stop()


def test_without_mx_the_domain_itself_is_the_mail_server(mail, port):
    mail.dns.add({("peer.test", "A"): ["127.0.0.1"]})
    peer = Peer("127.0.0.1", port)
    try:
        from_alice(mail, ["friend@peer.test"])
        mail.deliver()
        assert [a.recipients for a in peer.arrivals] == [["friend@peer.test"]]
    finally:
        peer.stop()


def test_starttls_is_used_when_the_peer_offers_it(mail, port, tmp_path):
    mx(mail, "peer.test", (10, "mx1.peer.test", "127.0.0.1"))
    peer = Peer("127.0.0.1", port, tls_dir=tmp_path / "peer-tls")
    try:
        from_alice(mail, ["friend@peer.test"])
        mail.deliver()
        [arrival] = peer.arrivals
    finally:
        peer.stop()
    assert arrival.tls and arrival.content.endswith(MSG)
    # We dial the address we looked up, yet TLS names the MX host (SNI), as the peer's certificate would.
    assert peer.server_names == ["mx1.peer.test"]


def test_one_transaction_per_domain_with_per_recipient_outcomes(mail, port):
    mx(mail, "peer.test", (10, "mx1.peer.test", "127.0.0.1"))
    peer = Peer("127.0.0.1", port)
    peer.handler.refuse.update({"busy@peer.test": "450 4.2.1 try later", "gone@peer.test": "550 5.1.1 no such user"})
    try:
        from_alice(mail, ["friend@peer.test", "busy@peer.test", "gone@peer.test", "other@peer.test"])
        mail.deliver()
        [arrival] = peer.arrivals
    finally:
        peer.stop()
    assert arrival.recipients == ["friend@peer.test", "other@peer.test"]
    # The 4xx waits for its retry; the 5xx failed at once (its DSN went to alice).
    assert mail.spool_rows() == [("busy@peer.test", "remote", "deferred"), ("friend@peer.test", "remote", "delivered"),
                                 ("gone@peer.test", "remote", "failed"), ("other@peer.test", "remote", "delivered")]
    assert len(mail.messages("alice@a.test")) == 1


def test_one_connection_per_domain_at_a_time_is_reused_within_a_run(tmp_path, port):
    sessions: list[object] = []  # the client (address, port) of each DATA: one per connection
    for mail in make_harness(tmp_path, remote_config(port) + "max_connections_per_domain = 1\n"):
        mx(mail, "peer.test", (10, "mx1.peer.test", "127.0.0.1"))
        peer = Peer("127.0.0.1", port)
        original = peer.handler.handle_DATA

        async def counting(server, session, envelope, original=original):  # type: ignore[no-untyped-def]
            sessions.append(session.peer)
            return await original(server, session, envelope)

        peer.handler.handle_DATA = counting  # type: ignore[method-assign]
        try:
            for n in range(3):
                from_alice(mail, [f"friend{n}@peer.test"])
            assert mail.deliver() == 3  # three messages, attempted in one run
        finally:
            peer.stop()
        assert len(peer.arrivals) == 3
    # The limit of one made the three wait for each other; each took over the previous one's session.
    assert len(sessions) == 3 and len(set(sessions)) == 1


def test_a_null_mx_fails_at_once(mail):
    mail.dns.add({("nomail.test", "MX"): ["0 ."]})
    from_alice(mail, ["friend@nomail.test"])
    mail.deliver()
    assert mail.spool_rows() == [] and len(mail.messages("alice@a.test")) == 1  # the DSN


def test_retries_follow_the_schedule_to_the_minute_and_deliver_once_the_peer_is_up(mail, port):
    mail.server.system_settings.update({"retryminutes": "5,30"})
    mx(mail, "peer.test", (10, "mx1.peer.test", "127.0.0.1"))
    from_alice(mail, ["friend@peer.test"])
    assert mail.deliver() == 1  # attempt 1: nobody listens
    mail.clock.advance(dt.timedelta(minutes=5) - dt.timedelta(seconds=1))
    assert mail.deliver() == 0  # not due before its time
    mail.clock.advance(dt.timedelta(seconds=1))
    assert mail.deliver() == 1  # attempt 2, exactly 5 minutes later: still down
    mail.clock.advance(dt.timedelta(minutes=30) - dt.timedelta(seconds=1))
    assert mail.deliver() == 0
    assert mail.spool_rows() == [("friend@peer.test", "remote", "deferred")]
    assert mail.messages("alice@a.test") == []  # no early bounce
    peer = Peer("127.0.0.1", port)
    try:
        mail.clock.advance(dt.timedelta(seconds=1))
        assert mail.deliver() == 1  # attempt 3, the last the schedule allows, finds it up
        assert [a.recipients for a in peer.arrivals] == [["friend@peer.test"]]
    finally:
        peer.stop()
    assert mail.spool_rows() == [] and mail.messages("alice@a.test") == []


def test_relaying_to_a_remote_domain_needs_authentication(mail):
    mx(mail, "peer.test", (10, "mx1.peer.test", "127.0.0.1"))
    with mail.client() as smtp:
        smtp.ehlo()
        smtp.mail("ext@elsewhere.test")
        assert smtp.rcpt("friend@peer.test") == (550, b"5.7.1 Relaying denied: authenticate first")


def eventually(condition: Callable[[], bool], seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_peer_that_takes_its_time_holds_up_only_its_own_messages(mail, port):
    mx(mail, "slow.test", (10, "mx.slow.test", "127.0.0.2"))
    mx(mail, "fast.test", (10, "mx.fast.test", "127.0.0.1"))
    handler = SlowPeer()
    slow, fast = Peer("127.0.0.2", port, handler=handler), Peer("127.0.0.1", port)
    stop = asyncio.Event()
    running = asyncio.run_coroutine_threadsafe(mail.server.delivery.run(stop), mail.loop)
    try:
        from_alice(mail, ["friend@slow.test"])
        assert handler.receiving.wait(30)
        from_alice(mail, ["friend@fast.test"])
        assert eventually(lambda: len(fast.arrivals) == 1)
        # The fast peer has the message before the queue records its delivery: wait for the record.
        assert eventually(lambda: mail.spool_rows() == [("friend@slow.test", "remote", "pending")])
        assert slow.arrivals == []
        handler.gate.set()
        assert eventually(lambda: len(slow.arrivals) == 1)
    finally:
        handler.gate.set()
        mail.loop.call_soon_threadsafe(stop.set)
        running.result(30)
        slow.stop()
        fast.stop()
    assert mail.spool_rows() == []


def test_local_mail_flows_while_more_remote_peers_hang_than_a_default_thread_pool_has_threads(mail, port):
    # asyncio's default pool has min(32, CPUs + 4) threads; SMTP acceptance and local delivery use it.
    hanging = min(32, (os.cpu_count() or 1) + 4) + 2
    domains = [f"slow{n}.test" for n in range(hanging)]
    for domain in domains:
        mx(mail, domain, (10, f"mx.{domain}", "127.0.0.1"))
    handler = SlowPeer()
    peer = Peer("127.0.0.1", port, handler=handler)
    stop = asyncio.Event()
    running = asyncio.run_coroutine_threadsafe(mail.server.delivery.run(stop), mail.loop)  # as `serve` runs it
    try:
        from_alice(mail, [f"friend@{domain}" for domain in domains])
        assert handler.receiving.wait(30)
        with mail.client() as smtp:
            smtp.sock.settimeout(15)
            send(smtp, "ext@example.org", ["bob@a.test"], b"Subject: local\r\n\r\nwhile the peers think\r\n")
        assert eventually(lambda: len(mail.messages("bob@a.test")) == 1)
        assert peer.arrivals == []  # every remote transaction is still waiting for its DATA reply
        handler.gate.set()
        assert eventually(lambda: len(peer.arrivals) == hanging)
    finally:
        handler.gate.set()
        mail.loop.call_soon_threadsafe(stop.set)
        running.result(30)
        peer.stop()
    assert mail.spool_rows() == []


def test_a_stop_breaks_off_a_peer_that_hangs_and_the_message_goes_out_later_once(mail, port):
    mx(mail, "slow.test", (10, "mx.slow.test", "127.0.0.1"))
    hanging = HangingPeer("127.0.0.1", port)
    queue = mail.server.delivery
    queue.stop_grace = 0.5
    stop = asyncio.Event()
    running = asyncio.run_coroutine_threadsafe(queue.run(stop), mail.loop)
    try:
        from_alice(mail, ["friend@slow.test"])
        assert hanging.receiving.wait(30)
        mail.loop.call_soon_threadsafe(stop.set)
        running.result(20)  # without a grace period: until the 120 s timeout
        assert hanging.dropped.wait(20)  # the transaction was broken off, not left to time out
        assert mail.spool_rows() == [("friend@slow.test", "remote", "pending")]
    finally:
        hanging.stop()
    # The claim outlives the stop: a restarted process releases it at once (its predecessor's pid
    # is gone); this restart is in the same process, so here the lease runs out instead.
    mail.restart()
    up = Peer("127.0.0.1", port)
    try:
        mail.clock.advance(queue.lease + dt.timedelta(seconds=1))
        assert mail.deliver() == 1
        assert len(up.arrivals) == 1
    finally:
        up.stop()
    assert mail.spool_rows() == []


class _ToRelay:
    """A router sending one domain to a fixed server from a chosen local address (as the server
    roles' routers do), and leaving the others to their MX hosts."""

    def __init__(self, domain: str, hop: Hop) -> None:
        self.domain, self.hop = domain, hop

    def route(self, domain: str) -> Route | None:
        return Route(f"relay:{self.hop.address}", [self.hop]) if domain == self.domain else None


def test_a_router_sends_its_domain_to_its_hops_and_leaves_the_others_to_mx(mail, port):
    relay = free_port()
    mail.server.remote_delivery.routes.routers.append(
        _ToRelay("elsewhere.test", Hop("relay.test", relay, address="127.0.0.2", source="127.0.0.3")))
    mx(mail, "peer.test", (10, "mx1.peer.test", "127.0.0.1"))  # elsewhere.test has no DNS records at all
    routed, direct = Peer("127.0.0.2", relay), Peer("127.0.0.1", port)
    try:
        from_alice(mail, ["someone@elsewhere.test", "friend@peer.test"])
        assert mail.deliver() == 1
        [arrival] = routed.arrivals
        [other] = direct.arrivals
    finally:
        routed.stop()
        direct.stop()
    assert arrival.recipients == ["someone@elsewhere.test"] and other.recipients == ["friend@peer.test"]
    assert arrival.peer_ip == "127.0.0.3"  # connected from the hop's source address
