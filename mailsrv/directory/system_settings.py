"""Server-wide mail engine settings (SmarterMail's General Settings), one ServerSetting row per key.

Typed like mailsrv.core.settings so that the SOAP operations that will expose them (Get/SetRequested…
of svcServerAdmin) parse and format them the same way the engine reads them:

- `retryminutes`: the delivery retry schedule, minutes between attempts, e.g. "10,10,10,1440"
  (the seed's Backup MX advice; also our default). Attempt n+1 waits the n-th entry; when the
  attempt after the last entry fails too, the recipient fails for good and the sender gets a DSN.
- `bouncing`: Enabled (default: RFC 5321 §6.1 requires a failure notice for mail we accepted and
  could not deliver), RequireSPF (only to senders whose SPF check passed at acceptance, or who
  authenticated), Disabled.
- `autoresponders`: the same three values for auto-replies (read by mailsrv.mta.autoreply).

Stored under their own names (no prefix: "retryminutes", "bouncing", "autoresponders"). The values
are read from the store on each use, so a change made on any node applies to the next queue run
everywhere; there is no cache to go stale.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from mailsrv.core import settings
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.core.settings import SettingKey
from mailsrv.store.db import Store
from mailsrv.store.models import ServerSetting

ENABLED, REQUIRE_SPF, DISABLED = "Enabled", "RequireSPF", "Disabled"
_MAX_RETRY_MINUTES = 30 * 24 * 60  # a month: anything longer is a typo, not a schedule


class RetryMinutesKey(SettingKey):
    """A comma-separated list of 1-20 whole minutes, each 1 to a month; stored as "10,10,10,1440"."""

    def parse(self, raw: str | None, spelled: str) -> Any:
        parts = [part.strip() for part in (raw or "").split(",")]
        if not 1 <= len(parts) <= 20 or not all(p.isascii() and p.isdigit() and 1 <= int(p) <= _MAX_RETRY_MINUTES
                                                 for p in parts):
            raise MailsrvError(ResultCode.INVALID_SETTING,
                               f"Setting '{spelled}' must be 1-20 comma-separated minutes from 1 to {_MAX_RETRY_MINUTES}.")
        return ",".join(str(int(p)) for p in parts)


def _policy(name: str) -> SettingKey:
    return SettingKey(name, str, ENABLED, {ENABLED: ("enabled", "true"),
                                           REQUIRE_SPF: ("requirespf", "require spf", "spf"),
                                           DISABLED: ("disabled", "false")})


SYSTEM: dict[str, SettingKey] = {
    "retryminutes": RetryMinutesKey("retryminutes", str, "10,10,10,1440"),
    "bouncing": _policy("bouncing"),
    "autoresponders": _policy("autoresponders"),
}


@dataclass(frozen=True)
class RetrySchedule:
    delays: tuple[dt.timedelta, ...]

    @classmethod
    def parse(cls, text: str) -> RetrySchedule:
        return cls(tuple(dt.timedelta(minutes=int(m)) for m in text.split(",")))

    def delay(self, attempts: int) -> dt.timedelta | None:
        """The wait after `attempts` failed attempts; None when that was the last one."""
        return self.delays[attempts - 1] if 1 <= attempts <= len(self.delays) else None


# Built once and run on a bare connection: it is read at every DATA, where building it and the
# ORM execution path cost more than the query.
_READ = select(ServerSetting.key, ServerSetting.value).where(ServerSetting.key.in_(SYSTEM))


def read(conn: Connection) -> dict[str, Any]:
    """Every key's value inside the caller's transaction (e.g. the one recording a failure: pass
    its session's `connection()`)."""
    # .all(), not the Result itself: dict() would take a Result's keys() for a mapping's.
    stored = dict(conn.execute(_READ).all())
    return {name: stored.get(name, key.default) for name, key in SYSTEM.items()}


class SystemSettings:
    def __init__(self, store: Store) -> None:
        self.store = store

    def values(self) -> dict[str, Any]:
        # Read-only: on SQLite a writing transaction takes the write lock, and this is read at every
        # DATA (the SPF policy check), where it would queue behind the spool's group commits.
        with self.store.read_connection() as conn:
            return read(conn)

    def update(self, changes: Mapping[str, Any]) -> None:
        """Store already parsed values (see `parse_assignments`)."""
        unknown = set(changes) - set(SYSTEM)
        if unknown:
            raise MailsrvError(ResultCode.INVALID_SETTING, f"Unknown setting '{sorted(unknown)[0]}'.")
        with self.store.session() as s:
            for key, value in changes.items():
                s.merge(ServerSetting(key=key, value=value))

    def read_requested(self, requested: Iterable[str | None]) -> list[str]:
        return settings.read_requested(SYSTEM, self.values(), requested)

    def set_requested(self, assignments: Iterable[str | None]) -> None:
        self.update(settings.parse_assignments(SYSTEM, assignments))

    def retry_schedule(self) -> RetrySchedule:
        return RetrySchedule.parse(self.values()["retryminutes"])
