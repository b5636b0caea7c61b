"""Traffic statistics and domain counts, read from the daily counter table in one aggregate query.

Date ranges are whole UTC days, both ends included: a dateTime without a zone is read as UTC, and
only its date counts (README, "Statistics")."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import and_, func, select
from sqlalchemy.sql.elements import ColumnElement

from mailsrv.core.actor import Actor
from mailsrv.core.clock import as_utc
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.directory.domains import domain_for
from mailsrv.mailstore.disk_usage import used_bytes
from mailsrv.store.db import Store
from mailsrv.store.models import Alias, Domain, MailingList, TrafficDaily, User


@dataclass(frozen=True)
class Traffic:
    messages_received: int = 0
    messages_sent: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0
    bytes_size: int = 0


@dataclass(frozen=True)
class DomainTraffic:
    domain: str
    traffic: Traffic


@dataclass(frozen=True)
class DomainCounts:
    users: int
    mailing_lists: int
    aliases: int
    size: int


@dataclass(frozen=True)
class DayTraffic:
    day: dt.date
    traffic: Traffic


def day_range(start: dt.datetime | None, end: dt.datetime | None) -> tuple[dt.date, dt.date]:
    def utc_day(value: dt.datetime | None, fallback: dt.date) -> dt.date:
        if value is None:
            return fallback
        return as_utc(value).date()
    first, last = utc_day(start, dt.date.min), utc_day(end, dt.date.max)
    if first > last:
        raise MailsrvError(ResultCode.INVALID_ARGUMENT, "The start date is after the end date.")
    return first, last


def traffic_sums() -> list[ColumnElement[int]]:
    """The four summed counters, zero when no row falls in the window."""
    return [func.coalesce(func.sum(column), 0) for column in (
        TrafficDaily.messages_received, TrafficDaily.messages_sent,
        TrafficDaily.bytes_received, TrafficDaily.bytes_sent)]


class Stats:
    def __init__(self, store: Store) -> None:
        self.store = store

    def domain(self, actor: Actor, raw_domain: str | None, start: dt.datetime | None,
               end: dt.datetime | None) -> Traffic:
        first, last = day_range(start, end)
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_domain)
            sums = s.execute(select(*traffic_sums())
                             .where(TrafficDaily.domain_id == domain.id,
                                    TrafficDaily.day.between(first, last))).one()
            path = domain.path
        return Traffic(*map(int, sums), bytes_size=used_bytes(path))

    def daily(self, actor: Actor, raw_domain: str | None, user: str | None, start: dt.datetime | None,
              end: dt.datetime | None) -> list[DayTraffic]:
        """A domain's traffic (with `user`, that user's) by UTC day over the range, days without
        traffic left out: summed over the days it equals `domain` (`user_activity.traffic`)."""
        first, last = day_range(start, end)
        with self.store.reading() as s:
            domain = domain_for(s, actor, raw_domain)
            where = [TrafficDaily.domain_id == domain.id, TrafficDaily.day.between(first, last)]
            if user:
                user_id = s.execute(select(User.id).where(User.domain_id == domain.id,
                                                          User.name == user.strip().lower())).scalar()
                if user_id is None:
                    raise MailsrvError(ResultCode.USER_NOT_FOUND, f"The user {user}@{domain.name} does not exist.")
                where.append(TrafficDaily.user_id == user_id)
            rows = s.execute(select(TrafficDaily.day, *traffic_sums()).where(*where)
                             .group_by(TrafficDaily.day).order_by(TrafficDaily.day)).all()
        return [DayTraffic(day, Traffic(*map(int, sums))) for day, *sums in rows]

    def all_domains(self, actor: Actor, start: dt.datetime | None, end: dt.datetime | None) -> list[DomainTraffic]:
        actor.require_system()
        first, last = day_range(start, end)
        window = and_(TrafficDaily.domain_id == Domain.id, TrafficDaily.day.between(first, last))
        with self.store.session() as s:
            rows = s.execute(select(Domain.name, Domain.path, *traffic_sums())
                             .outerjoin(TrafficDaily, window).group_by(Domain.id, Domain.name, Domain.path)
                             .order_by(Domain.name)).all()
        return [DomainTraffic(name, Traffic(*map(int, sums), bytes_size=used_bytes(path)))
                for name, path, *sums in rows]

    def counts(self, actor: Actor, raw_domain: str | None) -> DomainCounts:
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_domain)
            users = s.execute(select(func.count(User.id)).where(User.domain_id == domain.id)).scalar_one()
            aliases = s.execute(select(func.count(Alias.id)).where(Alias.domain_id == domain.id)).scalar_one()
            lists = s.execute(select(func.count(MailingList.id)).where(MailingList.domain_id == domain.id)).scalar_one()
            path = domain.path
        return DomainCounts(users, lists, aliases, used_bytes(path))
