"""Who an address is, asked at RCPT time: mailboxes, aliases, domain aliases, catch-alls, forwarding.

Answers are cached in memory (bounded) under the store's directory generation, a number that
database triggers raise in the transaction of every change to what these lookups read (migration
0007, mailsrv.store.models.DirectoryGeneration). `refresh` reads it (one primary-key read) at the
start of each mail transaction and drops the cache when it moved, so a domain, user or alias changed
over SOAP through any node answers for the next SMTP transaction on every node. One exception: a
session's first transaction whose MAIL comes within OPENING_REUSE_SECONDS of the session's opening
uses the generation read at the opening (`reuses_opening`), so a change applies to every transaction
begun after it in a session opened after it, and to every transaction begun OPENING_REUSE_SECONDS
after it (docs/performance.md, "PostgreSQL (sixth round)"). A lookup stores its
answer under the generation it read BEFORE its queries: an answer read while a change was being
committed is kept only under the older number, which the change retires. The server settings
(mailsrv.directory.system_settings) raise the same number, so `refresh` re-reads them only when it
moved and `settings` holds the ones SMTP obeys (catch-alls and the SMTP-authentication floor also
shape the domains' answers here).

Expansion rules:
- a user is its own mailbox, plus its forwarding addresses (without the mailbox when
  delete_on_forward is set and there is somewhere to forward to);
- an alias is the union of its targets, each expanded again;
- a local part that is neither, but a list command address of the domain (mailsrv.mta.list_addresses:
  the domain's `listcommandaddress` when it has lists; LIST-subscribe, LIST-unsubscribe, LIST-help,
  LIST-confirm+TOKEN of an existing list), is that ListCommandAddress: intake hands the message to
  the list commands;
- a local part that is neither falls to the domain's catch-all alias, only when the server allows
  catch-alls (the `catchalls` server setting) and the domain's `enablecatchalls` is Enabled;
- expansion stops MAX_DEPTH levels down, and an address already expanded in this resolution is
  not expanded again (alias loops, a user forwarding to itself), so each mailbox appears once;
- a user's forwarding target in a domain on the server's forwarding blacklist is dropped (logged)
  unless the user's domain has `bypassforwardblacklist` (mailsrv.directory.address_lists);
- a local part that names no user or alias may name a mailing list (`name@`, `name-bounces[+tag]@`,
  `name-moderate+token@`): a ListAddress route, which mailsrv.mta.list_server handles; lists come
  before the catch-all and are never reached through an alias or forwarding;
- a target that is unknown or disabled is skipped (logged) so one stale alias entry does not
  refuse mail for the others; an address whose expansion leaves nothing is Unknown.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, bindparam, or_, select

from mailsrv.core import names, settings
from mailsrv.core.errors import MailsrvError
from mailsrv.directory.abuse import BLOCK_END, SMTP, BlockEnd
from mailsrv.directory.address_lists import AddressLists
from mailsrv.directory.domain_limits import (
    NO_CAPS,
    HourlyCaps,
    disk_quota_bytes,
    hourly_caps,
)
from mailsrv.directory.system_settings import SmtpSettings, SystemSettings
from mailsrv.mta import list_addresses
from mailsrv.mta.list_addresses import ListCommandAddress
from mailsrv.store.db import Store
from mailsrv.store.models import (
    CURRENT_GENERATION,
    Alias,
    Domain,
    DomainAlias,
    MailingList,
    User,
    directory_generation,
)

log = logging.getLogger(__name__)

MAX_DEPTH = 10
# Answers kept per process: each is a few hundred bytes, and a miss costs one query.
CACHE_ENTRIES = 50_000
MISS = object()  # `cached` found nothing
# How long after a session's opening read its first MAIL may still use the generation read then
# (`reuses_opening`): a client that sends EHLO and MAIL at once takes a millisecond or two.
OPENING_REUSE_SECONDS = 1.0
# A session's opening read: the directory generation and the client's SMTP block, one statement.
_OPENING = select(CURRENT_GENERATION.scalar_subquery(), BLOCK_END.scalar_subquery())


@dataclass(frozen=True)
class Opening:
    """What an SMTP session's opening read (`Resolver.stored_generation` with the client) found
    besides the generation, kept in the session's task (a context variable) for its connect and
    first MAIL."""
    client_ip: str
    block: BlockEnd  # the client's SMTP block (mailsrv.directory.abuse)
    read_at: float  # time.monotonic()


def reuses_opening(opening: Opening | None, now: float) -> bool:
    """Whether a MAIL at `now` (time.monotonic()) may use the generation read at the session's
    opening instead of reading it again: only its first transaction's, within OPENING_REUSE_SECONDS."""
    return opening is not None and now - opening.read_at < OPENING_REUSE_SECONDS


# The opening of the session whose task this is, until its first MAIL (every SMTP session runs in a
# task of its own; on_loop.run's reads share their task's context).
_SESSION_OPENING: ContextVar[Opening | None] = ContextVar("mailsrv_smtp_opening", default=None)


@dataclass(frozen=True)
class DomainInfo:
    """What the SMTP listener needs of a local domain; limits in bytes, 0 meaning unlimited."""
    id: int
    name: str
    path: str
    enabled: bool
    max_message_bytes: int
    max_recipients: int
    requires_smtp_auth: bool  # its own setting, or the server's floor (requiresmtpauthforlocalsenders)
    catch_all: str  # the catch-all alias name, "" when none or when catch-alls are switched off
    max_size_bytes: int = 0  # the domain's disk quota (`maxsize`)
    hourly: HourlyCaps = NO_CAPS  # its enabled hourly limits (mailsrv.directory.domain_limits)
    bypass_forward_blacklist: bool = False  # its users may forward into blacklisted domains
    bypass_greylisting: bool = False  # mail to it is never greylisted (`bypassgreylisting`)
    list_command: str = ""  # the local part of its list command address (`listcommandaddress`)


@dataclass(frozen=True)
class LocalMailbox:
    address: str  # user@domain, with the domain's own (not an alias's) name
    user_id: int
    user: str
    domain: DomainInfo
    quota_bytes: int  # mailsrv.core.settings.mailbox_limit_bytes; 0 = unlimited
    auto_responder: bool = False  # its auto-responder is on: delivery goes through the spool


@dataclass(frozen=True)
class RemoteAddress:
    address: str


# What a list address is for (mailsrv.mta.list_server): `name@` posts, `name-bounces[+tag]@` takes
# bounces of its posts, `name-moderate+token@` takes the moderator's answers.
POST, BOUNCES, MODERATE = "post", "bounces", "moderate"


@dataclass(frozen=True)
class ListAddress:
    """A mailing list's address (mailsrv.store.models.MailingList): the list server takes the message."""
    address: str  # as given
    list_id: int
    name: str  # the list's local part
    role: str  # POST, BOUNCES or MODERATE
    tag: str  # what follows "+" in a bounces or moderate address
    moderator: str
    domain: DomainInfo
    settings: dict[str, Any] = field(default_factory=dict, hash=False)  # the list's stored keys


Route = LocalMailbox | RemoteAddress | ListAddress | ListCommandAddress


@dataclass(frozen=True)
class Deliver:
    routes: tuple[Route, ...]
    domain: DomainInfo | None  # the address's own domain when it is local; None: not one of ours


@dataclass(frozen=True)
class Unknown:
    address: str


@dataclass(frozen=True)
class Disabled:
    address: str
    what: str  # "domain" or "mailbox"


Resolution = Deliver | Unknown | Disabled


# Built once and run on a bare connection: this runs for MAIL and every RCPT, where building the
# statement and its cache key each time and the ORM's execution path cost more than the query.
_LOOKUP = (
    select(Domain.id, Domain.name, Domain.path, Domain.settings,
           User.id, User.name, User.settings, User.forwarding_addresses, User.delete_on_forward,
           User.autoresponder_enabled, Alias.addresses)
    .outerjoin(DomainAlias, and_(DomainAlias.domain_id == Domain.id, DomainAlias.name == bindparam("domain")))
    .outerjoin(User, and_(User.domain_id == Domain.id, User.name == bindparam("local")))
    .outerjoin(Alias, and_(Alias.domain_id == Domain.id, Alias.name == bindparam("local")))
    .where(or_(Domain.name == bindparam("domain"), DomainAlias.name == bindparam("domain"))))


def _setting(values: dict[str, Any], key: str) -> Any:
    return settings.value(settings.DOMAIN, values, key)


class Resolver:
    def __init__(self, store: Store, system: SystemSettings, lists: AddressLists | None = None) -> None:
        self.store = store
        self.system = system
        self.lists = lists or AddressLists(store)  # the forwarding blacklist
        self._generation: int | None = None  # what `_cache` and `settings` hold answers of
        self._cache: dict[Hashable, object] = {}
        self._lock = threading.Lock()  # lookups store their answers from worker threads
        # Until the first refresh: what a server with nothing stored obeys.
        self.settings = SmtpSettings.of({name: key.default for name, key in system.table.items()})

    @property
    def generation(self) -> int | None:
        """The directory generation the cached answers are of (the last `refresh`)."""
        return self._generation

    def refresh(self) -> int:
        """Read the directory generation and, when it moved, forget every answer of an older one and
        read the server settings again (blocking); the generation read."""
        with self.store.read_connection() as s:
            generation = directory_generation(s)
            # Read after the generation: settings newer than it are retired by the next refresh.
            fresh = SmtpSettings.of(self.system.read(s)) if generation != self._generation else None
        with self._lock:
            if generation != self._generation and fresh is not None:
                self._cache.clear()
                self._generation = generation
                self.settings = fresh
        return generation

    def cached(self, *key: Hashable) -> object:
        """The answer kept for `key` (a method name and its arguments), or MISS; never blocks."""
        return self._cache.get(key, MISS)

    def remember(self, key: tuple[Hashable, ...], compute: Callable[[Connection], object]) -> object:
        """`compute`'s answer on a fresh read connection, kept under `key` for this generation (blocking)."""
        known = self._generation  # `settings` belong to it: an answer computed across a refresh is not kept
        with self.store.read_connection() as s:
            generation = directory_generation(s)
            value = compute(s)
        with self._lock:
            if generation == self._generation == known:
                if len(self._cache) >= CACHE_ENTRIES:
                    del self._cache[next(iter(self._cache))]  # the oldest entry
                self._cache[key] = value
        return value

    def stored_generation(self, client_ip: str | None = None) -> int:
        """The directory generation in the store now: one prepared read (Store.fetch), blocking. With
        `client_ip` (an SMTP session's opening) the client's SMTP block is read in the same statement
        and kept for `opening`. Without, at a session's first MAIL that `reuses_opening`, no read: the
        generation this process last brought its answers to, read at the opening or since."""
        if client_ip is not None:
            [(generation, end)] = self.store.fetch(_OPENING, {"subject": client_ip, "service": SMTP})
            _SESSION_OPENING.set(Opening(client_ip, BlockEnd(end), time.monotonic()))
            return int(generation or 0)
        opening = _SESSION_OPENING.get()
        if opening is not None:
            _SESSION_OPENING.set(None)
            if self._generation is not None and reuses_opening(opening, time.monotonic()):
                return self._generation
        rows = self.store.fetch(CURRENT_GENERATION, {})
        return int(rows[0][0] or 0) if rows else 0

    @staticmethod
    def opening(client_ip: str) -> Opening | None:
        """The opening read of the caller's SMTP session, when it was of `client_ip`."""
        opening = _SESSION_OPENING.get()
        return opening if opening is not None and opening.client_ip == client_ip else None

    def lookup(self, kind: str, *args: str) -> Any:
        """`resolve`, `domain` or `owned_by` (`kind`) of `args`, answered from the cache of the generation
        `refresh` last read when it can be (blocking). For the SMTP transaction, which refreshes
        first; a caller that did not refresh uses the uncached `resolve`."""
        hit = self.cached(kind, *args)
        if hit is not MISS:
            return hit
        compute = getattr(self, f"_{kind}")
        return self.remember((kind, *args), lambda s: compute(s, *args))

    def resolve(self, address: str) -> Resolution:
        with self.store.read_connection() as s:
            return self._resolve(s, address)

    def _resolve(self, s: Connection, address: str) -> Resolution:
        result = self._address(s, address, 0, {address.lower()})
        if isinstance(result, Deliver) and not result.routes:
            return Unknown(address)
        return result

    def _domain(self, s: Connection, name: str) -> DomainInfo | None:
        """The local domain answering for `name` (its own name or a domain alias), if any."""
        row = self._lookup(s, "", name)
        return row[0] if row else None

    def _owned_by(self, s: Connection, domain: str, user: str, address: str) -> bool:
        """Whether the user `user`@`domain` may send as `address`: its own address (at its domain or
        one of the domain's domain aliases), or an alias of its domain that delivers to its mailbox.
        A catch-all does not count: it would hand its target every unused name in the domain."""
        local, _, domain_name = address.rpartition("@")
        if not local:
            return False
        row = self._lookup(s, local.lower(), domain_name)
        if row is None or row[0].name != domain:
            return False
        found, account, alias_targets = row
        if account is not None:
            return bool(account[1] == user)
        if alias_targets is None:
            return False
        routes = self._expand(s, alias_targets, 0, {f"{local.lower()}@{found.name}"})
        return any(isinstance(r, LocalMailbox) and r.user == user and r.domain.name == domain for r in routes)

    def _address(self, s: Connection, address: str, depth: int, seen: set[str]) -> Resolution:
        local, _, domain_name = address.rpartition("@")
        row = self._lookup(s, local.lower(), domain_name) if local else None
        if row is None:
            return Deliver((RemoteAddress(address),), None) if local and domain_name else Unknown(address)
        domain, user, alias_targets = row
        if not domain.enabled:
            return Disabled(address, "domain")
        if user is not None:
            user_id, user_name, user_settings, forwards, delete_on_forward, auto_responder, quota = user
            if not user_settings.get("isenabled", True):
                return Disabled(address, "mailbox")
            mailbox = LocalMailbox(f"{user_name}@{domain.name}", user_id, user_name, domain, quota,
                                   bool(auto_responder))
            if forwards and not domain.bypass_forward_blacklist:
                forwards = self._allowed_forwards(s, address, forwards)
            forwarded = self._expand(s, forwards, depth, seen)
            keep = not (delete_on_forward and forwarded)
            return Deliver(((mailbox,) if keep else ()) + tuple(forwarded), domain)
        if alias_targets is not None:
            return Deliver(tuple(self._expand(s, alias_targets, depth, seen)), domain)
        found = self._list(s, domain, local, address) if depth == 0 else None
        if found is not None:  # a list is a final destination: never an alias's or forwarding's target
            return Deliver((found,), domain)
        command = self._list_command(s, domain, local) if depth == 0 else None
        if command is not None:
            return Deliver((command,), domain)
        if domain.catch_all and depth < MAX_DEPTH:
            catch_all = f"{domain.catch_all}@{domain.name}"
            if catch_all not in seen:
                seen.add(catch_all)
                result = self._address(s, catch_all, depth + 1, seen)
                return Deliver(result.routes, domain) if isinstance(result, Deliver) else Unknown(address)
        return Unknown(address)

    @staticmethod
    def _list(s: Connection, domain: DomainInfo, local: str, address: str) -> ListAddress | None:
        """The list address `local`@`domain` names, if any (only asked when no user or alias has the name)."""
        name, role, tag = local.lower(), POST, ""
        base, plus, tag_part = local.partition("+")  # the tag keeps its case: it may be a signed token
        for suffix, kind in (("-bounces", BOUNCES), ("-moderate", MODERATE)):
            if base.lower().endswith(suffix) and (kind == BOUNCES or plus):
                name, role, tag = base[: -len(suffix)].lower(), kind, tag_part
                break
        row = s.execute(select(MailingList.id, MailingList.name, MailingList.moderator, MailingList.settings)
                        .where(MailingList.domain_id == domain.id, MailingList.name == name)).first()
        if row is None:
            return None
        return ListAddress(address, row[0], row[1], role, tag, row[2] or "", domain, dict(row[3] or {}))

    @staticmethod
    def _list_command(s: Connection, domain: DomainInfo, local: str) -> ListCommandAddress | None:
        """The list command address `local` is at `domain` (mailsrv.mta.list_addresses), if any. Only
        as the address itself (depth 0): an alias or forward into it would make commands of other mail."""
        parsed = list_addresses.parse(local, domain.list_command)
        if parsed is None:
            return None
        name, action, token = parsed
        # The command address too only where there is a list: elsewhere it would answer forged
        # senders for nothing (backscatter).
        lists = select(MailingList.id).where(MailingList.domain_id == domain.id)
        if s.execute((lists.where(MailingList.name == name) if name else lists).limit(1)).first() is None:
            return None
        return ListCommandAddress(f"{local}@{domain.name}", domain.name, name, action, token)

    def _allowed_forwards(self, s: Connection, address: str, forwards: list[str]) -> list[str]:
        lists = self.lists.at(directory_generation(s), s)
        allowed = [target for target in forwards if not lists.forwarding_blocked(target)]
        if len(allowed) != len(forwards):
            log.warning("forwarding of %s to a blacklisted domain dropped: %s", address,
                        sorted(set(forwards) - set(allowed)))
        return allowed

    def _expand(self, s: Connection, targets: list[str], depth: int, seen: set[str]) -> list[Route]:
        routes: list[Route] = []
        if targets and depth >= MAX_DEPTH:
            log.warning("address expansion deeper than %d levels stopped at %s", MAX_DEPTH, targets)
            return routes
        for target in targets:
            key = target.lower()
            if key in seen:
                continue
            seen.add(key)
            result = self._address(s, target, depth + 1, seen)
            if isinstance(result, Deliver):
                routes.extend(result.routes)
            else:
                log.warning("skipping alias/forwarding target %s: %s", target, type(result).__name__.lower())
        return routes

    def _lookup(self, s: Connection, local: str, raw_domain: str) -> tuple[DomainInfo, Any, list[str] | None] | None:
        """The domain answering for `raw_domain` with the user (id, name, settings, forwarding,
        delete_on_forward, auto-responder on, quota in bytes) and the alias named `local`, in one query."""
        try:
            domain_name = names.domain_name(raw_domain)
        except MailsrvError:
            return None
        row = s.execute(_LOOKUP, {"domain": domain_name, "local": local}).first()
        if row is None:
            return None
        d_id, d_name, d_path, d_settings, u_id, u_name, u_settings, *user, alias_targets = row
        catch_all = ""
        server = self.settings
        if server.catchalls and _setting(d_settings, "enablecatchalls") == "Enabled":
            catch_all = _setting(d_settings, "catchall")
        domain = DomainInfo(
            id=d_id, name=d_name, path=d_path, enabled=bool(_setting(d_settings, "isenabled")),
            max_message_bytes=_setting(d_settings, "maxmessagesize") * 1024,
            max_recipients=_setting(d_settings, "maxrecipients"),
            requires_smtp_auth=server.local_senders_authenticate
            or bool(_setting(d_settings, "requiresmtpauthentication")),
            catch_all=catch_all, max_size_bytes=disk_quota_bytes(d_settings),
            hourly=hourly_caps(d_settings), bypass_forward_blacklist=bool(_setting(d_settings, "bypassforwardblacklist")),
            bypass_greylisting=bool(_setting(d_settings, "bypassgreylisting")),
            list_command=str(_setting(d_settings, "listcommandaddress") or ""))
        account = None
        if u_id is not None:
            account = (u_id, u_name, u_settings, *user, settings.mailbox_limit_bytes(u_settings, d_settings))
        return domain, account, alias_targets
