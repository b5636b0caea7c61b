"""Traffic counters: per domain, per user, per UTC day.

Events add to their day's rows with one atomic upsert (`x = x + n`) inside the caller's
transaction, so the count commits or rolls back with the events that caused it and two nodes adding
to the same row never lose an increment."""
from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

from sqlalchemy import Insert, bindparam
from sqlalchemy.dialects import postgresql, sqlite

from mailsrv.store.db import Transaction, dialect_of, execute_many
from mailsrv.store.models import TrafficDaily

_COLUMNS = ("messages_received", "messages_sent", "bytes_received", "bytes_sent")


@dataclass(frozen=True)
class TrafficEvent:
    domain_id: int
    user_id: int  # 0: traffic of the domain not owned by one user
    day: dt.date
    messages_received: int = 0
    messages_sent: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0


def record(s: Transaction, *events: TrafficEvent) -> None:
    """Add the events to their rows: summed per (domain, user, day), one upsert per row in one
    executemany (mailsrv.store.db.execute_many: every group commit of accepted mail runs it).

    The rows go in key order so that two transactions adding to the same rows (two nodes finishing
    batches at once) lock them in the same order: one waits for the other instead of deadlocking."""
    totals: dict[tuple[int, int, dt.date], dict[str, int]] = {}
    for event in events:
        row = totals.setdefault((event.domain_id, event.user_id, event.day), dict.fromkeys(_COLUMNS, 0))
        for name in _COLUMNS:
            row[name] += getattr(event, name)
    if totals:
        execute_many(s, _upsert(dialect_of(s).name),
                     [{"domain_id": domain_id, "user_id": user_id, "day": day, **values}
                      for (domain_id, user_id, day), values in sorted(totals.items())])


@functools.cache
def _upsert(dialect: str) -> Insert:
    """One row's `x = x + n` upsert, in the dialect's ON CONFLICT syntax."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(TrafficDaily).values({name: bindparam(name) for name in ("domain_id", "user_id", "day", *_COLUMNS)})
    return statement.on_conflict_do_update(
        index_elements=[TrafficDaily.domain_id, TrafficDaily.user_id, TrafficDaily.day],
        set_={name: getattr(TrafficDaily, name) + getattr(statement.excluded, name) for name in _COLUMNS})
