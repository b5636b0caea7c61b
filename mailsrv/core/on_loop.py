"""Synchronous code run on the event loop's thread, waiting on the loop for what it awaits.

A quick SOAP call (services.asmx.access) is a plain function whose only I/O is a database read or
two (mailsrv.store.db.Store.fetch). Handing it to a worker thread and back costs as much CPU as the
rest of the call; running it on the loop as it is would stall every other connection during each
read's round trip to PostgreSQL. `run` runs it in a greenlet on the loop's thread instead, and
`wait`, called from inside it, hands the loop an awaitable (the read, sent on an asyncio
connection) and resumes the function with its outcome once the loop has it, other requests served
meanwhile. The same scheme as SQLAlchemy's asyncio extension, kept to what the reads need.
"""
from __future__ import annotations

import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from greenlet import getcurrent, greenlet

T = TypeVar("T")


@dataclass(frozen=True)
class _Finished:
    """What a function run by `run` ended with: its value, or the exception it raised."""
    value: Any = None
    error: BaseException | None = None


class _Runner(greenlet):
    """Runs one function after another for `run`, on the thread that made it; its parent is that
    thread's own greenlet (the loop's), which awaits for it. Kept for the next function when one
    ends: a new greenlet costs ~6 us (its stack is mapped and unmapped), about what a quick SQLite
    call's login read costs."""

    def __init__(self) -> None:
        super().__init__(self._serve, getcurrent())

    def _serve(self, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
        while True:
            try:
                finished = _Finished(function(*args))
            except BaseException as error:  # handed to `run`'s caller, as if raised there
                finished = _Finished(error=error)
            function, args = self.parent.switch(finished)


_idle = threading.local()


async def run(function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` on this thread; each `wait` inside it is awaited here."""
    runners: list[_Runner] = _idle.__dict__.setdefault("runners", [])
    runner = runners.pop() if runners else _Runner()
    # The loop task's context variables, as if the function were called in the task itself.
    runner.gr_context = getcurrent().gr_context
    outcome = runner.switch(function, args)
    while not isinstance(outcome, _Finished):
        try:
            value = await outcome
        except BaseException:  # the awaitable's exception (or a cancellation) is raised inside `function`
            outcome = runner.throw(*sys.exc_info())
        else:
            outcome = runner.switch(value)
    runners.append(runner)
    if outcome.error is not None:
        raise outcome.error
    return outcome.value


def active() -> bool:
    """Whether the caller runs under `run`, so that `wait` may be called."""
    return isinstance(getcurrent(), _Runner)


def wait(awaitable: Awaitable[T]) -> T:
    """The outcome of `awaitable`, awaited on the loop by `run` (only under `run`)."""
    current = getcurrent()
    if not isinstance(current, _Runner):
        raise RuntimeError("on_loop.wait outside on_loop.run")
    return current.parent.switch(awaitable)
