"""Traffic counters: per domain, per user, per UTC day.

An event adds to its day's row with one atomic upsert (`x = x + n`) inside the caller's
transaction, so the count commits or rolls back with the event that caused it and two nodes adding
to the same row never lose an increment."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

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


def record(s: Session, event: TrafficEvent) -> None:
    dialect = s.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    values = {name: getattr(event, name) for name in _COLUMNS}
    statement = insert(TrafficDaily).values(domain_id=event.domain_id, user_id=event.user_id, day=event.day, **values)
    statement = statement.on_conflict_do_update(
        index_elements=[TrafficDaily.domain_id, TrafficDaily.user_id, TrafficDaily.day],
        set_={name: getattr(TrafficDaily, name) + getattr(statement.excluded, name) for name in _COLUMNS})
    s.execute(statement)
