"""What mailbox users have used: mailbox quotas and sizes, traffic, last-login times and inactive
users (svcUserAdmin's GetUserQuotas, GetUserStats, GetInactiveUsers, GetLastLoginTimes).

Rights: a system administrator sees every domain's users, a domain administrator its own domain's.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from mailsrv.core import settings
from mailsrv.core.actor import Actor
from mailsrv.core.clock import as_utc
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.directory.domains import domain_for, get_domain
from mailsrv.directory.stats import Traffic, day_range, traffic_sums
from mailsrv.directory.user_access import admin_scope, get_user, managed_address, managed_user
from mailsrv.mailstore.disk import Disk
from mailsrv.mailstore.disk_usage import used_bytes
from mailsrv.store.db import Store
from mailsrv.store.models import Domain, TrafficDaily, User, UserLogin

UTC = dt.timezone.utc
# .NET's DateTime.MinValue (0001-01-01T00:00:00): what SmarterMail shows for "never logged in".
NEVER = dt.datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Quota:
    user: str
    max_bytes: int  # 0 = unlimited
    used_bytes: int


@dataclass(frozen=True)
class LastLogin:
    address: str
    at: dt.datetime  # NEVER when the user has not logged in


@dataclass(frozen=True)
class LoginTimes:
    by_protocol: list[tuple[str, dt.datetime]]
    by_user: list[LastLogin]


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), UTC)


def _login_window(start: dt.datetime | None, end: dt.datetime | None) -> list[ColumnElement[bool]]:
    """Logins inside whole UTC days from `start` to `end`, both included (as statistics count);
    None leaves that side open."""
    first, last = day_range(start, end)
    window = [UserLogin.at >= _midnight(first)] if first > dt.date.min else []
    if last < dt.date.max:
        window.append(UserLogin.at < _midnight(last + dt.timedelta(days=1)))
    return window


def _quota(domain_path: str, name: str, user_values: Mapping[str, Any], domain_values: Mapping[str, Any]) -> Quota:
    """The effective limit (the user's `maxsize`, else the domain's `maxmailboxsize`; 0 is
    unlimited) and the bytes in its Maildir."""
    return Quota(name, settings.mailbox_limit_bytes(user_values, domain_values),
                 used_bytes(Disk.maildir(domain_path, name)))


class UserActivity:
    def __init__(self, store: Store) -> None:
        self.store = store

    def quotas(self, actor: Actor, raw_domain: str | None) -> list[Quota]:
        """Every user's of a domain (GetUserQuotas)."""
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_domain)
            rows = s.execute(select(User.name, User.settings).where(User.domain_id == domain.id)
                             .order_by(User.name)).all()
            path, domain_settings = domain.path, domain.settings
        return [_quota(path, name, user_settings, domain_settings) for name, user_settings in rows]

    def own_quota(self, actor: Actor) -> Quota:
        """A mailbox user's own, read now (IMAP GETQUOTAROOT): what GetUserQuotas says of it.
        Blocking."""
        with self.store.session() as s:
            row = s.execute(select(User.name, User.settings, Domain.path, Domain.settings).join(Domain)
                            .where(Domain.name == actor.domain, User.name == actor.user)).one_or_none()
        if row is None:
            raise MailsrvError(ResultCode.USER_NOT_FOUND, f"The user {actor.login} does not exist.")
        name, user_settings, path, domain_settings = row
        return _quota(path, name, user_settings, domain_settings)

    def traffic(self, actor: Actor, raw_address: str | None, start: dt.datetime | None,
                end: dt.datetime | None) -> Traffic:
        """A user's traffic over whole UTC days from `start` to `end` (both included) and the size
        of its Maildir now."""
        first, last = day_range(start, end)
        with managed_user(self.store, actor, raw_address) as (s, user):
            sums = s.execute(select(*traffic_sums())
                             .where(TrafficDaily.domain_id == user.domain_id, TrafficDaily.user_id == user.id,
                                    TrafficDaily.day.between(first, last))).one()
            maildir = Disk.maildir(user.domain.path, user.name)
        return Traffic(*map(int, sums), bytes_size=used_bytes(maildir))

    def inactive(self, actor: Actor, since: dt.datetime) -> list[LastLogin]:
        """Users whose newest login (any protocol) is before `since`, or who never logged in (NEVER):
        every domain's for a system administrator, its own domain's for a domain administrator."""
        scope = admin_scope(actor)
        newest = (select(UserLogin.user_id, func.max(UserLogin.at).label("at"))
                  .group_by(UserLogin.user_id).subquery())
        query = (select(User.name, Domain.name, newest.c.at).join(Domain)
                 .outerjoin(newest, newest.c.user_id == User.id)
                 .where(or_(newest.c.at.is_(None), newest.c.at < as_utc(since)))
                 .order_by(Domain.name, User.name))
        if scope is not None:
            query = query.where(Domain.name == scope)
        with self.store.session() as s:
            rows = s.execute(query).all()
        return [LastLogin(f"{user}@{domain}", at or NEVER) for user, domain, at in rows]

    def login_times(self, actor: Actor, raw_target: str | None, start: dt.datetime | None,
                    end: dt.datetime | None) -> LoginTimes:
        """Logins inside whole UTC days from `start` to `end` (None: open) of one user (`raw_target`
        an address) or of every user of a domain (a bare domain name): the newest per protocol
        across them, and the newest per user (users without a login in the window are left out)."""
        target = (raw_target or "").strip()
        with self.store.session() as s:
            if "@" in target:
                name, domain_name = managed_address(actor, target)
                whose = User.id == get_user(s, get_domain(s, domain_name), name).id
            else:
                whose = User.domain_id == domain_for(s, actor, target).id
            rows = s.execute(select(User.name, Domain.name, UserLogin.protocol, UserLogin.at)
                             .join(User, User.id == UserLogin.user_id).join(Domain, Domain.id == User.domain_id)
                             .where(whose, *_login_window(start, end))).all()
        by_protocol: dict[str, dt.datetime] = {}
        by_user: dict[str, dt.datetime] = {}
        for user, domain, protocol, at in rows:
            address = f"{user}@{domain}"
            by_protocol[protocol] = max(at, by_protocol.get(protocol, at))
            by_user[address] = max(at, by_user.get(address, at))
        return LoginTimes(sorted(by_protocol.items()), [LastLogin(a, t) for a, t in sorted(by_user.items())])
