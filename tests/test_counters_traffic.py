"""Traffic counters after a known mix of real SMTP traffic, read through the statistics the SOAP
operations return (GetDomainStatistics: Stats.domain; GetUserStats: UserActivity.traffic), exact to the byte."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from smtp_peer import Peer, remote_config
from smtp_support import DOMAIN, MailHarness, make_harness, send, without_sender_checks

ONE = b"Subject: one\r\n\r\n" + b"a" * 100 + b"\r\n"
TWO = b"Subject: two\r\n\r\n" + (b"b" * 76 + b"\r\n") * 33
THREE = b"Subject: three\r\n\r\n" + b"c" * 777 + b"\r\n"
FOUR = b"Subject: four\r\n\r\n" + b"d" * 55 + b"\r\n"


@pytest.fixture
def mail(tmp_path, port) -> Iterator[MailHarness]:
    for harness in make_harness(tmp_path, remote_config(port)):
        harness.dns.add({("peer.test", "MX"): ["10 mx1.peer.test."], ("mx1.peer.test", "A"): ["127.0.0.1"]})
        without_sender_checks(harness)  # the tests count the bytes sent
        yield harness


def traffic(mail: MailHarness, address: str) -> tuple[int, int, int, int]:
    """(messages received, bytes received, messages sent, bytes sent) as GetUserStats reports them."""
    t = mail.server.user_activity.traffic(mail.admin(), address, None, None)
    return t.messages_received, t.bytes_received, t.messages_sent, t.bytes_sent


def without_local_headers(stored: bytes) -> bytes:
    """A message as spooled, from its Maildir copy: minus Return-Path, Delivered-To and the
    two-line Received header we add."""
    return stored.split(b"\r\n", 4)[4]


def test_counters_after_a_mix_of_traffic(mail, port):
    mail.server.aliases.add(mail.admin(), DOMAIN, "team", ["alice@a.test", "bob@a.test", "carol@a.test"])
    # carol forwards away without keeping a copy: receives nothing herself.
    mail.add_user(DOMAIN, "carol", forwarding_addresses=["friend@peer.test"], delete_on_forward=True)
    peer = Peer("127.0.0.1", port)
    peer.handler.refuse["gone@peer.test"] = "550 5.1.1 no such user"
    try:
        with mail.client() as smtp:  # inbound: alice receives
            send(smtp, "ext@example.org", ["alice@a.test"], ONE)
        with mail.authenticated("alice@a.test", submission=True) as smtp:  # alice sends: to bob and out
            send(smtp, "alice@a.test", ["bob@a.test", "friend@peer.test"], TWO)
        with mail.client() as smtp:  # inbound to the alias: alice and bob receive, carol's copy goes out
            send(smtp, "ext@example.org", ["team@a.test"], THREE)
        with mail.authenticated("bob@a.test", submission=False) as smtp:  # bob sends over port 25 with AUTH
            send(smtp, "bob@a.test", ["gone@peer.test"], FOUR)
        mail.deliver()
    finally:
        peer.stop()
    # Relayed on: alice's message and carol's forwarded copy; nothing counted for that.
    assert sorted(a.recipients[0] for a in peer.arrivals) == ["friend@peer.test", "friend@peer.test"]
    # bob's refused message came back as a DSN: a reception for bob, a sending for nobody.
    [dsn] = [m for m in mail.messages("bob@a.test") if m.startswith(b"Return-Path: <>\r\n")]
    dsn_size = len(without_local_headers(dsn))

    assert traffic(mail, "alice@a.test") == (2, len(ONE) + len(THREE), 1, len(TWO))
    assert traffic(mail, "bob@a.test") == (3, len(TWO) + len(THREE) + dsn_size, 1, len(FOUR))
    assert traffic(mail, "carol@a.test") == (0, 0, 0, 0)
    domain = mail.server.stats.domain(mail.admin(), DOMAIN, None, None)
    assert (domain.messages_received, domain.bytes_received, domain.messages_sent, domain.bytes_sent) == (
        5, len(ONE) + len(TWO) + 2 * len(THREE) + dsn_size, 2, len(TWO) + len(FOUR))
    # Running the queue again (nothing due) counts nothing more.
    assert mail.deliver() == 0
    assert traffic(mail, "bob@a.test")[0] == 3 and mail.spool_rows() == []
