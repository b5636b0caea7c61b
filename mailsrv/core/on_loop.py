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
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from greenlet import getcurrent, greenlet

T = TypeVar("T")


class _OnLoop(greenlet):
    """A function run by `run`; its parent is the loop's own greenlet, which awaits for it."""

    def __init__(self, function: Callable[..., Any], parent: greenlet) -> None:
        super().__init__(function, parent)
        # The loop task's context variables, as if the function were called in the task itself.
        self.gr_context = parent.gr_context


async def run(function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` on this thread; each `wait` inside it is awaited here."""
    task = _OnLoop(function, getcurrent())
    result = task.switch(*args)
    while not task.dead:
        try:
            value = await result
        except BaseException:  # the awaitable's exception (or a cancellation) is raised inside `function`
            result = task.throw(*sys.exc_info())
        else:
            result = task.switch(value)
    return result


def active() -> bool:
    """Whether the caller runs under `run`, so that `wait` may be called."""
    return isinstance(getcurrent(), _OnLoop)


def wait(awaitable: Awaitable[T]) -> T:
    """The outcome of `awaitable`, awaited on the loop by `run` (only under `run`)."""
    current = getcurrent()
    if not isinstance(current, _OnLoop):
        raise RuntimeError("on_loop.wait outside on_loop.run")
    return current.parent.switch(awaitable)
