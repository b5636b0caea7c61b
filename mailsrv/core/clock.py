"""The time the mail engine runs on, injectable so that schedules can be tested in seconds.

Everything that stamps or schedules spool work (received_at, next_attempt_at, leases, the counter
day) asks a Clock; tests hand in a ManualClock and move it forward instead of waiting.
"""
from __future__ import annotations

import datetime as dt
import threading
from typing import Protocol


def as_utc(value: dt.datetime) -> dt.datetime:
    """`value` as aware UTC; a naive one is taken to be UTC already (an engine caller's date)."""
    return value.astimezone(dt.timezone.utc) if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)


class ManualClock:
    """A clock that moves only when told to; safe to read from the delivery threads."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._now = start or dt.datetime.now(dt.timezone.utc)
        self._lock = threading.Lock()

    def now(self) -> dt.datetime:
        with self._lock:
            return self._now

    def advance(self, delta: dt.timedelta) -> None:
        with self._lock:
            self._now += delta
