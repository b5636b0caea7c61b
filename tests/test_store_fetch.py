"""Store.fetch, the prepared reads of every SOAP login and IMAP command outside SQLAlchemy's execution
layer: the same rows, converted the same way, as a SQLAlchemy read on SQLite and PostgreSQL; what
another connection commits is seen by the next read; a PostgreSQL connection the server dropped is
replaced without the caller seeing an error."""
from __future__ import annotations

import datetime as dt
import os

import pytest
from sqlalchemy import bindparam, exists, select, text

from mailsrv.core.actor import Actor, Role
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


def sqlalchemy_rows(server, params):
    with server.store.reading() as s:
        return [tuple(row) for row in s.execute(QUERY, params)]


def test_rows_and_their_conversions_are_sqlalchemys(server):
    params = {"since": SINCE, "prefix": ""}
    rows = server.store.fetch(QUERY, params)
    assert rows == sqlalchemy_rows(server, params)
    assert [(name, settings["maxusers"], failed) for name, settings, _, failed in rows] == [
        ("a.example", 7, False), ("b.example", 7, False)]


def test_a_change_committed_elsewhere_is_read_at_once(server):
    params = {"since": SINCE, "prefix": "a."}
    assert server.store.fetch(QUERY, params)[0][3] is False
    with server.store.session() as s:
        s.add(LoginFailure(client_ip="192.0.2.1", login="x", at=SINCE + dt.timedelta(days=1)))
    assert server.store.fetch(QUERY, params)[0][3] is True
    assert server.store.fetch(QUERY, params) == sqlalchemy_rows(server, params)


@pytest.mark.skipif(not os.environ.get("MAILSRV_TEST_DATABASE_URL", "").startswith("postgresql"),
                    reason="PostgreSQL's connections only")
def test_a_dropped_postgresql_connection_is_replaced(server):
    params = {"since": SINCE, "prefix": "b."}
    assert len(server.store.fetch(QUERY, params)) == 1
    with server.store.engine.connect() as conn:
        # Every other connection of this database: fetch's own among them.
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
    assert [row[0] for row in server.store.fetch(QUERY, params)] == ["b.example"]


def test_a_closed_store_reads_again_on_new_connections(server):
    params = {"since": SINCE, "prefix": "a."}
    assert len(server.store.fetch(QUERY, params)) == 1
    server.store.close()  # before a fork, `mailsrv serve` closes what the workers must not share
    assert [row[0] for row in server.store.fetch(QUERY, params)] == ["a.example"]
