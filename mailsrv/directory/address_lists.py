"""The server's address lists (svcServerAdmin): who may connect, relay and send, where users may
forward, which domain names nobody may create.

IP lists (`IpListEntry`), each entry an address, a CIDR block or a range, IPv4 or IPv6:
- WHITELIST, per protocol (SMTP, POP, IMAP; XMPP is stored only; "disable greylisting" exempts
  from greylisting, mailsrv.mta.filtering.greylisting): an SMTP-whitelisted client may relay without AUTH, whatever the
  `relay` setting, and is exempt from the blacklist and the SMTP blocked senders; a POP- or
  IMAP-whitelisted one from that protocol's blacklist.
- BLACKLIST, per protocol: refused at connect (SMTP `554 5.7.1` instead of the greeting, POP
  `-ERR`, IMAP `* BYE`), then the connection is closed.
- SMTP_BYPASS (SMTP authentication bypass): may relay without AUTH (the outgoing-gateway setup).
SmarterMail's Set…Entry operations add or edit the entry with that address or range; with every
protocol false they remove it (there is no Delete…Entry in the contract). Entries of one list may
not overlap: an entry covering any address of another one of the same list is refused
(ADDRESS_LIST_OVERLAP, naming the other), so each client address has at most one entry per list
and the answer never depends on which entry is read first. The same span written in another
form (10.0.0.0/24 and 10.0.0.0-10.0.0.255) is the same entry.

Name lists (`NameListEntry`), lower-case:
- BLOCKED_SENDERS: an envelope sender address, or a whole domain (`@domain` or `domain`; not its
  subdomains), refused at MAIL FROM with 550 5.7.1 — unless it is a global trusted sender or
  the client is SMTP-whitelisted. The contract has no operation that removes one.
- TRUSTED_SENDERS (global trusted senders, address or domain): exempt from the blocked senders
  (the only sender check that may refuse an address we do not own); spam filtering will read them.
- FORWARDING_BLACKLIST (domains): a user's forwarding to an address in such a domain or one of its
  subdomains is refused when it is set and dropped when mail is resolved, unless the user's domain
  has `bypassforwardblacklist`.
- RESERVED_DOMAINS: names AddDomain, RenameDomain and AddDomainAlias… refuse (DOMAIN_NAME_RESERVED).

Every change raises the directory generation (migration 0012's triggers). Each process keeps one
`Snapshot` of all lists, read again only when that number moves: SMTP reads the number once per
connection and per transaction (a primary-key read the recipient cache reads anyway), so a change
through any node applies to the next connection on every node, and thousands of entries cost
nothing per session. Address matching is a bisection in the sorted spans of one family.
"""
from __future__ import annotations

import bisect
import ipaddress
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import Connection, delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from mailsrv.core import names
from mailsrv.core.actor import Actor
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.store.db import Store
from mailsrv.store.models import IpListEntry, NameListEntry, directory_generation

log = logging.getLogger(__name__)

WHITELIST, BLACKLIST, SMTP_BYPASS = "whitelist", "blacklist", "smtpbypass"
BLOCKED_SENDERS, TRUSTED_SENDERS = "blockedsender", "trustedsender"
FORWARDING_BLACKLIST, RESERVED_DOMAINS = "forwarding", "reserved"
SMTP, POP, IMAP = "smtp", "pop", "imap"
PROTOCOLS = (SMTP, POP, IMAP)
GREYLISTING = "greylisting"  # a whitelist entry's disableGreylisting, matched like a protocol
DESCRIPTION_LIMIT = 1000

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Span:
    """What an IP entry was given as (`ip_address`, or `range_start`..`range_end`) and what it covers."""
    ip_address: str
    range_start: str
    range_end: str
    first: IpAddress
    last: IpAddress

    def overlaps(self, other: Span) -> bool:
        return self.first.version == other.first.version and self.first <= other.last and other.first <= self.last

    def __str__(self) -> str:
        return self.ip_address or f"{self.range_start}-{self.range_end}"


def _ip(raw: str, what: str) -> IpAddress:
    try:
        return ipaddress.ip_address(raw.strip())
    except ValueError:
        raise MailsrvError(ResultCode.INVALID_ARGUMENT, f"'{raw}' is not an IP address ({what}).") from None


def parse_span(ip_address: str | None, range_start: str | None, range_end: str | None) -> Span:
    """An address or CIDR block in `ip_address`, or a range of one family; refused when malformed,
    both or neither are given, or the range runs backwards."""
    single, start, end = (ip_address or "").strip(), (range_start or "").strip(), (range_end or "").strip()
    if single and (start or end):
        raise MailsrvError(ResultCode.INVALID_ARGUMENT,
                           f"Give an IP address ('{single}') or a range ('{start}'-'{end}'), not both.")
    if single:
        if "/" in single:
            try:
                network = ipaddress.ip_network(single, strict=False)
            except ValueError:
                raise MailsrvError(ResultCode.INVALID_ARGUMENT, f"'{single}' is not an IP address or CIDR block.") \
                    from None
            return Span(str(network), "", "", network[0], network[-1])
        address = _ip(single, "ipAddress")
        return Span(str(address), "", "", address, address)
    if not (start and end):
        raise MailsrvError(ResultCode.INVALID_ARGUMENT,
                           "An IP address, a CIDR block or a range (start and end) is required.")
    first, last = _ip(start, "ipRangeStart"), _ip(end, "ipRangeEnd")
    if first.version != last.version:
        raise MailsrvError(ResultCode.INVALID_ARGUMENT, f"The range {start}-{end} mixes IPv4 and IPv6.")
    if first > last:
        raise MailsrvError(ResultCode.INVALID_ARGUMENT, f"The range {start}-{end} ends before it starts.")
    return Span("", str(first), str(last), first, last)


def client_address(ip: str) -> IpAddress | None:
    """A peer's address as the lists see it: without an IPv6 zone, an IPv4-mapped one as IPv4."""
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def sender_entry(raw: str | None) -> str:
    """An address (`user@domain`) or a domain (`@domain` or `domain`), in normal form."""
    text = (raw or "").strip()
    local, at, domain = text.rpartition("@")
    if at and local:
        return names.address_text(text)
    return names.domain_name(domain)


@dataclass(frozen=True)
class IpEntryView:
    ip_address: str
    range_start: str
    range_end: str
    description: str
    smtp: bool
    pop: bool
    imap: bool


@dataclass(frozen=True)
class NameEntryView:
    name: str
    description: str


class IpSet:
    """Non-overlapping spans, matched by bisection: per family, the sorted starts and their ends."""

    def __init__(self, spans: Iterable[tuple[IpAddress, IpAddress]]) -> None:
        self._families: dict[int, tuple[list[int], list[int]]] = {}
        for first, last in sorted(spans, key=lambda span: (span[0].version, int(span[0]))):
            starts, ends = self._families.setdefault(first.version, ([], []))
            starts.append(int(first))
            ends.append(int(last))

    def __contains__(self, address: IpAddress | None) -> bool:
        if address is None or address.version not in self._families:
            return False
        starts, ends = self._families[address.version]
        value = int(address)
        at = bisect.bisect_right(starts, value) - 1
        return at >= 0 and ends[at] >= value


def _domain_and_parents(domain: str) -> list[str]:
    labels = domain.split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)]


@dataclass(frozen=True)
class Snapshot:
    """Every list as of one directory generation (immutable: sessions read it without locks)."""
    ip: Mapping[tuple[str, str], IpSet] = field(default_factory=dict)  # (list, protocol) -> spans
    names: Mapping[str, frozenset[str]] = field(default_factory=dict)  # list -> names

    def _in(self, kind: str, protocol: str, ip: str) -> bool:
        spans = self.ip.get((kind, protocol))
        return spans is not None and client_address(ip) in spans

    def refused(self, protocol: str, ip: str) -> bool:
        """Whether a client at `ip` is blacklisted for `protocol` (and not whitelisted for it)."""
        return self._in(BLACKLIST, protocol, ip) and not self._in(WHITELIST, protocol, ip)

    def smtp_whitelisted(self, ip: str) -> bool:
        return self._in(WHITELIST, SMTP, ip)

    def whitelisted(self, protocol: str, ip: str) -> bool:
        """Whether a client at `ip` is on the IP whitelist for `protocol` (SMTP, POP, IMAP, or
        GREYLISTING: an entry with disableGreylisting)."""
        return self._in(WHITELIST, protocol, ip)

    def relays(self, ip: str) -> bool:
        """Whether a client at `ip` may relay without AUTH: SMTP whitelist or authentication bypass."""
        return self._in(WHITELIST, SMTP, ip) or self._in(SMTP_BYPASS, SMTP, ip)

    def _names(self, kind: str) -> frozenset[str]:
        return self.names.get(kind, frozenset())

    def sender_blocked(self, sender: str) -> bool:
        """Whether an envelope sender is an SMTP blocked sender and not a global trusted one."""
        if not sender:
            return False
        address = sender.lower()
        keys = (address, address.rpartition("@")[2])
        return any(k in self._names(BLOCKED_SENDERS) for k in keys) \
            and not any(k in self._names(TRUSTED_SENDERS) for k in keys)

    def forwarding_blocked(self, address: str) -> bool:
        blocked = self._names(FORWARDING_BLACKLIST)
        return bool(blocked) and any(d in blocked for d in _domain_and_parents(address.rpartition("@")[2].lower()))


EMPTY = Snapshot()
_IP_ROWS = select(IpListEntry.list, IpListEntry.first, IpListEntry.last, IpListEntry.smtp, IpListEntry.pop,
                  IpListEntry.imap, IpListEntry.disable_greylisting)
_NAME_ROWS = select(NameListEntry.list, NameListEntry.name)


def load(conn: Connection) -> Snapshot:
    spans: dict[tuple[str, str], list[tuple[IpAddress, IpAddress]]] = {}
    for kind, first, last, *flags in conn.execute(_IP_ROWS):
        span = (ipaddress.ip_address(first), ipaddress.ip_address(last))
        for protocol, on in zip((*PROTOCOLS, GREYLISTING), flags):
            if on:  # a bypass entry is stored with SMTP only
                spans.setdefault((kind, protocol), []).append(span)
    found: dict[str, set[str]] = {}
    for kind, name in conn.execute(_NAME_ROWS):
        found.setdefault(kind, set()).add(name)
    return Snapshot({key: IpSet(value) for key, value in spans.items()},
                    {kind: frozenset(values) for kind, values in found.items()})


def forwarding_refusal(s: Session, targets: Iterable[str], bypass: bool) -> None:
    """Refuse forwarding targets in a blacklisted domain (unless the user's domain bypasses the list)."""
    if bypass:
        return
    blocked = set(s.execute(select(NameListEntry.name).where(NameListEntry.list == FORWARDING_BLACKLIST)).scalars())
    for target in targets:
        if any(d in blocked for d in _domain_and_parents(target.rpartition("@")[2].lower())):
            raise MailsrvError(ResultCode.FORWARDING_BLACKLISTED,
                               f"Forwarding to {target} is not allowed: its domain is on the forwarding blacklist.")


def reserved_refusal(s: Session, name: str) -> None:
    if s.execute(select(NameListEntry.id).where(NameListEntry.list == RESERVED_DOMAINS,
                                                NameListEntry.name == name)).first() is not None:
        raise MailsrvError(ResultCode.DOMAIN_NAME_RESERVED, f"The domain name {name} is reserved on this server.")


def _description(raw: str | None) -> str:
    text = (raw or "").strip()
    if len(text) > DESCRIPTION_LIMIT or any(ord(c) < 32 for c in text):
        raise MailsrvError(ResultCode.INVALID_ARGUMENT,
                           f"A description is one line of at most {DESCRIPTION_LIMIT} characters.")
    return text


def _span_of(entry: IpListEntry) -> Span:
    return Span(entry.ip_address, entry.range_start, entry.range_end,
                ipaddress.ip_address(entry.first), ipaddress.ip_address(entry.last))


_NAME_FORMS = {BLOCKED_SENDERS: sender_entry, TRUSTED_SENDERS: sender_entry,
               FORWARDING_BLACKLIST: names.domain_name, RESERVED_DOMAINS: names.domain_name}
_NAME_TITLES = {BLOCKED_SENDERS: "SMTP blocked senders", TRUSTED_SENDERS: "global trusted senders",
                FORWARDING_BLACKLIST: "forwarding blacklist", RESERVED_DOMAINS: "reserved domain names"}
_IP_TITLES = {WHITELIST: "IP whitelist", BLACKLIST: "IP blacklist", SMTP_BYPASS: "SMTP authentication bypass"}


class AddressLists:
    """The lists' storage (system administrators only) and this process's snapshot of them."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._generation: int | None = None
        self._snapshot = EMPTY
        self._lock = threading.Lock()

    # Reading, for the listeners and the mail engine

    def snapshot(self) -> Snapshot:
        """The lists as last read (by `current` or `at`); never blocks."""
        return self._snapshot

    def current(self) -> Snapshot:
        """The lists as the store has them now: one read of the generation, the lists only when it
        moved (blocking). Asked at connect: when the store cannot be read, the lists last read answer
        (logged), and the session meets the failure at its first command that needs the store."""
        try:
            with self.store.read_connection() as conn:
                return self.at(directory_generation(conn), conn)
        except SQLAlchemyError:
            log.exception("could not read the address lists; using those read last")
            return self._snapshot

    def at(self, generation: int, conn: Connection | None = None) -> Snapshot:
        """The lists as of `generation`, just read by the caller (blocking when they must be read)."""
        if generation == self._generation:
            return self._snapshot
        if conn is None:
            with self.store.read_connection() as fresh:
                return self.at(directory_generation(fresh), fresh)
        snapshot = load(conn)
        with self._lock:
            self._generation, self._snapshot = generation, snapshot
        return snapshot

    # IP lists

    def set_ip_entry(self, actor: Actor, kind: str, ip_address: str | None, range_start: str | None,
                     range_end: str | None, protocols: Mapping[str, bool], description: str | None,
                     xmpp: bool = False, disable_greylisting: bool = False) -> None:
        """Add or edit the whitelist or blacklist entry with this span; every protocol off (and
        neither xmpp nor disable_greylisting) removes it."""
        actor.require_system()
        span = parse_span(ip_address, range_start, range_end)
        text = _description(description)
        with self.store.session() as s:
            same, others = self._entries(s, kind, span)
            if not any(protocols.values()) and not xmpp and not disable_greylisting:
                if same is None:
                    raise MailsrvError(ResultCode.ITEM_NOT_FOUND, f"The {_IP_TITLES[kind]} has no entry {span}.")
                s.delete(same)
                return
            self._refuse_overlap(kind, span, others)
            entry = same or IpListEntry(list=kind)
            entry.ip_address, entry.range_start, entry.range_end = span.ip_address, span.range_start, span.range_end
            entry.first, entry.last = str(span.first), str(span.last)
            entry.smtp, entry.pop, entry.imap = (bool(protocols.get(p)) for p in PROTOCOLS)
            entry.xmpp, entry.disable_greylisting, entry.description = xmpp, disable_greylisting, text
            s.add(entry)

    def add_bypass(self, actor: Actor, ip_address: str | None, range_start: str | None, range_end: str | None,
                   description: str | None) -> None:
        actor.require_system()
        span = parse_span(ip_address, range_start, range_end)
        text = _description(description)
        with self.store.session() as s:
            same, others = self._entries(s, SMTP_BYPASS, span)
            self._refuse_overlap(SMTP_BYPASS, span, others + ([same] if same else []))
            s.add(IpListEntry(list=SMTP_BYPASS, ip_address=span.ip_address, range_start=span.range_start,
                              range_end=span.range_end, first=str(span.first), last=str(span.last), smtp=True,
                              pop=False, imap=False, xmpp=False, disable_greylisting=False, description=text))

    def delete_bypass(self, actor: Actor, ip_address: str | None, range_start: str | None,
                      range_end: str | None) -> None:
        actor.require_system()
        span = parse_span(ip_address, range_start, range_end)
        with self.store.session() as s:
            same, _ = self._entries(s, SMTP_BYPASS, span)
            if same is None:
                raise MailsrvError(ResultCode.ITEM_NOT_FOUND, f"The {_IP_TITLES[SMTP_BYPASS]} has no entry {span}.")
            s.delete(same)

    def ip_entries(self, actor: Actor, kind: str) -> list[IpEntryView]:
        actor.require_system()
        with self.store.reading() as s:
            rows = s.execute(select(IpListEntry).where(IpListEntry.list == kind).order_by(IpListEntry.id)).scalars()
            return [IpEntryView(e.ip_address, e.range_start, e.range_end, e.description, e.smtp, e.pop, e.imap)
                    for e in rows]

    @staticmethod
    def _entries(s: Session, kind: str, span: Span) -> tuple[IpListEntry | None, list[IpListEntry]]:
        """The entry of `kind` covering exactly `span`, and the others that overlap it."""
        same, others = None, []
        for entry in s.execute(select(IpListEntry).where(IpListEntry.list == kind)).scalars():
            existing = _span_of(entry)
            if (existing.first, existing.last) == (span.first, span.last):
                same = entry
            elif existing.overlaps(span):
                others.append(entry)
        return same, others

    @staticmethod
    def _refuse_overlap(kind: str, span: Span, others: list[IpListEntry]) -> None:
        if others:
            raise MailsrvError(ResultCode.ADDRESS_LIST_OVERLAP,
                               f"{span} overlaps the {_IP_TITLES[kind]} entry {_span_of(others[0])}.")

    # Name lists

    def add_name(self, actor: Actor, kind: str, raw: str | None, description: str | None = None) -> None:
        actor.require_system()
        name, text = _NAME_FORMS[kind](raw), _description(description)
        with self.store.session() as s:
            if self._find(s, kind, name) is not None:
                raise MailsrvError(ResultCode.NAME_IN_USE, f"{name} is already on the {_NAME_TITLES[kind]}.")
            s.add(NameListEntry(list=kind, name=name, description=text))

    def delete_name(self, actor: Actor, kind: str, raw: str | None) -> None:
        self.delete_names(actor, kind, [raw])

    def add_names(self, actor: Actor, kind: str, raw: Iterable[str | None]) -> None:
        """Append every name not yet on the list (all validated first: nothing is half-applied)."""
        actor.require_system()
        wanted = self._validated(kind, raw)
        with self.store.session() as s:
            for name in wanted:
                if self._find(s, kind, name) is None:
                    s.add(NameListEntry(list=kind, name=name, description=""))

    def delete_names(self, actor: Actor, kind: str, raw: Iterable[str | None]) -> None:
        """Remove the names; refused, removing none, when one of them is not on the list."""
        actor.require_system()
        wanted = self._validated(kind, raw)
        with self.store.session() as s:
            for name in wanted:
                if self._find(s, kind, name) is None:
                    raise MailsrvError(ResultCode.ITEM_NOT_FOUND, f"{name} is not on the {_NAME_TITLES[kind]}.")
            s.execute(delete(NameListEntry).where(NameListEntry.list == kind, NameListEntry.name.in_(wanted)))

    def name_entries(self, actor: Actor, kind: str) -> list[NameEntryView]:
        actor.require_system()
        with self.store.reading() as s:
            rows = s.execute(select(NameListEntry).where(NameListEntry.list == kind)
                             .order_by(NameListEntry.name)).scalars()
            return [NameEntryView(e.name, e.description) for e in rows]

    @staticmethod
    def _validated(kind: str, raw: Iterable[str | None]) -> list[str]:
        wanted = list(dict.fromkeys(_NAME_FORMS[kind](item) for item in raw if item and item.strip()))
        if not wanted:
            raise MailsrvError(ResultCode.INVALID_ARGUMENT, f"No name for the {_NAME_TITLES[kind]} was given.")
        return wanted

    @staticmethod
    def _find(s: Session, kind: str, name: str) -> NameListEntry | None:
        return s.execute(select(NameListEntry).where(NameListEntry.list == kind, NameListEntry.name == name)) \
            .scalar_one_or_none()
