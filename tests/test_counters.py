"""The statistics operations read exactly what the counters recorded, for any day range."""
from __future__ import annotations

import datetime as dt
import threading

import pytest

from mailsrv.directory.counters import TrafficEvent, record
from mailsrv.directory.domains import get_domain

DAY = dt.date(2026, 3, 10)


@pytest.fixture
def engine(make_server):
    server = make_server()
    server.admins.reset_primary("root", "Gr8-secret-pw")
    actor = server.login("root", "Gr8-secret-pw", "127.0.0.1")
    for name in ("a.example", "b.example"):
        server.domains.add(actor, name, "", "postmaster", "Domain-pass-1", "", "", {})
    return server, actor


def domain_id(server, name):
    with server.store.session() as s:
        return get_domain(s, name).id


def at(day: dt.date, hour: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.timezone.utc)


def test_ranges_are_whole_utc_days_both_ends_included(engine):
    server, actor = engine
    a = domain_id(server, "a.example")
    with server.store.session() as s:
        for offset, size in ((0, 1000), (1, 2000), (2, 4000)):
            record(s, TrafficEvent(a, 0, DAY + dt.timedelta(days=offset), messages_received=1, bytes_received=size))
        record(s, TrafficEvent(a, 5, DAY, messages_sent=2, bytes_sent=300))
    t = server.stats.domain(actor, "a.example", at(DAY, 23), at(DAY + dt.timedelta(days=1), 1))
    assert (t.messages_received, t.bytes_received, t.messages_sent, t.bytes_sent) == (2, 3000, 2, 300)
    # 23:30 at -05:00 on the 9th is already the 10th in UTC.
    evening = dt.datetime(2026, 3, 9, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert server.stats.domain(actor, "a.example", evening, evening).bytes_received == 1000
    rows = {r.domain: r.traffic for r in server.stats.all_domains(actor, at(DAY), at(DAY + dt.timedelta(days=9)))}
    assert rows["a.example"].bytes_received == 7000 and rows["b.example"].bytes_received == 0


def test_concurrent_increments_are_never_lost(engine):
    server, _ = engine
    a = domain_id(server, "a.example")

    def add_many() -> None:
        for _ in range(50):
            with server.store.session() as s:
                record(s, TrafficEvent(a, 1, DAY, messages_received=1, bytes_received=10))

    threads = [threading.Thread(target=add_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    actor = server.login("root", "Gr8-secret-pw", "127.0.0.1")
    t = server.stats.domain(actor, "a.example", at(DAY), at(DAY))
    assert (t.messages_received, t.bytes_received) == (200, 2000)
