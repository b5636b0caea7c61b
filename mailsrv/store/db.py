"""The database handle: engine, sessions and migrations on open."""
from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, Engine, Select, create_engine, event, make_url, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.store.models import Base

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any constant works; it only has to be the same on every node sharing the database.
_MIGRATION_LOCK_ID = 0x6D61696C
_READ_ONLY = "mailsrv_read_only"
# Store.fetch's connections at most (per process): as many as the SOAP clients and mail sessions
# that read at the same instant; beyond, a reader waits for one (its read takes microseconds).
_FETCH_CONNECTIONS = 16
T = TypeVar("T")


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


@dataclass(frozen=True)
class _Prepared:
    """A SELECT compiled once for this store's dialect, run without SQLAlchemy's execution layer."""
    sql: str
    defaults: dict[str, Any]  # every parameter, with the value the statement gives it (None: the caller's)
    # Each parameter's conversion for the driver (datetimes on SQLite), in the driver's order for a
    # positional driver (sqlite3), whose parameters are then a list.
    binds: tuple[tuple[str, Callable[[Any], Any] | None], ...]
    positional: bool
    results: tuple[Callable[[Any], Any] | None, ...]  # each column's conversion (JSON, datetimes on SQLite)


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
        self._prepared: dict[Select, _Prepared] = {}
        # `fetch`'s own driver connections: bounded (PostgreSQL counts connections), each kept open
        # with its prepared statements; `_drivers` lists them all for `close`.
        # A slot is an open connection, or None for one not opened yet; a reader waits for a slot.
        self._idle_drivers: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for _ in range(_FETCH_CONNECTIONS):
            self._idle_drivers.put(None)
        self._drivers: list[Any] = []
        self._drivers_lock = threading.Lock()

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

    def fetch(self, query: Select, params: Mapping[str, Any]) -> list[tuple]:
        """The rows of one SELECT (its own consistent snapshot), run as a prepared statement on one of
        the store's own driver connections (autocommit, outside SQLAlchemy's pool): for the reads of every SOAP call (its login) and IMAP
        command, where SQLAlchemy's connection, transaction and result handling cost several times
        the query (~100 us against ~15 us). The same SQL on SQLite and PostgreSQL; the columns come
        back converted as SQLAlchemy would convert them."""
        prepared = self._prepared.get(query) or self._prepare(query)
        values = {**prepared.defaults, **params}
        converted = [(name, values[name] if process is None else process(values[name])) for name, process in prepared.binds]
        args = [value for _, value in converted] if prepared.positional else dict(converted)
        rows = self._execute(prepared.sql, args)
        if not any(prepared.results):
            return rows
        return [tuple(value if convert is None or value is None else convert(value)
                      for convert, value in zip(prepared.results, row)) for row in rows]

    async def run_read(self, read: Callable[..., T], *args: Any) -> T:
        """`read(*args)` from a coroutine, for a read made of a few `fetch`es (the checks of every
        SMTP connection and transaction): on SQLite on the caller's thread, the event loop's, where
        such a local read takes microseconds and the hand-over to a worker thread and back costs
        several times that; in a worker thread on PostgreSQL, whose reads are network round trips."""
        if self.is_sqlite:
            return read(*args)
        return await asyncio.to_thread(read, *args)

    def _prepare(self, query: Select) -> _Prepared:
        dialect = self.engine.dialect
        compiled = query.compile(dialect=dialect)
        defaults = compiled.construct_params(_check=False)
        names = compiled.positiontup if compiled.positional else list(defaults)
        processors = compiled._bind_processors
        results = tuple(column.type._cached_result_processor(dialect, None) for column in query.selected_columns)
        prepared = _Prepared(str(compiled), defaults, tuple((name, processors.get(name)) for name in names),
                             compiled.positional, results)
        self._prepared[query] = prepared
        return prepared

    def _execute(self, sql: str, args: Any) -> list[tuple]:
        conn = self._idle_drivers.get()
        try:
            if conn is None:
                conn = self._open_driver()
            try:
                rows = self._run(conn, sql, args)
            except self.engine.dialect.loaded_dbapi.OperationalError:
                if self.is_sqlite:
                    raise
                # A connection the server closed (a restart, an idle timeout): once more on a new one.
                self._close_driver(conn)
                conn = None  # closed: not closed again if reopening fails
                conn = self._open_driver()
                rows = self._run(conn, sql, args)
        except BaseException:
            if conn is not None:
                self._close_driver(conn)
            self._idle_drivers.put(None)
            raise
        self._idle_drivers.put(conn)
        return rows

    def _run(self, conn: Any, sql: str, args: Any) -> list[tuple]:
        if self.is_sqlite:
            return conn.execute(sql, args).fetchall()
        return conn.execute(sql, args, prepare=True).fetchall()

    def _open_driver(self) -> Any:
        dialect = self.engine.dialect
        cargs, cparams = dialect.create_connect_args(self.engine.url)
        if self.is_sqlite:
            cparams["check_same_thread"] = False  # taken by whichever thread reads next
        conn = dialect.loaded_dbapi.connect(*cargs, **cparams)
        if self.is_sqlite:
            _sqlite_pragmas(conn, None)  # autocommit: each SELECT its own snapshot
        else:
            conn.autocommit = True
        with self._drivers_lock:
            self._drivers.append(conn)
        return conn

    def _close_driver(self, conn: Any) -> None:
        with self._drivers_lock:
            if conn in self._drivers:
                self._drivers.remove(conn)
        conn.close()

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
        """Close every connection; like the engine's pool, `fetch` opens new ones if used again."""
        with self._drivers_lock:
            drivers, self._drivers = self._drivers, []
        for conn in drivers:
            conn.close()
        # The idle slots become unopened ones (a slot taken by a read in progress comes back as is).
        idle = 0
        while True:
            try:
                self._idle_drivers.get_nowait()
            except queue.Empty:
                break
            idle += 1
        for _ in range(idle):
            self._idle_drivers.put(None)
        self.engine.dispose()
