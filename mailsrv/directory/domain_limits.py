"""The billed limits of a domain: its disk quota, and hourly the messages and bytes its users send
and the bounces it receives.

The disk quota (`maxsize`, KB) is the bytes under the domain's directory, as the statistics count
them (mailsrv.mailstore.disk_usage); SMTP asks at RCPT and DATA, IMAP at APPEND (`disk_quota_refusal`).

Each hourly limit is a domain setting with its `…enabled` flag (mailsrv.core.settings.DOMAIN); it applies
when enabled with a value above 0. What counts, per UTC hour:
- `maxmessagesperhour`: every message the domain's authenticated users send (SMTP AUTH or the web
  interface), once per message however many recipients, local or remote: what the statistics
  count as MessagesSent. SmarterMail calls it "Outgoing Messages per Hour", messages sent from
  the domain;
- `maxsmtpoutbandwidthperhour` (MB): the bytes of those messages (BytesSent);
- `maxbouncesreceivedperhour`: messages with the null sender (MAIL FROM:<>, i.e. delivery status
  notifications) accepted for the domain's addresses, once per message and domain.
Usage is kept in hourly buckets in the store (`DomainHourlyUsage`), so every node counts into the
same rows. The SMTP commands check the bucket before DATA (a refusal there costs the client no
upload), and the spool's group commit `charge`s the message in the transaction that accepts it:
the bucket rows are locked, and a message that would cross a cap is refused and adds nothing, so
two nodes can never both take the last slot. Only an enabled limit is counted or read: a domain
without limits costs neither a query nor a row.
"""
from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, delete, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailsrv.core import settings
from mailsrv.mailstore.disk_usage import used_bytes
from mailsrv.store.models import DomainHourlyUsage

# Buckets older than this are deleted when the domain is charged again: only the current hour is read.
KEEP_HOURS = 48


def _size(limit_bytes: int) -> str:
    return f"{limit_bytes // settings.MB} MB" if limit_bytes % settings.MB == 0 else f"{limit_bytes // 1024} KB"


def disk_quota_bytes(values: Mapping[str, Any]) -> int:
    """The domain's disk quota in bytes from its settings (`maxsize` KB), 0 for none."""
    return int(settings.value(settings.DOMAIN, values, "maxsize")) * 1024


def disk_quota_refusal(name: str, path: str | Path, quota_bytes: int, incoming: int) -> str | None:
    """Why `incoming` more bytes do not fit the domain's disk quota; None when they do or it has
    none. Blocking: it walks the domain's directories (only when there is a quota)."""
    if quota_bytes and used_bytes(path) + incoming > quota_bytes:
        return f"Domain {name} is over its disk quota ({_size(quota_bytes)})"
    return None


class Limit(enum.Enum):
    """A limit a message may cross, as its refusal names it."""
    MESSAGES = "message limit per hour"
    BANDWIDTH = "outgoing bandwidth limit per hour"
    BOUNCES = "limit of bounces received per hour"


@dataclass(frozen=True)
class HourlyCaps:
    """A domain's enabled hourly caps; 0 where a limit is off."""
    messages: int = 0
    bytes_sent: int = 0
    bounces: int = 0

    def describe(self, limit: Limit) -> str:
        if limit is Limit.BANDWIDTH:
            return _size(self.bytes_sent)
        return str(self.messages if limit is Limit.MESSAGES else self.bounces)


NO_CAPS = HourlyCaps()


def hourly_caps(values: Mapping[str, Any]) -> HourlyCaps:
    """The caps a domain's settings enable."""
    def cap(key: str, factor: int = 1) -> int:
        enabled = settings.value(settings.DOMAIN, values, key + "enabled")
        return settings.value(settings.DOMAIN, values, key) * factor if enabled else 0
    return HourlyCaps(cap("maxmessagesperhour"), cap("maxsmtpoutbandwidthperhour", settings.MB),
                      cap("maxbouncesreceivedperhour"))


@dataclass(frozen=True)
class Usage:
    messages_sent: int = 0
    bytes_sent: int = 0
    bounces_received: int = 0


@dataclass(frozen=True)
class Charge:
    """What accepting one message adds to one domain's hour."""
    domain: str
    domain_id: int
    caps: HourlyCaps
    messages_sent: int = 0
    bytes_sent: int = 0
    bounces_received: int = 0

    def crossed(self, used: Usage) -> Limit | None:
        """The cap this charge would take `used` over, if any (the pure rule of every check)."""
        caps = self.caps
        if caps.messages and self.messages_sent and used.messages_sent + self.messages_sent > caps.messages:
            return Limit.MESSAGES
        if caps.bytes_sent and self.bytes_sent and used.bytes_sent + self.bytes_sent > caps.bytes_sent:
            return Limit.BANDWIDTH
        if caps.bounces and self.bounces_received and used.bounces_received + self.bounces_received > caps.bounces:
            return Limit.BOUNCES
        return None

    def added_to(self, used: Usage) -> Usage:
        return Usage(used.messages_sent + self.messages_sent, used.bytes_sent + self.bytes_sent,
                     used.bounces_received + self.bounces_received)


class LimitReached(Exception):
    """A message refused at commit because it would cross `charge`'s domain's `limit`."""

    def __init__(self, charge: Charge, limit: Limit) -> None:
        super().__init__(f"{charge.domain} has reached its {limit.value} ({charge.caps.describe(limit)})")
        self.charge = charge
        self.limit = limit


def hour_of(moment: dt.datetime) -> int:
    """The bucket of `moment`: whole hours since the Unix epoch, UTC."""
    return int(moment.timestamp()) // 3600


_COLUMNS = ("messages_sent", "bytes_sent", "bounces_received")
_USAGE = select(DomainHourlyUsage.messages_sent, DomainHourlyUsage.bytes_sent, DomainHourlyUsage.bounces_received)


def usage(conn: Connection | Session, domain_id: int, hour: int) -> Usage:
    """What the domain has used of the hour so far (for the checks before DATA)."""
    row = conn.execute(_USAGE.where(DomainHourlyUsage.domain_id == domain_id, DomainHourlyUsage.hour == hour)).first()
    return Usage(*row) if row else Usage()


def charge(s: Session, messages: Sequence[tuple[str, int, Sequence[Charge]]]) -> dict[str, LimitReached]:
    """Charge (message id, hour, charges) in order, in the caller's transaction; the messages refused
    because one of their charges would cross a cap (they add nothing).

    The bucket rows are created if missing and locked in key order (PostgreSQL: FOR UPDATE; SQLite's
    writer holds the whole database), so concurrent commits on any node are serialised on them and
    never deadlock: the spool locks them before any other row of its transaction."""
    keys = sorted({(c.domain_id, hour) for _, hour, charges in messages for c in charges})
    if not keys:
        return {}
    insert = postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert
    s.execute(insert(DomainHourlyUsage).values(
        [{"domain_id": d, "hour": h, **dict.fromkeys(_COLUMNS, 0)} for d, h in keys]).on_conflict_do_nothing())
    key = tuple_(DomainHourlyUsage.domain_id, DomainHourlyUsage.hour)
    rows = s.execute(select(DomainHourlyUsage.domain_id, DomainHourlyUsage.hour, *_USAGE.selected_columns)
                     .where(key.in_(keys)).order_by(DomainHourlyUsage.domain_id, DomainHourlyUsage.hour)
                     .with_for_update()).all()
    used = {(d, h): Usage(m, b, n) for d, h, m, b, n in rows}
    before = dict(used)
    refused: dict[str, LimitReached] = {}
    for message_id, hour, charges in messages:
        for c in charges:
            limit = c.crossed(used[(c.domain_id, hour)])
            if limit is not None:
                refused[message_id] = LimitReached(c, limit)
                break
        else:
            for c in charges:
                used[(c.domain_id, hour)] = c.added_to(used[(c.domain_id, hour)])
    for (domain_id, hour), now in used.items():
        if now != before[(domain_id, hour)]:
            s.execute(DomainHourlyUsage.__table__.update()
                      .where(DomainHourlyUsage.domain_id == domain_id, DomainHourlyUsage.hour == hour)
                      .values(messages_sent=now.messages_sent, bytes_sent=now.bytes_sent,
                              bounces_received=now.bounces_received))
    oldest = min(hour for _, hour in keys) - KEEP_HOURS
    s.execute(delete(DomainHourlyUsage).where(DomainHourlyUsage.domain_id.in_({d for d, _ in keys}),
                                              DomainHourlyUsage.hour < oldest))
    return refused
