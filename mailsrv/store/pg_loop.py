"""PostgreSQL reads awaited on an event loop (mailsrv.core.on_loop), driven through libpq directly,
those asked for in one turn of the loop sent together in one pipeline.

A quick SOAP call's login is one read; psycopg's AsyncCursor.execute spent about as much CPU around
that read as the read's own round trip (its async lock, a cursor and a transformer per execute, the
query converted and the prepared statements looked up, a generator stepped through
`wait_async`'s futures and readiness callbacks). Here the same protocol is spoken with
psycopg's own libpq binding and adapters: the statement prepared once per connection, its
parameters dumped by one transformer kept with the connection, sent and flushed, the socket
watched on the loop until the reply is in, its rows loaded by psycopg's loaders (the same Python
values as a cursor's). Errors are psycopg's: a dropped connection raises OperationalError, which
mailsrv.store.db reconnects on, as before.

Under load, the quick SOAP calls and mail sessions of one loop ask for their reads in the same turn
(three a turn on average, one to eight, with 8 SOAP clients): each read sent on its own cost a send
that wakes a server process, and a wake-up for its reply, ~15 % of a GetEdition's CPU on
PostgreSQL. A connection stays in libpq's pipeline mode, and a turn's reads go out in one send;
their replies come back together, ended by one Sync. Between two Syncs the statements are one
implicit transaction, but under READ COMMITTED (PostgreSQL's default, which these connections
keep) each still reads its own snapshot. A statement's error aborts the ones after it up to the
Sync: those are sent again, once, in a pipeline of their own.
"""
from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors, pq
from psycopg.adapt import Transformer

from mailsrv.store.pg_wire import ABORTED, FATAL, Key, Rows, Statements, expect_sync, loaded_rows, take_ready
# What a read raises when its connection failed: the caller sends it again on a new one.
OperationalError = psycopg.OperationalError


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


@dataclass(frozen=True)
class Read:
    """One read asked for: `sql` (pyformat, as SQLAlchemy compiles it) with `params`, its rows or
    its error set on `answer`."""
    sql: str
    params: Mapping[str, Any]
    answer: asyncio.Future[Rows]

    def settle(self, rows: Rows | None = None, error: BaseException | None = None) -> None:
        # A reader whose call was cancelled has cancelled its future: the pipeline goes on without it.
        if not self.answer.done():
            if error is None:
                self.answer.set_result(rows)  # type: ignore[arg-type]
            else:
                self.answer.set_exception(error)


class LoopConnection:
    """One autocommit connection in pipeline mode whose reads are awaited on the loop that opened it,
    one pipeline at a time (mailsrv.store.db's slots see to that)."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn  # kept for its adapters, and so that nothing else closes the socket
        self._pgconn = conn.pgconn
        self._encoding = conn.info.encoding
        self._loop = asyncio.get_running_loop()
        self._transformer = Transformer(conn)
        self._statements = Statements(self._pgconn, self._transformer)
        self._waiting: asyncio.Future[None] | None = None
        self._pgconn.enter_pipeline_mode()
        # Watched for as long as it is open: adding and removing the watch for each read cost
        # two epoll_ctl calls a read. What arrives between reads (a notice, the server's goodbye)
        # is consumed; a connection found broken is no longer watched, and its next read fails.
        self._fd = self._pgconn.socket
        self._loop.add_reader(self._fd, self._readable)

    @classmethod
    async def connect(cls, *args: Any, **kwargs: Any) -> LoopConnection:
        return cls(await psycopg.AsyncConnection.connect(*args, autocommit=True, **kwargs))

    def close(self) -> None:
        """Close from any thread (Store.close) without awaiting. The watch goes first (the socket's
        number may be reused as soon as it is closed), removed by the loop's own thread while that
        loop runs."""
        if self._loop.is_running() and _running_loop() is not self._loop:
            self._loop.call_soon_threadsafe(self.close)
            return
        if not self._loop.is_closed():
            self._unwatch()
        self._pgconn.finish()

    def _unwatch(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            self._fd = -1

    async def read(self, reads: list[Read], again: bool = True) -> None:
        """Answer each of `reads`, sent in one pipeline. Raises OperationalError if the connection
        fails (the reads not yet answered are then the caller's to send again)."""
        pgconn = self._pgconn
        sent: list[tuple[Read, Key | None]] = []
        for read in reads:
            try:
                sent.append((read, self._statements.send(read.sql, read.params)))
            except OperationalError:
                raise
            except Exception as error:  # a value psycopg cannot send: that read's error, nothing of it sent
                read.settle(error=error)
        pgconn.pipeline_sync()
        while pgconn.flush():  # a send larger than the socket's buffer
            self._loop.add_writer(self._fd, self._writable)
            try:
                await self._await()
            finally:
                self._loop.remove_writer(self._fd)
        aborted: list[Read] = []
        for read, preparing in sent:
            results = await self._results() if preparing is None else [*await self._results(), *await self._results()]
            result = self._statements.answer(preparing, results)
            if result.status == FATAL:
                exception = errors.error_from_result(result, encoding=self._encoding)
                if isinstance(exception, OperationalError):  # the connection's (a server shutting down), not the read's
                    raise exception
                read.settle(error=exception)
            elif result.status == ABORTED:
                aborted.append(read)
            else:
                read.settle(loaded_rows(self._transformer, result))
        expect_sync(await self._next())
        if aborted and again:
            await self.read(aborted, again=False)
        else:
            for read in aborted:
                read.settle(error=errors.PipelineAborted("aborted by an earlier statement's error"))

    async def _results(self) -> list[pq.abc.PGresult]:
        """The results of the pipeline's next statement."""
        results = await self._next()
        if not results:
            raise psycopg.OperationalError(self._pgconn.get_error_message(self._encoding))
        return results

    async def _next(self) -> list[pq.abc.PGresult]:
        """The pipeline's next results: a statement's (up to the None that ends them), or a Sync."""
        results: list[pq.abc.PGresult] = []
        while not take_ready(self._pgconn, results):
            await self._await()
        return results

    async def _await(self) -> None:
        """Until the socket's watch says it is done (the reply is in, or it can be written)."""
        if self._fd < 0:
            raise psycopg.OperationalError("the connection was found broken")
        self._waiting = self._loop.create_future()
        try:
            await self._waiting
        finally:
            self._waiting = None

    def _readable(self) -> None:
        waiting = self._waiting
        try:
            self._pgconn.consume_input()
        except psycopg.OperationalError as error:
            self._unwatch()
            if waiting is not None and not waiting.done():
                waiting.set_exception(error)
            return
        if waiting is not None and not waiting.done() and not self._pgconn.is_busy():
            waiting.set_result(None)

    def _writable(self) -> None:
        waiting = self._waiting
        if waiting is not None and not waiting.done():
            waiting.set_result(None)
