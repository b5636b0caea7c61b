"""PostgreSQL's protocol spoken through psycopg's own libpq binding and adapters, without its cursors:
the statements prepared on a connection (shared by mailsrv.store.pg_loop's reads on an event loop),
and the write transactions of Store.driver_transaction, sent in one pipeline on a blocking
connection.

The group commit of accepted mail is such a transaction: BEGIN, a few short statements a message, a
read of the mailbox's owner, COMMIT. In psycopg's `Connection.pipeline()` its cursors, their
executemany (a send and a poll a row), the pipeline's result queue and the generators stepped
through its waits cost 400-520 us of the process's CPU a group of four (benchmarks/group_commit.py);
sent here, its statements buffered by libpq until the read's and the COMMIT's Syncs, 150-270 us.

A transaction here owes the guarantees the group commit's 250 rests on. Every reply is read up to
a Sync, in order, and the first statement's error among them raised: in pipeline mode the statements
after a failed one are only PIPELINE_ABORTED. Its COMMIT counts only if its reply says COMMIT:
PostgreSQL answers the COMMIT of a transaction that an error aborted with "ROLLBACK", not with an
error. A connection whose transaction raised is the caller's to close: its state is not known.
"""
from __future__ import annotations

import functools
import itertools
import re
import select
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import errors, pq
from psycopg.adapt import PyFormat, Transformer

# SQLAlchemy's psycopg dialect writes parameters as %(name)s and a literal % as %%.
_PLACEHOLDER = re.compile(rb"%%|%\(([^)]+)\)s")
FATAL = pq.ExecStatus.FATAL_ERROR
ABORTED = pq.ExecStatus.PIPELINE_ABORTED
_SYNC = pq.ExecStatus.PIPELINE_SYNC
_COMMAND_OK = pq.ExecStatus.COMMAND_OK
Rows = list[tuple[Any, ...]]
# A statement as prepared on a connection: its query and its parameters' types.
Key = tuple[bytes, tuple[int, ...]]


@functools.cache
def numbered(sql: str) -> tuple[bytes, tuple[str, ...], list[PyFormat]]:
    """`sql` with PostgreSQL's $1, $2 ... for its parameters, their names in that order, and the
    format psycopg is to choose for each."""
    names: list[str] = []

    def number(match: re.Match[bytes]) -> bytes:
        if match.group(1) is None:
            return b"%"
        name = match.group(1).decode()
        if name not in names:
            names.append(name)
        return b"$%d" % (names.index(name) + 1)

    query = _PLACEHOLDER.sub(number, sql.encode())
    return query, tuple(names), [PyFormat.AUTO] * len(names)


def take_ready(pgconn: pq.abc.PGconn, results: list[pq.abc.PGresult]) -> bool:
    """Add to `results` what has come of the pipeline's next results (a statement's, up to the None
    that ends them, or a Sync); whether they are all in."""
    while not pgconn.is_busy():
        result = pgconn.get_result()
        if result is None:
            return True
        results.append(result)
        if result.status == _SYNC:  # not followed by a None
            return True
    return False


class Statements:
    """The statements prepared on one connection in pipeline mode, each the first time it is sent."""

    def __init__(self, pgconn: pq.abc.PGconn, transformer: Transformer) -> None:
        self._pgconn = pgconn
        self._transformer = transformer
        self._names: dict[Key, bytes] = {}
        self._count = itertools.count()

    def send(self, sql: str, params: Mapping[str, Any]) -> Key | None:
        """Send `sql` (pyformat, as SQLAlchemy compiles it) with `params`, prepared first if it was
        not: then its key, and two replies to read (the preparation's, the statement's); else None.
        A value psycopg cannot send raises before anything is sent; a failed connection raises
        OperationalError."""
        query, names, chosen = numbered(sql)
        transformer = self._transformer
        values = transformer.dump_sequence([params[name] for name in names], chosen)
        key = (query, transformer.types)
        statement = self._names.get(key)
        preparing = statement is None
        if statement is None:
            # Per parameter types, as psycopg keys them: a None is sent untyped.
            statement = self._names[key] = b"mailsrv_%d" % next(self._count)
            self._pgconn.send_prepare(statement, query, param_types=key[1])
        self._pgconn.send_query_prepared(statement, values, param_formats=transformer.formats)
        return key if preparing else None

    def answer(self, preparing: Key | None, results: list[pq.abc.PGresult]) -> pq.abc.PGresult:
        """The result that answers a statement `send` sent (`preparing`, what `send` returned;
        `results`, its replies, the preparation's first): its first error, else its own, which is
        PIPELINE_ABORTED when an earlier statement failed. A preparation that failed or was aborted
        is forgotten, to be made again when the statement is next sent."""
        if preparing is not None and results[0].status in (FATAL, ABORTED):
            del self._names[preparing]
        return next((result for result in results if result.status == FATAL), results[-1])


def loaded_rows(transformer: Transformer, result: pq.abc.PGresult) -> Rows:
    """A statement's rows, as psycopg's loaders give them."""
    transformer.set_pgresult(result)
    return transformer.load_rows(0, result.ntuples, tuple)


def expect_sync(results: list[pq.abc.PGresult]) -> None:
    """Raise unless `results`, read after every statement's, are the Sync that ends them."""
    if len(results) != 1 or results[0].status != _SYNC:
        raise psycopg.OperationalError("the pipeline's replies are out of step")


class Connection(psycopg.Connection[Any]):
    """A blocking psycopg connection (autocommit, as Store.fetch's are) that can also run a
    `Transaction`, with the statements it prepared kept."""

    _wire: _Wire | None = None

    def begin(self) -> Transaction:
        """A transaction begun on this connection (sent: BEGIN), to end with `commit`; if anything
        raises meanwhile, close the connection."""
        if self._wire is None:
            self._wire = _Wire(self)
        return Transaction(self._wire)


class _Wire:
    """What a connection's transactions keep between them: the transformer that dumps parameters
    and loads rows (psycopg's adapters, the connection's encoding), the prepared statements."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.pgconn = conn.pgconn
        self.encoding = conn.info.encoding
        self.transformer = Transformer(conn)
        self.statements = Statements(self.pgconn, self.transformer)
        self.poll = select.poll()
        self.poll.register(self.pgconn.socket, select.POLLIN)


class Transaction:
    """One transaction in one pipeline: statements sent as they come, the server waited for only at a
    `fetch` and at `commit`, each time up to a Sync (which, inside BEGIN, does not end the
    transaction)."""

    def __init__(self, wire: _Wire) -> None:
        self._wire = wire
        self._pgconn = wire.pgconn
        # The replies owed since the last Sync, in order: a statement's key if it was prepared with
        # it (two replies), else None.
        self._owed: list[Key | None] = []
        self._pgconn.enter_pipeline_mode()
        self._command(b"BEGIN")

    def execute(self, sql: str, params: Mapping[str, Any]) -> None:
        """Send one statement; its error is raised by the next `fetch` or `commit`."""
        self._owed.append(self._wire.statements.send(sql, params))

    def fetch(self, sql: str, params: Mapping[str, Any]) -> Rows:
        """The rows of one SELECT, read in the transaction: what was sent before is waited for too,
        and its first error raised."""
        self.execute(sql, params)
        return loaded_rows(self._wire.transformer, self._sync())

    def commit(self) -> None:
        """COMMIT, and the connection out of pipeline mode (as psycopg expects to find it). Raises
        unless the server answered that it committed."""
        self._command(b"COMMIT")
        result = self._sync()
        if result.command_status != b"COMMIT":
            raise errors.InFailedSqlTransaction(
                f"COMMIT was answered {result.command_status.decode(errors='replace')!r}: nothing was committed")
        self._pgconn.exit_pipeline_mode()

    def _command(self, sql: bytes) -> None:
        self._pgconn.send_query_params(sql, None)
        self._owed.append(None)

    def _sync(self) -> pq.abc.PGresult:
        """Send a Sync and read every reply owed up to it; the last statement's. Raises the first
        statement's error among them (the ones after it were aborted)."""
        pgconn, wire = self._pgconn, self._wire
        pgconn.pipeline_sync()
        while pgconn.flush():  # a send larger than the socket's buffer
            self._wait(select.POLLIN | select.POLLOUT)
        owed, self._owed = self._owed, []
        error: pq.abc.PGresult | None = None
        last: pq.abc.PGresult | None = None
        for preparing in owed:
            results = self._results() if preparing is None else [*self._results(), *self._results()]
            last = wire.statements.answer(preparing, results)
            if error is None and last.status == FATAL:
                error = last
        expect_sync(self._next())
        if error is not None:
            raise errors.error_from_result(error, encoding=wire.encoding)
        assert last is not None  # a Sync is sent after a statement
        if last.status not in (_COMMAND_OK, pq.ExecStatus.TUPLES_OK):
            raise errors.PipelineAborted("aborted by an earlier statement's error")
        return last

    def _results(self) -> list[pq.abc.PGresult]:
        """The results of the pipeline's next statement."""
        results = self._next()
        if not results:
            raise psycopg.OperationalError(self._pgconn.get_error_message(self._wire.encoding))
        return results

    def _next(self) -> list[pq.abc.PGresult]:
        """The pipeline's next results: a statement's (up to the None that ends them), or a Sync."""
        results: list[pq.abc.PGresult] = []
        while not take_ready(self._pgconn, results):
            self._wait(select.POLLIN)
        return results

    def _wait(self, events: int) -> None:
        """Until the socket can be read (what came is then taken in) or, if asked, written."""
        poll, fd = self._wire.poll, self._pgconn.socket
        if events != select.POLLIN:
            poll.modify(fd, events)
        try:
            ready = poll.poll()
        finally:
            if events != select.POLLIN:
                poll.modify(fd, select.POLLIN)
        if any(event & ~select.POLLOUT for _, event in ready):
            self._pgconn.consume_input()  # raises OperationalError for a connection lost
