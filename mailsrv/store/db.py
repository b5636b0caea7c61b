"""The database handle: engine, sessions and migrations on open."""
from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.store.models import Base

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any constant works; it only has to be the same on every node sharing the database.
_MIGRATION_LOCK_ID = 0x6D61696C
_READ_ONLY = "mailsrv_read_only"


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # Transactions are begun by _sqlite_begin, not by the driver.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # Foreign keys are off by default in SQLite; WAL lets readers run beside the one writer.
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
    # Take the write lock up front: a deferred transaction that reads and then writes fails at once
    # with "database is locked" when another writer got in between; IMMEDIATE waits its turn.
    # A `reading` session never writes: under WAL it reads beside the writer instead of queueing.
    conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(_READ_ONLY) else "BEGIN IMMEDIATE")


# SQLite's primary result codes SQLITE_READONLY and SQLITE_FULL; PostgreSQL's disk_full SQLSTATE.
_SQLITE_STORAGE_CODES = {8, 13}
_POSTGRES_DISK_FULL = "53100"


def storage_refused(error: BaseException | None) -> bool:
    """Whether a database error says its storage refused the write (full, read-only)."""
    sqlite_code = getattr(error, "sqlite_errorcode", None)
    if sqlite_code is not None:
        return sqlite_code & 0xFF in _SQLITE_STORAGE_CODES
    return getattr(error, "sqlstate", None) == _POSTGRES_DISK_FULL


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            # Connections kept open for every thread that may read at once (the SOAP, mailbox and
            # spool thread pools): past the pool, each use would open a file, set its pragmas and
            # close it again, several times the cost of the query it serves.
            self.engine: Engine = create_engine(url, connect_args={"check_same_thread": False},
                                                pool_size=32, max_overflow=64)
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
        else:
            self.engine = create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time, and its busy handler polls with sleeps of up to 100 ms:
        # among a process's threads writing at once (8 clients adding domains), an unlucky one kept
        # losing the race and failed with "database is locked" after the 10 s timeout. This
        # process's writers queue on a lock instead and meet the busy handler only against other
        # processes. (PostgreSQL takes row locks: nothing to queue for there.)
        self._writers: AbstractContextManager[object] = threading.RLock() if self.is_sqlite else nullcontext()
        self._read_engine = self.engine.execution_options(**{_READ_ONLY: True})
        self._readers = sessionmaker(self._read_engine, expire_on_commit=False)

    def migrate(self) -> None:
        """Bring the schema to the newest migration; nodes starting together take turns."""
        with self.engine.begin() as conn:
            if not self.is_sqlite:
                conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
            cfg = AlembicConfig()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed when the block ends, rolled back if it raises. A database whose
        disk is full or read-only refuses it as STORAGE_ERROR (-70), not as a server fault."""
        try:
            with self._writers, self._sessions() as session, session.begin():
                yield session
        except OperationalError as exc:
            if not storage_refused(exc.orig):
                raise
            raise MailsrvError(ResultCode.STORAGE_ERROR, "The database could not write: its disk is full "
                                                         "or read-only.") from None

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A unit of work that only reads (one consistent snapshot); it must not write."""
        with self._readers() as session, session.begin():
            yield session

    @contextmanager
    def read_connection(self) -> Iterator[Connection]:
        """As `reading`, on a bare connection: for the lookups of every SMTP command, which need no
        ORM objects and where an ORM Session's setup and teardown cost more than the query."""
        with self._read_engine.connect() as conn, conn.begin():
            yield conn

    def check_reachable(self) -> None:
        """Raise unless the database can be opened and read now, on a new connection: a pooled one
        outlives what made the store unusable (an SQLite file deleted, a database dropped)."""
        if self.is_sqlite:
            database = make_url(self.url).database
            if database and database != ":memory:":
                # mode=rw: a missing file is an error, not a new empty database.
                probe = sqlite3.connect(f"file:{database}?mode=rw", uri=True, timeout=5)
                try:
                    probe.execute("SELECT count(*) FROM sqlite_master").fetchone()
                finally:
                    probe.close()
                return
        with self.engine.connect() as conn:  # pool_pre_ping: a dead connection is replaced first
            conn.execute(text("SELECT 1"))

    def drop_all(self) -> None:
        """Remove every table (tests sharing one PostgreSQL database start clean)."""
        with self.engine.begin() as conn:
            Base.metadata.drop_all(conn)
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))

    def close(self) -> None:
        self.engine.dispose()
