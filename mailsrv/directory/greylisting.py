"""Greylisting's stored state: the filters that exempt client addresses (svcServerAdmin's
Add/Delete/ListGreylistingFilter(s)) and the triplets every node shares.

A triplet is (client network: the /24 of an IPv4 client, the /64 of an IPv6 one; envelope sender;
recipient), lower-case. Its first message is deferred; a retry at least `delay` later and within
`retry_window` after that passes it, and it then passes without delay for `pass_lifetime`. A
retry too late starts the triplet over. Nodes share the triplets in the store (first insert wins,
`ON CONFLICT DO NOTHING`), so a retry that reaches another node passes there too.

Filters are addresses, CIDR blocks or ranges (never overlapping, so one bisection answers), kept in
a per-process snapshot under the directory generation; a country filter is refused (no GeoIP data).
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import threading
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from mailsrv.core.actor import Actor
from mailsrv.core.config import GreylistingConfig
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.directory.address_lists import IpSet, client_address, parse_span
from mailsrv.store.db import Store
from mailsrv.store.models import GreylistFilter, GreylistTriplet, directory_generation

IP, RANGE = "IP", "Range"


@dataclass(frozen=True)
class FilterView:
    filter_type: str  # IP (an address or CIDR block) or Range
    ip_address: str
    range_start: str
    range_end: str
    description: str


def network_of(ip: str) -> str:
    """The client network a triplet is keyed on: /24 for IPv4, /64 for IPv6."""
    address = client_address(ip)
    if address is None:
        return ip
    return str(ipaddress.ip_network(f"{address}/{24 if address.version == 4 else 64}", strict=False))


class Greylisting:
    def __init__(self, store: Store, config: GreylistingConfig) -> None:
        self.store = store
        self.enabled = config.enabled
        self.delay = dt.timedelta(seconds=config.delay_seconds)
        self.retry_window = dt.timedelta(seconds=config.retry_window_seconds)
        self.pass_lifetime = dt.timedelta(seconds=config.pass_lifetime_seconds)
        self._generation: int | None = None
        self._filters = IpSet(())
        self._lock = threading.Lock()

    # -- filters -------------------------------------------------------------------------------

    def add_filter(self, actor: Actor, filter_type: str | None, range_start: str | None, range_end: str | None,
                   ip_address: str | None, description: str | None, country: str | None) -> None:
        actor.require_system()
        _refuse_country(filter_type, country)
        span = parse_span(ip_address, range_start, range_end)
        with self.store.session() as s:
            for row in s.execute(select(GreylistFilter)).scalars():
                other = parse_span(row.ip_address, row.range_start, row.range_end)
                if (other.first, other.last) == (span.first, span.last):
                    raise MailsrvError(ResultCode.NAME_IN_USE, f"{span} is already a greylisting filter.")
                if other.overlaps(span):
                    raise MailsrvError(ResultCode.ADDRESS_LIST_OVERLAP,
                                       f"{span} overlaps the greylisting filter {other}.")
            s.add(GreylistFilter(ip_address=span.ip_address, range_start=span.range_start, range_end=span.range_end,
                                 first=str(span.first), last=str(span.last),
                                 description=(description or "").strip()[:1000]))

    def delete_filter(self, actor: Actor, filter_type: str | None, range_start: str | None, range_end: str | None,
                      ip_address: str | None, country: str | None) -> None:
        actor.require_system()
        _refuse_country(filter_type, country)
        span = parse_span(ip_address, range_start, range_end)
        with self.store.session() as s:
            if s.execute(delete(GreylistFilter).where(GreylistFilter.first == str(span.first),
                                                      GreylistFilter.last == str(span.last))).rowcount == 0:
                raise MailsrvError(ResultCode.ITEM_NOT_FOUND, f"{span} is not a greylisting filter.")

    def filters(self, actor: Actor) -> list[FilterView]:
        actor.require_system()
        with self.store.reading() as s:
            return [FilterView(RANGE if f.range_start else IP, f.ip_address, f.range_start, f.range_end, f.description)
                    for f in s.execute(select(GreylistFilter).order_by(GreylistFilter.id)).scalars()]

    def filtered(self, ip: str) -> bool:
        """Whether the filters as last read (`filters_at`) exempt `ip`; never blocks."""
        return client_address(ip) in self._filters

    @property
    def filters_generation(self) -> int | None:
        return self._generation

    def filters_at(self, generation: int) -> None:
        """Read the filters again if they were read under another generation (blocking)."""
        if generation == self._generation:
            return
        with self.store.read_connection() as conn:
            fresh = directory_generation(conn)
            rows = conn.execute(select(GreylistFilter.first, GreylistFilter.last)).all()
        spans = IpSet((ipaddress.ip_address(first), ipaddress.ip_address(last)) for first, last in rows)
        with self._lock:
            self._generation, self._filters = fresh, spans

    # -- triplets ------------------------------------------------------------------------------

    def judge(self, ip: str, sender: str, recipient: str, now: dt.datetime) -> dt.datetime | None:
        """Until when the triplet passes (this RCPT included), or None: defer it (blocking, one
        transaction)."""
        key = {"network": network_of(ip), "sender": sender.lower()[:320], "recipient": recipient.lower()[:320]}
        with self.store.session() as s:
            row = s.get(GreylistTriplet, (key["network"], key["sender"], key["recipient"]), with_for_update=True)
            if row is None:
                insert = postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert
                s.execute(insert(GreylistTriplet).values(**key, first_seen=now, passed_until=None)
                          .on_conflict_do_nothing())
                return None
            if row.passed_until is not None and row.passed_until > now:
                return row.passed_until
            waited = now - row.first_seen
            if row.passed_until is not None or waited > self.delay + self.retry_window:
                row.first_seen, row.passed_until = now, None  # too late, or its pass ran out: start over
                return None
            if waited < self.delay:
                return None
            row.passed_until = now + self.pass_lifetime
            return row.passed_until


def _refuse_country(filter_type: str | None, country: str | None) -> None:
    if (country or "").strip() or (filter_type or "").strip().lower() == "country":
        raise MailsrvError(ResultCode.GREYLIST_FILTER_UNSUPPORTED,
                           "Country greylisting filters are not supported (this server has no GeoIP data); "
                           "give an IP address, a CIDR block or a range.")
