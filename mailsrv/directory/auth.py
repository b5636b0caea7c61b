"""Logins for every protocol and the shared brute-force limit: how a name and password become an
Actor (mailsrv.core.actor, which holds the rights table).

Brute force is abuse detection's BRUTE_FORCE rules (mailsrv.directory.abuse): a failure that brings
an address's failures within a rule's time frame to its threshold blocks the address for the rule's
service (every protocol for the default rule, the `[security]` numbers) for its time to block. The
per-login back-off below (one address guessing at one name, a name guessed at from everywhere) stays
as it was: it holds back a pair, never an address."""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import NamedTuple

from sqlalchemy import and_, bindparam, delete, exists, func, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from mailsrv.core import events
from mailsrv.core.actor import Actor, Role
from mailsrv.core.clock import Clock
from mailsrv.core.config import ConfigError, SecurityConfig
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.core.networks import address_in, ip_allowed, parse_network
from mailsrv.directory.abuse import BRUTE_FORCE, AbuseRules, service_of
from mailsrv.directory.passwords import Verifier
from mailsrv.store.db import Store
from mailsrv.store.models import (
    CURRENT_GENERATION,
    AbuseBlock,
    AdminIpRestriction,
    Domain,
    LoginFailure,
    SystemAdmin,
    User,
    UserLogin,
)

log = logging.getLogger(__name__)

LOGIN_FAILED_MESSAGE = "Failed to log in: the user name or password is incorrect."
LOGIN_TIME_RESOLUTION = dt.timedelta(minutes=1)
LOCKED_MESSAGE = "Failed to log in: too many failed attempts; try again later."
# The protocol names of the log and metrics, where the login table's differ.
_LOGGED_PROTOCOLS = {"webservice": "soap", "web": "webmail"}


def _enabled(user_settings: dict, domain_settings: dict) -> bool:
    return bool(domain_settings.get("isenabled", True) and user_settings.get("isenabled", True))


def user_actor(user: User, domain: Domain) -> Actor | None:
    """The actor a mailbox user acts as; None while the user or its domain is disabled, so that a
    login and every later request of a web session refuse alike."""
    return _user_actor(user.id, user.name, user.is_domain_admin, user.settings, user.credential_epoch,
                       domain.name, domain.settings)


def _user_actor(user_id: int, user_name: str, is_domain_admin: bool, user_settings: dict, credential_epoch: int,
                domain_name: str, domain_settings: dict) -> Actor | None:
    if not _enabled(user_settings, domain_settings):
        return None
    role = Role.DOMAIN_ADMIN if is_domain_admin else Role.USER
    return Actor(role, f"{user_name}@{domain_name}", domain=domain_name, user=user_name, user_id=user_id,
                 credential_epoch=credential_epoch)


class _Principal(NamedTuple):
    """What the store says about a login name, read in one query: whom a right password makes the
    caller, and whether the brute-force rules have anything to weigh. A named tuple: one is made for
    every login, at a fraction of a frozen dataclass's cost."""
    password_hash: str | None  # None: no such login
    actor: Actor | None  # None: no such login, or the user or its domain is disabled
    networks: list[str]  # a system administrator's IP restrictions
    note_due: bool  # a user whose last-login time for this protocol is older than its resolution
    recent_failures: bool  # failures inside the window from this address or at this name
    generation: int  # the directory generation of the read's snapshot (Store.directory_at)


# An unknown name always goes through the full brute-force rules: guessing names is what they are for.
_NO_PRINCIPAL = _Principal(None, None, [], False, True, 0)

# The two lookups a login makes, built once: every SOAP call and IMAP/POP3 login runs one of them.
# Each reads the directory generation too, with which the rest of a quick call reads the directory
# from the process's memory (Store.fetch_directory).
_GENERATION = CURRENT_GENERATION.scalar_subquery()
_FAILURES = or_(exists().where(LoginFailure.at >= bindparam("since"),
                               or_(LoginFailure.client_ip == bindparam("ip"), LoginFailure.login == bindparam("name"))),
                exists().where(AbuseBlock.subject == bindparam("ip"), AbuseBlock.until > bindparam("now"))
                ).label("recent_failures")
_USER_QUERY = (
    select(User.id, User.name, User.password_hash, User.is_domain_admin, User.settings, User.credential_epoch,
           Domain.name, Domain.settings, UserLogin.at, _FAILURES, _GENERATION)
    .select_from(User).join(Domain, User.domain_id == Domain.id)
    .outerjoin(UserLogin, and_(UserLogin.user_id == User.id, UserLogin.protocol == bindparam("protocol")))
    .where(Domain.name == bindparam("domain"), User.name == bindparam("local")))
# No ORDER BY: the check asks whether any of the networks holds the address, and SQLite's sorter
# for it cost about as much as the rest of the read.
_ADMIN_QUERY = (
    select(SystemAdmin.password_hash, SystemAdmin.setup_pending, AdminIpRestriction.network, _FAILURES, _GENERATION)
    .select_from(SystemAdmin).outerjoin(AdminIpRestriction, AdminIpRestriction.admin_id == SystemAdmin.id)
    .where(SystemAdmin.username == bindparam("name")))
# A session's user as the check before each IMAP and POP3 command reads it: the two "isenabled"
# settings alone (a key that is not there reads as None: enabled, as in _enabled; settings are
# written typed, never as a JSON null), with the directory generation of the same snapshot, which
# every change of users' or domains' settings raises (migration 0007's triggers).
_CREDENTIALS_QUERY = (select(User.credential_epoch, User.settings["isenabled"], Domain.settings["isenabled"], _GENERATION)
                      .join(Domain, User.domain_id == Domain.id).where(User.id == bindparam("user_id")))
# While the generation has not moved, the settings are as they were: the epoch (raised by a password
# change, which the triggers do not see) is all to read, without the settings' JSON.
_EPOCH_QUERY = select(User.credential_epoch, _GENERATION).where(User.id == bindparam("user_id"))
_ENABLED_KEPT = 4096  # users whose enabled state is remembered


def _within(now: dt.datetime, last: dt.datetime | None, period: dt.timedelta) -> bool:
    """Whether `last` (None: never) is less than `period` ago."""
    if last is None:
        return False
    return now - last < period


class Authenticator:
    def __init__(self, store: Store, security: SecurityConfig, clock: Clock, abuse: AbuseRules | None = None,
                 whitelisted: Callable[[str, str], bool] = lambda service, ip: False) -> None:
        """`whitelisted(service, ip)`: the server's IP whitelist, whose clients are never blocked."""
        self.store = store
        self.security = security
        self.clock = clock
        self.abuse = abuse or AbuseRules(store, security)
        self.whitelisted = whitelisted
        self.verifier = Verifier()
        # user id -> the directory generation at which the user and its domain were found enabled.
        self._enabled_at: dict[int, int] = {}
        try:
            self.trusted = [net for spec in security.trusted_networks for net in parse_network(spec)]
        except ValueError as exc:
            raise ConfigError(f"configuration key 'security.trusted_networks': {exc}") from None

    def login(self, login: str | None, password: str | None, client_ip: str, protocol: str = "webservice") -> Actor:
        """The actor for a login, or LOGIN_FAILED / LOGIN_LOCKED (same answer whether the name exists)."""
        name = (login or "").strip().lower()
        now = self.clock.now()
        # The check only reads, so a full or read-only disk still lets users in to read their mail.
        principal = self._principal(name, client_ip, protocol, now)
        earlier_failures = 0
        logged = _LOGGED_PROTOCOLS.get(protocol, protocol)
        if principal.recent_failures:
            # Rare (someone failed lately here or at this name): only then are the limits counted.
            with self.store.reading() as s:
                try:
                    earlier_failures = self._refuse_if_locked(s, name, client_ip, service_of(protocol), now)
                except MailsrvError:
                    events.emit("auth_locked", protocol=logged, ip=client_ip, login=name)
                    raise
        actor, restricted = self._check(principal, password, client_ip)
        if actor is None:
            self._record(name, client_ip, now, failed=True, protocol=protocol)
            events.emit("auth_failed", protocol=logged, ip=client_ip, login=name,
                        reason="outside its IP restrictions" if restricted else None)
            raise MailsrvError(ResultCode.LOGIN_FAILED, LOGIN_FAILED_MESSAGE)
        events.emit("auth_ok", protocol=logged, ip=client_ip, login=name)
        note_user = actor.user_id if principal.note_due else None
        if earlier_failures or note_user is not None:
            self._record(name, client_ip, now, failed=False, note_user=note_user, protocol=protocol)
        return actor

    def quick_login(self, login: str | None, password: str | None, client_ip: str,
                    protocol: str = "webservice") -> tuple[Actor, int] | None:
        """`login`'s actor, with the directory generation its read saw (for Store.directory_at), when
        it can be given at once on the caller's thread (an event loop's): one read (awaited on the
        loop on PostgreSQL: mailsrv.core.on_loop), a password verified before against the same
        stored hash, nothing to count or write down (no recent failure concerning the login, its
        last-login time current). None otherwise: `login` then decides, counts and records in full."""
        name = (login or "").strip().lower()
        principal = self._principal(name, client_ip, protocol, self.clock.now())
        if (principal.recent_failures or principal.note_due or principal.actor is None
                or principal.password_hash is None or not self.verifier.remembered(principal.password_hash, password)
                or (principal.networks and not ip_allowed(client_ip, principal.networks))):
            return None
        return principal.actor, principal.generation

    def blocked_until(self, client_ip: str, protocol: str) -> dt.datetime | None:
        """Until when abuse detection refuses a new connection of `client_ip` over `protocol`: a
        block in force for the protocol's service (or every service), unless the address is trusted
        or whitelisted for it; None when it may go on. Blocking: one read."""
        service = service_of(protocol)
        with self.store.read_connection() as conn:
            until = self.abuse.blocked_in(conn, client_ip, service, self.clock.now())
        if until is None or address_in(client_ip, self.trusted) or self.whitelisted(service, client_ip):
            return None
        return until

    def credentials_current(self, actor: Actor) -> bool:
        """Whether a mailbox user may go on with a session it opened: its password is still the one
        it logged in with, and it and its domain still exist and are enabled. Asked by IMAP and POP3
        sessions at every command, so one indexed read."""
        params = {"user_id": actor.user_id}
        known = self._enabled_at.get(actor.user_id)
        if known is not None:
            rows = self.store.fetch(_EPOCH_QUERY, params)
            if not rows:
                return False
            epoch, generation = rows[0]
            if generation == known:
                return bool(epoch == actor.credential_epoch)
        rows = self.store.fetch(_CREDENTIALS_QUERY, params)
        if not rows:
            return False
        epoch, user_enabled, domain_enabled, generation = rows[0]
        if not all(value is None or bool(value) for value in (user_enabled, domain_enabled)):
            self._enabled_at.pop(actor.user_id, None)
            return False
        if len(self._enabled_at) >= _ENABLED_KEPT:
            self._enabled_at.clear()
        self._enabled_at[actor.user_id] = generation
        return bool(epoch == actor.credential_epoch)

    def _record(self, name: str, client_ip: str, now: dt.datetime, failed: bool, note_user: int | None = None,
                protocol: str = "") -> None:
        """Write down a login's outcome once its answer is known: a failure, or a success (this
        address's failures cleared, the last-login time noted). Best-effort: a full or read-only
        disk must not turn the answer into an error nor keep anyone from their mail."""
        try:
            with self.store.session() as s:
                if failed:
                    s.add(LoginFailure(client_ip=client_ip, login=name[:320], at=now))
                    s.flush()
                    self._block_if_brute_force(s, name, client_ip, service_of(protocol), now)
                else:
                    s.execute(delete(LoginFailure).where(LoginFailure.login == name,
                                                         LoginFailure.client_ip == client_ip))
                if note_user is not None:
                    s.merge(UserLogin(user_id=note_user, protocol=protocol, at=now))
        except (SQLAlchemyError, OSError, MailsrvError) as exc:  # MailsrvError: the store refused the write
            log.warning("login of %s from %s: could not record its outcome (%s)", name, client_ip, exc)

    def _block_if_brute_force(self, s: Session, name: str, client_ip: str, service: str, now: dt.datetime) -> None:
        """After a failure: block the address under each brute-force rule whose threshold its
        failures within the rule's time frame reached (unless it is trusted or whitelisted)."""
        rules = self.abuse.rules(s.connection(), BRUTE_FORCE, service)
        if not rules:
            return
        oldest = now - max(rule.window for rule in rules)
        times = s.execute(select(LoginFailure.at).where(LoginFailure.client_ip == client_ip,
                                                        LoginFailure.at >= oldest)).scalars().all()
        reached = [r for r in rules if sum(1 for at in times if at >= now - r.window) >= r.threshold]
        if reached and not self._trusted(s, name, client_ip, service):
            for rule in reached:
                self.abuse.block(s, rule, client_ip, now)
            log.warning("login failures from %s: blocked by the brute-force rules %s", client_ip,
                        ", ".join(r.uid for r in reached))

    def _refuse_if_locked(self, s: Session, name: str, client_ip: str, service: str, now: dt.datetime) -> int:
        """Refuse when this address is held back; else its recent failures at this login name."""
        since = now - dt.timedelta(seconds=self.security.failure_window_seconds)
        from_address = LoginFailure.client_ip == client_ip
        pair = and_(from_address, LoginFailure.login == name)
        login_count, pair_count, pair_last = s.execute(
            select(func.count().filter(LoginFailure.login == name),
                   func.count().filter(pair), func.max(LoginFailure.at).filter(pair))
            .where(LoginFailure.at >= since, or_(from_address, LoginFailure.login == name))
        ).one()
        if self._trusted(s, name, client_ip, service):
            return pair_count
        lockout = dt.timedelta(seconds=self.security.lockout_seconds)
        if self.abuse.blocked_in(s, client_ip, service, now) is not None:
            raise MailsrvError(ResultCode.LOGIN_LOCKED, LOCKED_MESSAGE)
        # A login failing from many addresses leaves each address a single try before it waits;
        # the login itself is never blocked, or anyone could switch its owner off.
        allowed = (1 if login_count >= self.security.max_failures_per_login_all_addresses
                   else self.security.max_failures_per_login)
        if pair_count >= allowed:
            doublings = min(pair_count - allowed, 32)
            wait = min(dt.timedelta(seconds=self.security.backoff_seconds * 2 ** doublings), lockout)
            if _within(now, pair_last, wait):
                raise MailsrvError(ResultCode.LOGIN_LOCKED, LOCKED_MESSAGE)
        return pair_count

    def _trusted(self, s: Session, name: str, client_ip: str, service: str) -> bool:
        """A trusted network, the IP whitelist of the service, or a system administrator inside its
        own IP restrictions."""
        if address_in(client_ip, self.trusted) or self.whitelisted(service, client_ip):
            return True
        if "@" in name:
            return False
        networks = s.execute(select(AdminIpRestriction.network).join(SystemAdmin)
                             .where(SystemAdmin.username == name)).scalars().all()
        return bool(networks) and ip_allowed(client_ip, list(networks))

    def _principal(self, name: str, client_ip: str, protocol: str, now: dt.datetime) -> _Principal:
        """One read: the login's account and whether any failure lately concerns it."""
        since = now - dt.timedelta(seconds=self.security.failure_window_seconds)
        if "@" in name:
            local, _, domain_name = name.rpartition("@")
            rows = self.store.fetch(_USER_QUERY, {"since": since, "now": now, "ip": client_ip, "name": name,
                                                  "protocol": protocol, "domain": domain_name, "local": local})
            if not rows:
                return _NO_PRINCIPAL
            user_id, user_name, password_hash, is_domain_admin, user_settings, epoch, domain, domain_settings, \
                last_login, failures, generation = rows[0]
            # Clients that log in on every call (SOAP, POP3 pollers) would otherwise turn each
            # read into a write; last-login times are kept to the minute.
            return _Principal(password_hash, _user_actor(user_id, user_name, is_domain_admin, user_settings, epoch,
                                                         domain, domain_settings),
                              [], not _within(now, last_login, LOGIN_TIME_RESOLUTION), bool(failures), generation)
        rows = self.store.fetch(_ADMIN_QUERY, {"since": since, "now": now, "ip": client_ip, "name": name})
        if not rows:
            return _NO_PRINCIPAL
        password_hash, setup_pending = rows[0][0], rows[0][1]
        return _Principal(password_hash, Actor(Role.SYSTEM_ADMIN, name, setup_pending=setup_pending),
                          [r[2] for r in rows if r[2] is not None], False, bool(rows[0][3]), rows[0][4])

    def _check(self, principal: _Principal, password: str | None, client_ip: str) -> tuple[Actor | None, bool]:
        """(actor or None, refused by IP restrictions)."""
        # An unknown name costs the same hash as a known one, so timing does not tell them apart.
        if not self.verifier.verify(principal.password_hash, password) or principal.actor is None:
            return None, False
        if principal.networks and not ip_allowed(client_ip, principal.networks):
            return None, True
        return principal.actor, False
