"""PostgreSQL reads awaited on an event loop (mailsrv.core.on_loop), driven through libpq directly.

A quick SOAP call's login is one read; psycopg's AsyncCursor.execute spent about as much CPU around
that read as the read's own round trip (its async lock, a cursor and a transformer per execute, the
query converted and the prepared statements looked up, a generator stepped through
`wait_async`'s futures and readiness callbacks). Here the same protocol is spoken with
psycopg's own libpq binding and adapters: the statement prepared once per connection, its
parameters dumped by one transformer kept with the connection, sent and flushed, the socket
watched on the loop until the reply is in, its rows loaded by psycopg's loaders (the same Python
values as a cursor's). Errors are psycopg's: a dropped connection raises OperationalError, which
mailsrv.store.db reconnects on, as before.
"""
from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import errors, pq
from psycopg.adapt import PyFormat, Transformer

from mailsrv.core import on_loop

# SQLAlchemy's psycopg dialect writes parameters as %(name)s and a literal % as %%.
_PLACEHOLDER = re.compile(rb"%%|%\(([^)]+)\)s")
_FATAL = pq.ExecStatus.FATAL_ERROR


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


@functools.cache
def _numbered(sql: str) -> tuple[bytes, tuple[str, ...], list[PyFormat]]:
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


class LoopConnection:
    """One autocommit connection whose reads are awaited on the loop that opened it (under
    on_loop.run), one at a time (mailsrv.store.db's slots see to that)."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn  # kept for its adapters, and so that nothing else closes the socket
        self._pgconn = conn.pgconn
        self._encoding = conn.info.encoding
        self._loop = asyncio.get_running_loop()
        self._transformer = Transformer(conn)
        self._statements: dict[tuple[bytes, tuple[int, ...]], bytes] = {}
        self._waiting: asyncio.Future[None] | None = None
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

    def fetch(self, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """The rows of `sql` (pyformat, as SQLAlchemy compiles it) with `params`."""
        query, names, chosen = _numbered(sql)
        transformer = self._transformer
        values = transformer.dump_sequence([params[name] for name in names], chosen)
        types, formats = transformer.types, transformer.formats
        key = (query, types)
        statement = self._statements.get(key)
        if statement is None:
            # Per parameter types, as psycopg keys them: a None is sent untyped.
            statement = b"mailsrv_%d" % len(self._statements)
            self._pgconn.send_prepare(statement, query, param_types=types)
            self._result()
            self._statements[key] = statement
        self._pgconn.send_query_prepared(statement, values, param_formats=formats)
        result = self._result()
        transformer.set_pgresult(result)
        return transformer.load_rows(0, result.ntuples, tuple)

    def _result(self) -> pq.abc.PGresult:
        """The one result of what was just sent, once the server has answered it all."""
        pgconn = self._pgconn
        while pgconn.flush():  # a send larger than the socket's buffer
            self._loop.add_writer(self._fd, self._writable)
            try:
                self._await()
            finally:
                self._loop.remove_writer(self._fd)
        results = []
        while True:
            if pgconn.is_busy():
                self._await()
            result = pgconn.get_result()
            if result is None:
                break
            results.append(result)
        for result in results:
            if result.status == _FATAL:
                raise errors.error_from_result(result, encoding=self._encoding)
        if not results:
            raise psycopg.OperationalError(pgconn.get_error_message(self._encoding))
        return results[-1]

    def _await(self) -> None:
        """Until the socket's watch says it is done (the reply is in, or it can be written)."""
        self._waiting = self._loop.create_future()
        try:
            on_loop.wait(self._waiting)
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
