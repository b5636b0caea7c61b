"""Per-destination queues: a backlog for one slow or dead destination must not take the claims and
connection slots of the others (docs/architecture.md, "Per-destination queues").

A destination here is the recipient's domain (`spool_recipients.domain`, set at acceptance), not
the route's destination of mailsrv.mta.routing: the route is only known by asking the routers at
delivery time, which a claim in SQL cannot do. Two domains sent through one gateway are therefore
two destinations to the queue (remote delivery still shares the gateway's connection limit).

- Fair claims (`fair_due`): a claim takes due recipients oldest first, but at most
  `per_destination` of one domain in flight at once, counting the rows any node holds under a
  lease. Nodes claiming at the same moment do not see each other's uncommitted claims, so with N
  nodes a destination may briefly have up to N × per_destination in flight.
- Dead destinations (`pause`, Postfix's dead-destination marking): when an attempt finds no host
  of a domain reachable (connection refused or timed out on every hop), that recipient's retry
  delay applies to every other due, unclaimed recipient of the domain too: they are deferred
  (not failed, their attempts not counted) without being attempted each one.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import ColumnElement, Select, func, or_, select, update
from sqlalchemy.orm import Session

from mailsrv.store.models import SpoolRecipient


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


def fair_due(due: ColumnElement[bool], per_destination: int, now: dt.datetime, limit: int) -> Select[tuple[int]]:
    """The ids of the recipients matching `due` that keep each domain within `per_destination` in
    flight: the domain's oldest first, minus those it already has under a live lease; the `limit`
    oldest of them. Read without locks: the claim then locks those still free (a separate statement,
    as PostgreSQL plans a window inside `IN (…) FOR UPDATE` badly).

    A domain already at its cap is left out before the ranking, so a backlog behind a destination
    that hangs costs a claim nothing (the leased rows are found through their own index)."""
    leased = (select(SpoolRecipient.domain, func.count().label("busy"))
              .where(SpoolRecipient.claimed_until >= now, SpoolRecipient.status.in_(("pending", "deferred")))
              .group_by(SpoolRecipient.domain))
    in_flight = leased.subquery()
    full = select(in_flight.c.domain).where(in_flight.c.busy >= per_destination)
    ranked = (select(SpoolRecipient.id, SpoolRecipient.next_attempt_at,
                     func.row_number().over(partition_by=SpoolRecipient.domain,
                                            order_by=(SpoolRecipient.next_attempt_at, SpoolRecipient.id)).label("rank"),
                     func.coalesce(in_flight.c.busy, 0).label("busy"))
              .outerjoin(in_flight, in_flight.c.domain == SpoolRecipient.domain)
              .where(due, SpoolRecipient.domain.not_in(full)).subquery())
    return (select(ranked.c.id).where(ranked.c.rank + ranked.c.busy <= per_destination)
            .order_by(ranked.c.next_attempt_at, ranked.c.id).limit(limit))


def pause(s: Session, domain: str, until: dt.datetime, error: str, now: dt.datetime) -> int:
    """Defer the open remote recipients of `domain` due before `until` and not under a live lease
    to `until`, with `error` as their last error; how many.

    Rows locked right now (another node claiming them, or pausing the same domain) are skipped:
    two nodes finding a destination dead at once must not wait on each other's rows (deadlock)."""
    waiting = (select(SpoolRecipient.id).where(
        SpoolRecipient.domain == domain, SpoolRecipient.kind == "remote",
        SpoolRecipient.status.in_(("pending", "deferred")), SpoolRecipient.next_attempt_at < until,
        or_(SpoolRecipient.claimed_until.is_(None), SpoolRecipient.claimed_until < now))
        .with_for_update(skip_locked=True))
    return s.execute(update(SpoolRecipient).where(SpoolRecipient.id.in_(waiting.scalar_subquery()))
                     .values(status="deferred", next_attempt_at=until, last_error=error)).rowcount


__all__ = ["domain_of", "fair_due", "pause"]
