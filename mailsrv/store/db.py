"""The database handle: engine, sessions and migrations on open."""
from __future__ import annotations

import asyncio
import fcntl
import functools
import os
from abc import ABC, abstractmethod
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, Dialect, Engine, Executable, Select, create_engine, event, make_url, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from mailsrv.core import on_loop
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.store.models import CURRENT_GENERATION, Base

if TYPE_CHECKING:
    from mailsrv.store import pg_wire

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any constant works; it only has to be the same on every node sharing the database.
_MIGRATION_LOCK_ID = 0x6D61696C
_READ_ONLY = "mailsrv_read_only"
# Store.fetch's connections at most (per process): as many as the SOAP clients and mail sessions
# that read at the same instant; beyond, a reader waits for one (its read takes microseconds).
_FETCH_CONNECTIONS = 16
# And on each event loop that reads PostgreSQL there (quick SOAP calls, the checks of mail sessions).
_LOOP_FETCH_CONNECTIONS = 8
# Answers of Store.fetch_directory kept per process; past this, the cache starts again empty.
_DIRECTORY_ANSWERS_KEPT = 4096
# The directory generation the current call read with its first statement (its login), while
# Store.directory_at is in force; None: not known.
_KNOWN_GENERATION: ContextVar[int | None] = ContextVar("mailsrv_directory_generation", default=None)
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
    """A statement compiled once for a dialect, run without SQLAlchemy's execution layer."""
    sql: str
    defaults: dict[str, Any]  # every parameter, with the value the statement gives it (None: the caller's)
    # Each parameter's conversion for the driver (datetimes on SQLite), in the driver's order for a
    # positional driver (sqlite3), whose parameters are then a list.
    binds: tuple[tuple[str, Callable[[Any], Any] | None], ...]
    positional: bool
    results: tuple[Callable[[Any], Any] | None, ...]  # each column's conversion (JSON, datetimes on SQLite)

    def arguments(self, params: Mapping[str, Any]) -> Any:
        """The driver's parameters for `params`: the statement's own values, the caller's over them."""
        values = {**self.defaults, **params}
        # One pass, no (name, value) pairs made on the way: run for every login's read.
        if self.positional:
            return [values[name] if process is None else process(values[name]) for name, process in self.binds]
        return {name: values[name] if process is None else process(values[name]) for name, process in self.binds}

    def rows(self, rows: list[tuple]) -> list[tuple]:
        """The driver's rows with their columns converted as SQLAlchemy would convert them."""
        if not any(self.results):
            return rows
        return [tuple(value if convert is None or value is None else convert(value)
                      for convert, value in zip(self.results, row)) for row in rows]


@functools.cache
def _prepare(dialect: Dialect, query: Executable) -> _Prepared:
    """`query` compiled for `dialect`, once: statements are module constants, so the cache stays small."""
    compiled = query.compile(dialect=dialect)
    defaults = compiled.construct_params(_check=False)
    names = compiled.positiontup if compiled.positional else list(defaults)
    processors = compiled._bind_processors
    columns = query.selected_columns if isinstance(query, Select) else ()
    results = tuple(column.type._cached_result_processor(dialect, None) for column in columns)
    return _Prepared(str(compiled), defaults, tuple((name, processors.get(name)) for name in names),
                     compiled.positional, results)


class DriverTransaction:
    """A write transaction on one of the store's own driver connections (`Store.driver_transaction`),
    for `execute_many` and `fetch_in` alone: no SQLAlchemy connection, transaction or ORM session
    to set up and tear down, which cost the group commit of accepted mail more than its statements.
    On SQLite run by the driver (`driver`, sqlite3's connection), on PostgreSQL sent in one pipeline
    through libpq (`pipeline`)."""

    def __init__(self, dialect: Dialect, driver: sqlite3.Connection | None = None,
                 pipeline: pg_wire.Transaction | None = None) -> None:
        self.dialect = dialect
        self.driver = driver
        self.pipeline = pipeline


# What `execute_many` and `fetch_in` run in.
Transaction = Session | DriverTransaction


def dialect_of(tx: Transaction) -> Dialect:
    return tx.dialect if isinstance(tx, DriverTransaction) else tx.get_bind().dialect


@contextmanager
def _cursor(tx: Transaction, statement: Executable) -> Iterator[tuple[_Prepared, Any]]:
    """`statement` prepared for `tx`'s dialect, and a driver cursor in `tx`'s transaction, closed when the
    block ends. A session's pending ORM changes are flushed first (as Session.execute does: what the
    caller added goes before, and its locks are taken in that order)."""
    if isinstance(tx, DriverTransaction):
        dialect, driver = tx.dialect, tx.driver
        assert driver is not None  # on PostgreSQL, its pipeline is used instead
    else:
        tx.flush()
        conn = tx.connection()
        dialect, driver = conn.dialect, conn.connection.driver_connection
    prepared = _prepare(dialect, statement)
    cursor = driver.cursor()
    try:
        yield prepared, cursor
    finally:
        cursor.close()


def execute_many(tx: Transaction, statement: Executable, rows: Sequence[Mapping[str, Any]]) -> None:
    """`statement` (an INSERT, UPDATE or DELETE of bindparams) once for each of `rows`, in order, in the
    transaction `tx`: prepared once and handed to the driver in one executemany. For the group commit
    of accepted mail, where SQLAlchemy's work per statement cost more than the statements themselves."""
    if not rows:
        return
    if isinstance(tx, DriverTransaction) and tx.pipeline is not None:
        prepared = _prepare(tx.dialect, statement)
        for row in rows:
            tx.pipeline.execute(prepared.sql, prepared.arguments(row))
        return
    with _cursor(tx, statement) as (prepared, cursor):
        cursor.executemany(prepared.sql, [prepared.arguments(row) for row in rows])


def fetch_in(tx: Transaction, query: Select, params: Mapping[str, Any]) -> list[tuple]:
    """As `Store.fetch`, in the transaction `tx` (what it reads is what that transaction commits against)."""
    if isinstance(tx, DriverTransaction) and tx.pipeline is not None:
        prepared = _prepare(tx.dialect, query)
        return prepared.rows(tx.pipeline.fetch(prepared.sql, prepared.arguments(params)))
    with _cursor(tx, query) as (prepared, cursor):
        cursor.execute(prepared.sql, prepared.arguments(params))
        return prepared.rows(cursor.fetchall())


class _Drivers(ABC):
    """`fetch`'s own driver connections, outside SQLAlchemy's pool: bounded (PostgreSQL counts
    connections), each kept open with its prepared statements, autocommit (each read its own
    snapshot). A reader waits for a slot, and takes with it an idle connection, or None for one
    to open. Subclasses say how a reader waits for a slot and reads.

    A connection is closed only while no reader holds it: `close_all` closes the idle ones and
    leaves each held one to its reader, who closes it when giving it back (unless no reader can:
    then it closes them all). psycopg's close does
    not wait for a query in progress on another thread, whose libpq calls then use the freed
    connection: its socket's number, reused by the next connection opened, had that one's replies
    read by the old query, and that one's reader waited forever."""

    def __init__(self) -> None:
        self._opened: set[Any] = set()  # every connection open and not closed by `close_all`
        self._held: set[Any] = set()  # those a reader holds
        self._lock = threading.Lock()

    @abstractmethod
    def _put(self, conn: Any) -> None:
        """Free a slot, with its connection (None: none open in it)."""

    def _finish(self, conn: Any) -> None:
        conn.close()

    def _abandoned(self) -> bool:
        """Whether no reader can use a connection it holds any more (none of them will give it back)."""
        return False

    def _hold(self, conn: Any) -> Any:
        """A slot's connection, now held by its reader; None for a slot to open one in."""
        with self._lock:
            if conn not in self._opened:  # closed by `close_all` while idle
                return None
            self._held.add(conn)
        return conn

    def _adopt(self, conn: Any) -> Any:
        """`conn`, just opened, held by the caller."""
        with self._lock:
            self._opened.add(conn)
            self._held.add(conn)
        return conn

    def give(self, conn: Any) -> None:
        """Hand back the slot taken, with its connection (None if closed)."""
        with self._lock:
            self._held.discard(conn)
            retired = conn is not None and conn not in self._opened
        if retired:  # `close_all` ran while it was held
            self._finish(conn)
            conn = None
        self._put(conn)

    def close(self, conn: Any) -> None:
        """Close a connection the caller holds."""
        with self._lock:
            self._opened.discard(conn)
            self._held.discard(conn)
        self._finish(conn)

    def close_all(self) -> None:
        with self._lock:
            closing = self._opened if self._abandoned() else self._opened - self._held
            self._opened = set()
        for conn in closing:
            self._finish(conn)


class _ThreadDrivers(_Drivers):
    """For reads on any thread (sqlite3 or psycopg's blocking connections): a reader blocks."""

    def __init__(self, connect: Callable[[], Any], count: int) -> None:
        super().__init__()
        self._new = connect
        # A reader takes a slot, then the connection given back last: in a queue of slots with their
        # connections, each of the first `count` reads would open one (~0.6 ms on SQLite: a worker's
        # first commands after a quiet start), though one at a time needs only one.
        self._slots: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._idle: list[Any] = []
        for _ in range(count):
            self._slots.put(None)

    def take(self) -> Any:
        """An idle connection, held until given back; None for a slot to open one in."""
        self._slots.get()
        try:
            return self._hold(self._idle.pop())
        except IndexError:
            return None

    def open(self) -> Any:
        """A new connection, held by the caller."""
        return self._adopt(self._new())

    def _put(self, conn: Any) -> None:
        if conn is not None:
            self._idle.append(conn)  # before the slot: whoever takes it finds this connection
        self._slots.put(None)

    def run(self, conn: Any, sql: str, args: Any) -> list[tuple]:
        if isinstance(conn, sqlite3.Connection):
            return conn.execute(sql, args).fetchall()
        return conn.execute(sql, args, prepare=True).fetchall()


class _LoopDrivers(_Drivers):
    """For PostgreSQL reads on one event loop's thread, under mailsrv.core.on_loop.run: connections
    read through libpq (mailsrv.store.pg_loop), each reply awaited on the loop (on_loop.wait),
    which serves other requests meanwhile. The reads asked for in one turn of the loop go to the
    server together, in one pipeline on one connection (mailsrv.store.pg_loop says why). Used by
    that loop only, so its slots are an asyncio queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop, cargs: list[Any], cparams: dict[str, Any], count: int) -> None:
        from mailsrv.store import pg_loop  # psycopg: only a server on PostgreSQL reads on its loop
        super().__init__()
        self._pg_loop = pg_loop
        self._loop = loop
        self._cargs, self._cparams = cargs, cparams
        # Last in, first out, for the reason _ThreadDrivers says (a PostgreSQL connection costs more).
        self._idle: asyncio.Queue[Any] = asyncio.LifoQueue()
        for _ in range(count):
            self._idle.put_nowait(None)
        self._asked: list[pg_loop.Read] = []
        self._sending: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks

    def read(self, sql: str, args: Mapping[str, Any]) -> list[tuple]:
        """The rows of `sql` with `args`, read under on_loop.run with the others asked for in this
        turn of the loop."""
        answer: asyncio.Future[list[tuple]] = self._loop.create_future()
        self._asked.append(self._pg_loop.Read(sql, args, answer))
        if len(self._asked) == 1:
            self._loop.call_soon(self._send_asked)
        return on_loop.wait(answer)

    def _send_asked(self) -> None:
        reads, self._asked = self._asked, []
        task = self._loop.create_task(self._send(reads))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, reads: list[Any]) -> None:
        conn = self._hold(await self._idle.get())
        try:
            if conn is None:
                conn = self._adopt(await self._connect())
            try:
                await conn.read(reads)
            except self._pg_loop.OperationalError:
                # A connection the server closed (a restart, an idle timeout): once more on a new one.
                self.close(conn)
                conn = None  # closed: not closed again if reopening fails
                conn = self._adopt(await self._connect())
                await conn.read([read for read in reads if not read.answer.done()])
        except BaseException as error:
            if conn is not None:
                self.close(conn)
            self._put(None)
            for read in reads:
                read.settle(error=error)
            if not isinstance(error, Exception):
                raise
            return
        self.give(conn)

    def _connect(self) -> Any:
        return self._pg_loop.LoopConnection.connect(*self._cargs, **self._cparams)

    def _put(self, conn: Any) -> None:
        self._idle.put_nowait(conn)

    def _abandoned(self) -> bool:
        # A read suspended on a closed loop never resumes (a server stopped mid-read).
        return self._loop.is_closed()


@functools.cache
def _with_generation(query: Select) -> Select:
    """`query` with the directory generation of its snapshot as one more, last, column."""
    return query.add_columns(CURRENT_GENERATION.scalar_subquery())


class _SqliteWriters:
    """Store.session's turn to write on SQLite, which has one writer at a time and whose busy
    handler polls with sleeps (of 1, 2, 5, ... up to 100 ms): among a process's threads writing at
    once (8 clients adding domains), an unlucky one kept losing the race and failed with "database
    is locked" after the 10 s timeout, and two workers' group commits each lost ~1.4 ms a group
    asleep while the other had long committed. So the writers of a process queue on a lock, and
    those of the processes sharing the file (the workers, the CLI) on an flock of
    `<database>-writelock`, taken before BEGIN IMMEDIATE: the next writer wakes the moment the
    last one's commit is done. The kernel drops the flock of a process that dies. Where the lock
    file cannot be opened (a read-only directory), the busy handler alone keeps them apart."""

    def __init__(self, database: str | None) -> None:
        self._lock = threading.RLock()
        self._path = database if database and database != ":memory:" and not database.startswith("file:") else None
        self._depth = 0  # a session opened inside another holds the flock already
        self._fd: int | None = None
        self._pid = 0  # the process that opened _fd: a forked child opens its own

    def __enter__(self) -> None:
        self._lock.acquire()
        try:
            if self._depth == 0 and (fd := self._file()) is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            self._lock.release()
            raise
        self._depth += 1

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        try:
            if self._depth == 0 and self._fd is not None and self._pid == os.getpid():
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._lock.release()

    def close(self) -> None:
        """Close the lock file (Store.close); the next writer opens it again."""
        with self._lock:
            if self._depth == 0:  # else left open: a session in progress in this thread holds the flock
                if self._fd is not None and self._pid == os.getpid():
                    os.close(self._fd)
                self._fd, self._pid = None, 0

    def _file(self) -> int | None:
        if self._path is not None and self._pid != os.getpid():
            try:
                self._fd = os.open(f"{self._path}-writelock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                self._path = self._fd = None
            self._pid = os.getpid()
        return self._fd


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
        # PostgreSQL takes row locks: nothing to queue for there.
        self._writers: AbstractContextManager[object] = \
            _SqliteWriters(make_url(url).database) if self.is_sqlite else nullcontext()
        self._read_engine = self.engine.execution_options(**{_READ_ONLY: True})
        self._readers = sessionmaker(self._read_engine, expire_on_commit=False)
        self._thread_drivers = _ThreadDrivers(self._connect_driver, _FETCH_CONNECTIONS)
        # PostgreSQL reads made on an event loop's thread (mailsrv.core.on_loop), per loop.
        self._loop_drivers: dict[asyncio.AbstractEventLoop, _LoopDrivers] = {}
        # fetch_directory's answers: (query, parameters) -> (the generation they were read at, rows).
        self._directory_answers: dict[tuple[Select, tuple], tuple[int, list[tuple]]] = {}

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
        with self._storage_errors(), self._writers, self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def driver_transaction(self) -> Iterator[DriverTransaction]:
        """As `session`, for a unit of work made only of `execute_many` and `fetch_in`: on one of
        `fetch`'s driver connections, begun and ended by the driver (BEGIN IMMEDIATE on SQLite, so
        it queues for the write lock as a session does).

        On PostgreSQL the block is sent in one pipeline through libpq (mailsrv.store.pg_wire), BEGIN and
        COMMIT included: the server is waited for only where `fetch_in` reads rows and once at the
        end, not once a statement (the group commit of accepted mail: at its mailbox check and at the
        end, instead of at each statement). A statement that fails there is raised at the next wait,
        the statements after it are skipped, and the block ends without a COMMIT (which the server,
        had it come, would have answered ROLLBACK: that raises too); the connection, its
        transaction left open, is closed, and the server rolls it back."""
        drivers = self._thread_drivers
        with self._storage_errors(), self._writers:
            conn = drivers.take()
            kept = None  # given back for reuse only once its transaction has ended as it should
            try:
                if conn is None:
                    conn = drivers.open()
                if not self.is_sqlite:
                    pipeline = conn.begin()
                    yield DriverTransaction(self.engine.dialect, pipeline=pipeline)
                    pipeline.commit()
                    kept = conn
                    return
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    yield DriverTransaction(self.engine.dialect, conn)
                    conn.execute("COMMIT")
                except BaseException:
                    try:
                        conn.execute("ROLLBACK")
                    except Exception:
                        pass  # its state unknown (a failed BEGIN or COMMIT): closed below; the block's error is the one raised
                    else:
                        kept = conn
                    raise
                kept = conn
            finally:
                if conn is not None and kept is None:  # a failed BEGIN, COMMIT or ROLLBACK: state unknown
                    drivers.close(conn)
                drivers.give(kept)

    @contextmanager
    def _storage_errors(self) -> Iterator[None]:
        try:
            yield
        except (OperationalError, self.engine.dialect.loaded_dbapi.OperationalError) as exc:
            # Raw from the driver too: `execute_many` runs on it directly.
            if not storage_refused(getattr(exc, "orig", exc)):
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
        the store's own driver connections (autocommit, outside SQLAlchemy's pool; under
        mailsrv.core.on_loop.run, PostgreSQL's awaited on the loop): for the reads of every SOAP call
        (its login) and IMAP command, where SQLAlchemy's connection, transaction and result handling
        cost several times the query (~100 us against ~15 us). The same SQL on SQLite and PostgreSQL; the columns come
        back converted as SQLAlchemy would convert them."""
        prepared = _prepare(self.engine.dialect, query)
        return prepared.rows(self._execute(prepared.sql, prepared.arguments(params)))

    @contextmanager
    def directory_at(self, generation: int) -> Iterator[None]:
        """Inside the block, `fetch_directory` takes `generation` for the directory's current one: the
        number the call's first statement read (its login, mailsrv.directory.auth), so that what was
        read at that number already comes from this process's memory instead of the database. The
        call then sees the directory as it was at its login, as if it had read everything then."""
        token = _KNOWN_GENERATION.set(generation)
        try:
            yield
        finally:
            _KNOWN_GENERATION.reset(token)

    def fetch_directory(self, query: Select, params: Mapping[str, Any]) -> list[tuple]:
        """As `fetch`, for a SELECT of directory columns whose every change raises the directory
        generation (the triggers of migrations 0007 and 0024), its WHERE on such columns too: under
        `directory_at` with the generation an earlier answer was read at, that answer again without
        a round trip (control panels read the same domains and users call after call); else read,
        with the generation of the same snapshot, and kept. A change through any node raises the
        number, so the next call on every node reads afresh. The rows are shared: never changed."""
        key = (query, tuple(sorted(params.items())))
        known = _KNOWN_GENERATION.get()
        if known is not None:
            kept = self._directory_answers.get(key)
            if kept is not None and kept[0] == known:
                return kept[1]
        rows = self.fetch(_with_generation(query), params)
        if not rows:  # an empty answer carries no generation: read again next time
            return rows
        answer = [row[:-1] for row in rows]
        if len(self._directory_answers) >= _DIRECTORY_ANSWERS_KEPT:
            self._directory_answers.clear()
        self._directory_answers[key] = (rows[0][-1], answer)
        return answer

    async def run_read(self, read: Callable[..., T], *args: Any) -> T:
        """`read(*args)` from a coroutine, on the event loop's thread, for a read made of a few
        `fetch`es and nothing else that blocks (the checks of every SMTP connection and transaction,
        of every IMAP and POP3 command): SQLite's local reads take microseconds there, less than the
        hand-over to a worker thread and back; PostgreSQL's round trips are awaited on the loop
        (mailsrv.core.on_loop), which serves other sessions meanwhile. SQLite's reads never wait on
        the loop, so `read` is called as it is, without the greenlet's two switches."""
        if self.is_sqlite:
            return read(*args)
        return await on_loop.run(read, *args)

    def _execute(self, sql: str, args: Any) -> list[tuple]:
        # On an event loop's thread, under mailsrv.core.on_loop.run (quick SOAP calls, Store.run_read), a read
        # of PostgreSQL, a network round trip, is awaited on the loop's own connections so
        # that the loop serves other requests meanwhile; SQLite's, a local read, runs where it is.
        if not self.is_sqlite and on_loop.active():
            return self._drivers_here().read(sql, args)
        drivers = self._thread_drivers
        conn = drivers.take()
        try:
            if conn is None:
                conn = drivers.open()
            try:
                rows = drivers.run(conn, sql, args)
            except self.engine.dialect.loaded_dbapi.OperationalError:
                if self.is_sqlite:
                    raise
                # A connection the server closed (a restart, an idle timeout): once more on a new one.
                drivers.close(conn)
                conn = None  # closed: not closed again if reopening fails
                conn = drivers.open()
                rows = drivers.run(conn, sql, args)
        except BaseException:
            if conn is not None:
                drivers.close(conn)
            drivers.give(None)
            raise
        drivers.give(conn)
        return rows

    def _connect_driver(self) -> Any:
        dialect = self.engine.dialect
        cargs, cparams = dialect.create_connect_args(self.engine.url)
        if self.is_sqlite:
            cparams["check_same_thread"] = False  # taken by whichever thread reads next
            conn = dialect.loaded_dbapi.connect(*cargs, **cparams)
            _sqlite_pragmas(conn, None)  # autocommit: each SELECT its own snapshot
            return conn
        from mailsrv.store import pg_wire  # psycopg: only on PostgreSQL
        # psycopg's own connection, which can also run driver_transaction's pipelines.
        return pg_wire.Connection.connect(*cargs, autocommit=True, **cparams)

    def _drivers_here(self) -> _LoopDrivers:
        """The running loop's connections (made on first use: only loops that read have any)."""
        loop = asyncio.get_running_loop()
        drivers = self._loop_drivers.get(loop)
        if drivers is None:
            # Those of loops closed since (a test's, a restarted listener's) are no one's any more.
            # Two loops' threads may find the same ended loop at once: each closes only what it took.
            # (A snapshot of the keys: another loop's thread may add its own meanwhile.)
            for ended in [other for other in list(self._loop_drivers) if other.is_closed()]:
                gone = self._loop_drivers.pop(ended, None)
                if gone is not None:
                    gone.close_all()
            cargs, cparams = self.engine.dialect.create_connect_args(self.engine.url)
            drivers = self._loop_drivers[loop] = _LoopDrivers(loop, cargs, cparams, _LOOP_FETCH_CONNECTIONS)
        return drivers

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
        # A new schema counts generations from 0 again.
        self._directory_answers.clear()

    def close(self) -> None:
        """Close every connection; like the engine's pool, `fetch` opens new ones if used again."""
        self._thread_drivers.close_all()
        if isinstance(self._writers, _SqliteWriters):
            self._writers.close()
        loop_drivers, self._loop_drivers = list(self._loop_drivers.values()), {}
        for drivers in loop_drivers:
            drivers.close_all()
        self.engine.dispose()
