"""Store.fetch, the prepared reads of every SOAP login and IMAP command outside SQLAlchemy's execution
layer: the same rows, converted the same way, as a SQLAlchemy read on SQLite and PostgreSQL; what
another connection commits is seen by the next read; a PostgreSQL connection the server dropped is
replaced without the caller seeing an error. Each as read from any thread, and as read on an event
loop's thread by a quick SOAP call (mailsrv.core.on_loop), where PostgreSQL's reads are awaited on
the loop's own connections and leave the loop serving others meanwhile."""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import bindparam, exists, func, select, text

from mailsrv.core import on_loop

from mailsrv.core.actor import Actor, Role
from mailsrv.store.db import _FETCH_CONNECTIONS
from mailsrv.store.models import Domain, LoginFailure

SINCE = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
QUERY = (select(Domain.name, Domain.settings, Domain.created_at,
                exists().where(LoginFailure.at >= bindparam("since")).label("failed"))
         .where(Domain.name.startswith(bindparam("prefix"))).order_by(Domain.name))


@pytest.fixture
def server(make_server):
    server = make_server()
    server.admins.reset_primary("root", "Gr8-secret-pw")
    root = Actor(Role.SYSTEM_ADMIN, "root")
    for name in ("a.example", "b.example"):
        server.domains.add(root, name, "", "postmaster", "Domain-pass-1", "", "", {"maxusers": 7})
    return server


POSTGRESQL = os.environ.get("MAILSRV_TEST_DATABASE_URL", "").startswith("postgresql")


@pytest.fixture(params=["thread", "loop"])
def fetch(request, server) -> Iterator[Callable]:
    """server.store.fetch as called from a worker thread, or on an event loop's thread."""
    if request.param == "thread":
        yield server.store.fetch
        return
    with asyncio.Runner() as runner:
        yield lambda query, params: runner.run(on_loop.run(server.store.fetch, query, params))


def sqlalchemy_rows(server, params):
    with server.store.reading() as s:
        return [tuple(row) for row in s.execute(QUERY, params)]


def test_rows_and_their_conversions_are_sqlalchemys(server, fetch):
    params = {"since": SINCE, "prefix": ""}
    rows = fetch(QUERY, params)
    assert rows == sqlalchemy_rows(server, params)
    assert [(name, settings["maxusers"], failed) for name, settings, _, failed in rows] == [
        ("a.example", 7, False), ("b.example", 7, False)]


def test_a_change_committed_elsewhere_is_read_at_once(server, fetch):
    params = {"since": SINCE, "prefix": "a."}
    assert fetch(QUERY, params)[0][3] is False
    with server.store.session() as s:
        s.add(LoginFailure(client_ip="192.0.2.1", login="x", at=SINCE + dt.timedelta(days=1)))
    assert fetch(QUERY, params)[0][3] is True
    assert fetch(QUERY, params) == sqlalchemy_rows(server, params)


def test_a_parameter_given_as_none_then_as_a_value(server, fetch):
    # PostgreSQL's loop connections prepare a statement per parameter types: None goes untyped.
    assert fetch(QUERY, {"since": SINCE, "prefix": None}) == []
    assert [row[0] for row in fetch(QUERY, {"since": SINCE, "prefix": "b."})] == ["b.example"]


@pytest.mark.skipif(not POSTGRESQL, reason="PostgreSQL's errors (SQLite's sqrt(-1) is NULL)")
def test_a_failed_read_raises_and_the_next_one_reads(server, fetch):
    with pytest.raises(Exception, match="square root of a negative number"):
        fetch(select(func.sqrt(bindparam("x"))), {"x": -1})
    # The same statement, prepared before it failed, reads with another value.
    assert fetch(select(func.sqrt(bindparam("x"))), {"x": 4}) == [(2.0,)]
    assert [row[0] for row in fetch(QUERY, {"since": SINCE, "prefix": "a."})] == ["a.example"]


def test_reads_one_after_another_share_one_connection(server, fetch):
    """A quiet server's reads each find the connection the last one used, rather than each of
    the first few opening one of their own (each open cost more than the read)."""
    params = {"since": SINCE, "prefix": "a."}
    for _ in range(2 * _FETCH_CONNECTIONS):
        assert len(fetch(QUERY, params)) == 1
    store = server.store
    assert sum(len(drivers._opened) for drivers in (store._thread_drivers, *store._loop_drivers.values())) == 1


@pytest.mark.skipif(not POSTGRESQL, reason="PostgreSQL's connections only")
def test_a_dropped_postgresql_connection_is_replaced(server, fetch):
    params = {"since": SINCE, "prefix": "b."}
    assert len(fetch(QUERY, params)) == 1
    with server.store.engine.connect() as conn:
        # Every other connection of this database: fetch's own among them.
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
    assert [row[0] for row in fetch(QUERY, params)] == ["b.example"]


def test_a_closed_store_reads_again_on_new_connections(server, fetch):
    params = {"since": SINCE, "prefix": "a."}
    assert len(fetch(QUERY, params)) == 1
    server.store.close()  # before a fork, `mailsrv serve` closes what the workers must not share
    assert [row[0] for row in fetch(QUERY, params)] == ["a.example"]


def test_a_store_closed_during_a_read_lets_that_read_finish(server, monkeypatch):
    """Store.close (a test's teardown, `mailsrv serve` before a fork) while another thread reads: the read
    ends with its rows on the connection it holds, closed afterwards; later reads use new ones. (On
    PostgreSQL, a connection closed under a query in progress had its freed libpq state used by that
    query, which could read the replies of the next connection opened and leave its reader waiting.)"""
    drivers = server.store._thread_drivers
    reading, closed = threading.Event(), threading.Event()
    run = drivers.run
    ran_on: list[object] = []

    def paused(conn, sql, args):
        ran_on.append(conn)
        reading.set()
        closed.wait(30)
        return run(conn, sql, args)

    params = {"since": SINCE, "prefix": "a."}
    assert len(server.store.fetch(QUERY, params)) == 1  # the connection then held is an idle one
    monkeypatch.setattr(drivers, "run", paused)
    with ThreadPoolExecutor(1) as pool:
        read = pool.submit(server.store.fetch, QUERY, params)
        assert reading.wait(30)
        server.store.close()
        closed.set()
        assert [row[0] for row in read.result(30)] == ["a.example"]
    assert len(ran_on) == 1  # not once more on a new connection: the one it held stayed open
    monkeypatch.undo()
    # Every slot once: the one given back after the close among them.
    for _ in range(_FETCH_CONNECTIONS):
        assert [row[0] for row in server.store.fetch(QUERY, params)] == ["a.example"]


@pytest.mark.skipif(not POSTGRESQL, reason="PostgreSQL's reads are the ones awaited on the loop")
def test_a_read_on_the_loop_leaves_it_serving_others(server):
    async def both() -> list[str]:
        done: list[str] = []

        async def read() -> None:
            await on_loop.run(server.store.fetch, select(func.pg_sleep(0.2)), {})
            done.append("read")

        async def other() -> None:
            await asyncio.sleep(0)
            done.append("other")

        await asyncio.gather(read(), other())
        return done

    # A read blocking the loop's thread would finish before the other task could even start.
    assert asyncio.run(both()) == ["other", "read"]


def _on_one_turn(server, reads: list[tuple]) -> list:
    """`reads` (query, params) asked for by as many quick calls in the same turn of one loop: their
    rows, or the exception each raised."""
    async def all_at_once() -> list:
        return await asyncio.gather(*(on_loop.run(server.store.fetch, query, params) for query, params in reads),
                                    return_exceptions=True)

    with asyncio.Runner() as runner:
        return runner.run(all_at_once())


@pytest.mark.skipif(not POSTGRESQL, reason="PostgreSQL's reads on the loop are pipelined")
def test_reads_asked_in_one_turn_share_one_connection(server):
    """Eight calls reading at once on one loop: each gets its own rows, from one pipeline on one
    connection (each read used to take a connection of its own, and a send and a reply of its own)."""
    reads = [(QUERY, {"since": SINCE, "prefix": prefix}) for prefix in ("a.", "b.", "", "c.") * 2]
    answers = _on_one_turn(server, reads)
    assert [[row[0] for row in rows] for rows in answers] == [
        ["a.example"], ["b.example"], ["a.example", "b.example"], []] * 2
    assert [len(drivers._opened) for drivers in server.store._loop_drivers.values()] == [1]


@pytest.mark.skipif(not POSTGRESQL, reason="PostgreSQL's errors (SQLite's sqrt(-1) is NULL)")
def test_a_failed_read_leaves_the_others_in_its_pipeline_their_rows(server):
    """An error aborts the statements after it up to the pipeline's end: they are sent again."""
    ok = (QUERY, {"since": SINCE, "prefix": "a."})
    answers = _on_one_turn(server, [ok, (select(func.sqrt(bindparam("x"))), {"x": -1}), ok, ok])
    assert "square root of a negative number" in str(answers[1])
    assert [[row[0] for row in rows] for rows in answers[::2] + answers[3:]] == [["a.example"]] * 3


@pytest.mark.skipif(not POSTGRESQL, reason="PostgreSQL's connections only")
def test_a_pipeline_on_a_dropped_connection_is_sent_again(server):
    params = {"since": SINCE, "prefix": "b."}
    assert len(_on_one_turn(server, [(QUERY, params)])[0]) == 1
    with server.store.engine.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
    answers = _on_one_turn(server, [(QUERY, params)] * 5)
    assert [[row[0] for row in rows] for rows in answers] == [["b.example"]] * 5


@pytest.mark.skipif(not POSTGRESQL, reason="PostgreSQL's reads on the loop are pipelined")
def test_a_read_whose_value_cannot_be_sent_fails_alone(server):
    ok = (QUERY, {"since": SINCE, "prefix": "b."})
    answers = _on_one_turn(server, [ok, (select(bindparam("x")), {"x": object()}), ok])
    assert "cannot adapt" in str(answers[1])
    assert [[row[0] for row in rows] for rows in (answers[0], answers[2])] == [["b.example"]] * 2
