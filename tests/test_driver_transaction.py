"""Store.driver_transaction, the group commit of accepted mail (a 250 is sent once it returns): what it
commits is all of the block or none of it, and a block that did not commit raises, on SQLite and on
PostgreSQL, where the block is sent in one pipeline through libpq (mailsrv.store.pg_wire): a failed
statement, a COMMIT the server answered with ROLLBACK, a constraint checked at COMMIT, a connection
that died mid-group; a full disk is STORAGE_ERROR. A read in the block sees what the block wrote
before it."""
from __future__ import annotations

import os

import pytest
from sqlalchemy import Integer, bindparam, cast, column, func, insert, literal, select, table, text

from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.mta.spool import _ADD_RENAME
from mailsrv.store.db import execute_many, fetch_in
from mailsrv.store.models import MaildirRename

POSTGRESQL = os.environ.get("MAILSRV_TEST_DATABASE_URL", "").startswith("postgresql")
postgresql_only = pytest.mark.skipif(not POSTGRESQL, reason="PostgreSQL's pipeline")
_RENAMED = select(MaildirRename.name).where(MaildirRename.name.startswith(bindparam("prefix"))).order_by(MaildirRename.name)


@pytest.fixture
def store(make_server):
    return make_server().store


def rows(names: list[str]) -> list[dict[str, str]]:
    return [{"name": name, "maildir": "/var/mail/x"} for name in names]


def committed(store, prefix: str = "") -> list[str]:
    return [row[0] for row in store.fetch(_RENAMED, {"prefix": prefix})]


def test_a_group_commits_and_reads_its_own_writes_mid_block(store):
    with store.driver_transaction() as tx:
        execute_many(tx, _ADD_RENAME, rows(["a.1", "a.2"]))
        assert [row[0] for row in fetch_in(tx, _RENAMED, {"prefix": "a."})] == ["a.1", "a.2"]
        execute_many(tx, _ADD_RENAME, rows(["a.3"]))
    assert committed(store) == ["a.1", "a.2", "a.3"]


def test_a_failing_statement_commits_nothing_and_raises(store):
    with pytest.raises(store.engine.dialect.loaded_dbapi.IntegrityError):
        with store.driver_transaction() as tx:
            execute_many(tx, _ADD_RENAME, rows(["b.1", "b.2"]))
            execute_many(tx, _ADD_RENAME, rows(["b.3", "b.1"]))  # b.1 twice
            execute_many(tx, _ADD_RENAME, rows(["b.4"]))
    assert committed(store) == []
    with store.driver_transaction() as tx:  # the next group, as usual
        execute_many(tx, _ADD_RENAME, rows(["b.5"]))
    assert committed(store) == ["b.5"]


def test_a_constraint_failing_at_commit_commits_nothing_and_raises(store):
    deferred = table("deferred_parent", column("id", Integer), column("parent", Integer))
    with store.engine.begin() as conn:
        conn.execute(text("CREATE TABLE deferred_parent (id INTEGER PRIMARY KEY, parent INTEGER "
                          "REFERENCES deferred_parent (id) DEFERRABLE INITIALLY DEFERRED)"))
    try:
        with pytest.raises(store.engine.dialect.loaded_dbapi.IntegrityError):
            with store.driver_transaction() as tx:
                execute_many(tx, _ADD_RENAME, rows(["c.1"]))
                execute_many(tx, insert(deferred).values(id=bindparam("id"), parent=bindparam("parent")),
                             [{"id": 1, "parent": 2}])  # no row 2 by the COMMIT
        assert committed(store) == []
    finally:
        with store.engine.begin() as conn:
            conn.execute(text("DROP TABLE deferred_parent"))


@postgresql_only
def test_a_commit_answered_rollback_raises(store):
    import psycopg

    # A statement's error caught inside the block: PostgreSQL has aborted the transaction, and
    # answers its COMMIT with ROLLBACK, not with an error. The block must not pass for committed.
    with pytest.raises(psycopg.Error, match="ROLLBACK"):
        with store.driver_transaction() as tx:
            execute_many(tx, _ADD_RENAME, rows(["d.1"]))
            with pytest.raises(psycopg.errors.DivisionByZero):
                fetch_in(tx, select(cast(literal(1) / bindparam("zero", type_=Integer), Integer)), {"zero": 0})
    assert committed(store) == []
    with store.driver_transaction() as tx:
        execute_many(tx, _ADD_RENAME, rows(["d.2"]))
    assert committed(store) == ["d.2"]


@postgresql_only
def test_a_connection_terminated_mid_group_raises_and_the_next_group_runs_on_a_new_one(store):
    import psycopg

    with pytest.raises(psycopg.OperationalError):
        with store.driver_transaction() as tx:
            execute_many(tx, _ADD_RENAME, rows(["e.1"]))
            backend = fetch_in(tx, select(func.pg_backend_pid()), {})[0][0]
            with store.engine.begin() as conn:
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
            execute_many(tx, _ADD_RENAME, rows(["e.2"]))
    assert committed(store) == []
    with store.driver_transaction() as tx:
        execute_many(tx, _ADD_RENAME, rows(["e.3"]))
        assert fetch_in(tx, select(func.pg_backend_pid()), {})[0][0] != backend
    assert committed(store) == ["e.3"]


@postgresql_only
def test_a_full_disk_is_a_storage_error(store):
    # What PostgreSQL answers a write its disk cannot take: SQLSTATE 53100, raised here by a trigger.
    with store.engine.begin() as conn:
        conn.execute(text("CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS "
                          "$$ BEGIN RAISE EXCEPTION 'no space left' USING ERRCODE = 'disk_full'; END $$"))
        conn.execute(text("CREATE TRIGGER disk_full BEFORE INSERT ON maildir_renames "
                          "FOR EACH ROW EXECUTE FUNCTION disk_full()"))
    try:
        with pytest.raises(MailsrvError) as refused:
            with store.driver_transaction() as tx:
                execute_many(tx, _ADD_RENAME, rows(["f.1"]))
        assert refused.value.code == ResultCode.STORAGE_ERROR
    finally:
        with store.engine.begin() as conn:
            conn.execute(text("DROP TRIGGER disk_full ON maildir_renames"))
            conn.execute(text("DROP FUNCTION disk_full()"))
    with store.driver_transaction() as tx:
        execute_many(tx, _ADD_RENAME, rows(["f.2"]))
    assert committed(store) == ["f.2"]
