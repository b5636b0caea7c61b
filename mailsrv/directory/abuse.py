"""Abuse detection (svcServerAdmin's Add…AbuseDetectionRule operations): rules, the counters they
weigh, and the blocks they set, all in the store so that every node counts and refuses alike.

Rule kinds and what they count, per subject:
- DOS: connections of a client address to a service (SMTP, counted at connect);
- HARVESTING: RCPTs of unknown recipients from a client address;
- BRUTE_FORCE: failed logins from a client address (every protocol; the `login_failures` rows of
  mailsrv.directory.auth). With no stored rule, the `[security]` numbers act as one (`default`),
  so a fresh server keeps the lock-out it always had;
- BOUNCES: bounces (null-sender mail) received by one local address;
- INTERNAL_SPAMMER: messages sent by one authenticated local user.
The event that brings a subject's count to the rule's threshold within its time frame triggers it:
a block of the subject for the service for `block_minutes` (the subject's later connections,
logins or sending are refused) and/or one notification mail per window to the rule's address.

Counting is one atomic UPSERT per event into the rule's fixed window (`abuse_counters`, one row per
rule and subject, restarted when its window has passed): exact across nodes, at the price of fixed
windows (a burst straddling two windows may reach twice the threshold before it is blocked).
Blocks expire by time (`until`); those in force count in RequestStatus's `blockedaddresses` and
are lifted with UnblockAddress (which forgets the subject's counts too, so it is not blocked again
at its next event). Whitelisted clients (the IP whitelist for that protocol, the `[security]`
trusted networks) are exempt. The rules are read once per directory generation per process.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import case, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from mailsrv.core.actor import Actor
from mailsrv.core.config import SecurityConfig
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.store.db import Store
from mailsrv.store.models import AbuseBlock, AbuseCounter, AbuseRule, DirectoryGeneration, LoginFailure

log = logging.getLogger(__name__)

DOS, HARVESTING, BRUTE_FORCE, BOUNCES, INTERNAL_SPAMMER = "dos", "harvesting", "bruteforce", "bounces", \
    "internalspammer"
SMTP, POP, IMAP, HTTP, ALL = "smtp", "pop", "imap", "http", "all"
BLOCK, NOTIFY, NOTIFY_AND_BLOCK = "block", "notify", "notifyandblock"

# The names the contract's abuseDetectionType may be given in (lower case, without blanks).
_KINDS = {"dos": DOS, "denialofservice": DOS, "harvesting": HARVESTING, "addressharvesting": HARVESTING,
          "bruteforce": BRUTE_FORCE, "passwordbruteforce": BRUTE_FORCE, "bounces": BOUNCES, "bounce": BOUNCES,
          "internalspammer": INTERNAL_SPAMMER, "internalspammernotification": INTERNAL_SPAMMER}
_SERVICES = {"smtp": SMTP, "pop": POP, "pop3": POP, "imap": IMAP, "http": HTTP, "web": HTTP, "webmail": HTTP,
             "webservice": HTTP, "all": ALL, "*": ALL}
_ACTIONS = {"block": BLOCK, "notify": NOTIFY, "notifyandblock": NOTIFY_AND_BLOCK, "blockandnotify": NOTIFY_AND_BLOCK}
# What a kind counts at, and what it does, when the call does not say.
_DEFAULT_SERVICE = {DOS: SMTP, HARVESTING: SMTP, BRUTE_FORCE: ALL, BOUNCES: SMTP, INTERNAL_SPAMMER: SMTP}
_DEFAULT_ACTION = {DOS: BLOCK, HARVESTING: BLOCK, BRUTE_FORCE: BLOCK, BOUNCES: NOTIFY, INTERNAL_SPAMMER: NOTIFY}
_LIMIT_MINUTES = 60 * 24 * 366
_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
DEFAULT_ID = "default"


def blocked_text(until: dt.datetime) -> str:
    """What a client refused for a block is told (SMTP's 421, POP3's -ERR, IMAP's BYE)."""
    return f"Blocked by abuse detection until {until:%Y-%m-%d %H:%M:%S} UTC; try again later"


def kind_of(name: str | None) -> str:
    """The rule kind an abuseDetectionType names; ABUSE_KIND_UNKNOWN when none."""
    key = (name or "").replace(" ", "").lower()
    if key not in _KINDS:
        raise MailsrvError(ResultCode.ABUSE_KIND_UNKNOWN,
                           f"Unknown abuse detection type '{name}': use DOS, Harvesting, BruteForce, Bounces "
                           "or InternalSpammer.")
    return _KINDS[key]


def service_of(protocol: str) -> str:
    """The rule service a login protocol (mailsrv.directory.auth) or listener counts under."""
    return _SERVICES.get(protocol.strip().lower(), HTTP)


@dataclass(frozen=True)
class Rule:
    id: int  # 0: the default brute-force rule of the `[security]` numbers, not stored
    kind: str
    service: str
    action: str
    window: dt.timedelta
    threshold: int
    block: dt.timedelta
    notify: str
    description: str

    @property
    def uid(self) -> str:
        return str(self.id) if self.id else DEFAULT_ID

    @property
    def blocks(self) -> bool:
        return self.action in (BLOCK, NOTIFY_AND_BLOCK)

    @property
    def notifies(self) -> bool:
        return self.action in (NOTIFY, NOTIFY_AND_BLOCK) and bool(self.notify)

    def covers(self, service: str) -> bool:
        return self.service in (service, ALL)


@dataclass(frozen=True)
class Trigger:
    """A rule an event just triggered, for the caller to act on (a block is already stored)."""
    rule: Rule
    subject: str
    count: int
    notify: bool  # the first time in this window: send the rule's notification


@dataclass(frozen=True)
class BlockView:
    address: str
    service: str
    kind: str
    blocked_at: dt.datetime
    until: dt.datetime
    reason: str


_GENERATION = select(DirectoryGeneration.generation).where(DirectoryGeneration.id == 1)


def _minutes(value: int | None, what: str, least: int = 1) -> int:
    number = int(value or 0)
    if not least <= number <= _LIMIT_MINUTES:
        raise MailsrvError(ResultCode.VALUE_OUT_OF_RANGE, f"{what} must be between {least} and {_LIMIT_MINUTES}.")
    return number


def _insert(s: Session):  # type: ignore[no-untyped-def]
    return postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert


class AbuseRules:
    """The rules (system administrators only), this process's copy of them, the counters and blocks."""

    def __init__(self, store: Store, security: SecurityConfig) -> None:
        self.store = store
        self.default_brute_force = Rule(0, BRUTE_FORCE, ALL, BLOCK, dt.timedelta(seconds=security.failure_window_seconds),
                                        security.max_failures_per_address,
                                        dt.timedelta(seconds=security.lockout_seconds), "",
                                        "The [security] lock-out (no brute-force rule is stored)")
        self._generation: int | None = None
        self._rules: tuple[Rule, ...] = ()
        self._lock = threading.Lock()

    # -- the rules ----------------------------------------------------------------------------

    def add(self, actor: Actor, kind: str | None, service: str | None, action: str | None, timeframe: int | None,
            threshold: int | None, block_minutes: int | None, notify: str | None, description: str | None) -> int:
        """Store a rule; its id. Unknown kinds, services and actions and out-of-range numbers are refused."""
        actor.require_system()
        kind = kind_of(kind)
        service_key = (service or "").strip().lower() or _DEFAULT_SERVICE[kind]
        if service_key not in _SERVICES:
            raise MailsrvError(ResultCode.ABUSE_SERVICE_UNKNOWN,
                               f"Unknown service '{service}': use SMTP, POP, IMAP, HTTP or All.")
        action_key = (action or "").replace(" ", "").lower() or _DEFAULT_ACTION[kind]
        if action_key not in _ACTIONS:
            raise MailsrvError(ResultCode.ABUSE_ACTION_UNKNOWN,
                               f"Unknown action '{action}': use Block, Notify or NotifyAndBlock.")
        action = _ACTIONS[action_key]
        address = (notify or "").strip().lower()
        if action != BLOCK and ("@" not in address or any(c.isspace() for c in address)):
            raise MailsrvError(ResultCode.INVALID_ADDRESS, "A rule that notifies needs an email address to notify.")
        blocks = action != NOTIFY
        row = AbuseRule(kind=kind, service=_SERVICES[service_key], action=action,
                        timeframe_minutes=_minutes(timeframe, "The time frame (minutes)"),
                        threshold=_minutes(threshold, "The number of occurrences before the rule triggers"),
                        block_minutes=_minutes(block_minutes, "The time to block (minutes)") if blocks else 0,
                        notify=address, description=(description or "").strip()[:1000])
        with self.store.session() as s:
            s.add(row)
            s.flush()
            return row.id

    def delete(self, actor: Actor, rule_id: str | None) -> None:
        actor.require_system()
        text = (rule_id or "").strip()
        if text == DEFAULT_ID:
            raise MailsrvError(ResultCode.PROTECTED_OBJECT, "The default brute-force rule is the [security] "
                               "configuration; adding a brute-force rule replaces it.")
        if not text.isdigit():
            raise MailsrvError(ResultCode.ITEM_NOT_FOUND, f"No abuse detection rule has the id '{rule_id}'.")
        with self.store.session() as s:
            s.execute(delete(AbuseCounter).where(AbuseCounter.rule_id == int(text)))
            if s.execute(delete(AbuseRule).where(AbuseRule.id == int(text))).rowcount == 0:
                raise MailsrvError(ResultCode.ITEM_NOT_FOUND, f"No abuse detection rule has the id '{rule_id}'.")

    def listed(self, actor: Actor, kind: str | None = None) -> list[Rule]:
        """The rules of `kind` (every kind when None), by id; the default brute-force rule while no
        brute-force rule is stored."""
        actor.require_system()
        with self.store.read_connection() as conn:
            rules = self._load(conn)
        return [r for r in self._with_default(rules) if kind is None or r.kind == kind]

    def _with_default(self, rules: Sequence[Rule]) -> list[Rule]:
        if any(r.kind == BRUTE_FORCE for r in rules):
            return list(rules)
        return [*rules, self.default_brute_force]

    @staticmethod
    def _load(conn: Connection) -> tuple[Rule, ...]:
        return tuple(Rule(r.id, r.kind, r.service, r.action, dt.timedelta(minutes=r.timeframe_minutes), r.threshold,
                          dt.timedelta(minutes=r.block_minutes), r.notify, r.description)
                     for r in conn.execute(select(AbuseRule).order_by(AbuseRule.id)))

    def rules(self, conn: Connection, kind: str, service: str) -> list[Rule]:
        """The rules of `kind` covering `service` as of the generation read now in `conn` (blocking)."""
        generation = int(conn.execute(_GENERATION).scalar() or 0)
        if generation != self._generation:
            rules = self._load(conn)
            with self._lock:
                self._generation, self._rules = generation, rules
        return [r for r in self._with_default(self._rules) if r.kind == kind and r.covers(service)]

    # -- events, counters and blocks ----------------------------------------------------------

    def count(self, s: Session, rule: Rule, subject: str, now: dt.datetime) -> int:
        """Add one event of `subject` to the rule's current window; the count in it, this one included."""
        start = _EPOCH + ((now - _EPOCH) // rule.window) * rule.window
        statement = _insert(s)(AbuseCounter).values(rule_id=rule.id, subject=subject, window_start=start, count=1)
        statement = statement.on_conflict_do_update(
            index_elements=[AbuseCounter.rule_id, AbuseCounter.subject],
            set_={"count": case((AbuseCounter.window_start == start, AbuseCounter.count + 1), else_=1),
                  "window_start": start}).returning(AbuseCounter.count)
        return int(s.execute(statement).scalar_one())

    def event(self, kind: str, service: str, subject: str, now: dt.datetime) -> list[Trigger]:
        """Count one event under every rule of `kind` for `service`; the rules it triggered, their
        blocks stored (blocking: one transaction, a read of the generation and an UPSERT per rule)."""
        with self.store.session() as s:
            triggers = []
            for rule in self.rules(s.connection(), kind, service):
                count = self.count(s, rule, subject, now)
                if count >= rule.threshold:
                    triggers.append(self._trigger(s, rule, subject, count, now))
            return triggers

    def _trigger(self, s: Session, rule: Rule, subject: str, count: int, now: dt.datetime) -> Trigger:
        if rule.blocks:
            self.block(s, rule, subject, now)
        if count == rule.threshold:
            log.warning("abuse detection: %s rule %s triggered by %s (%d in %s)", rule.kind, rule.uid, subject,
                        count, rule.window)
        return Trigger(rule, subject, count, notify=rule.notifies and count == rule.threshold)

    def block(self, s: Session, rule: Rule, subject: str, now: dt.datetime) -> None:
        until = now + rule.block
        reason = f"{rule.kind} rule {rule.uid}: {rule.threshold} in {int(rule.window.total_seconds() // 60)} min"
        statement = _insert(s)(AbuseBlock).values(subject=subject, service=rule.service, kind=rule.kind,
                                                  blocked_at=now, until=until, reason=reason)
        s.execute(statement.on_conflict_do_update(
            index_elements=[AbuseBlock.subject, AbuseBlock.service],
            set_={"kind": rule.kind, "blocked_at": now, "until": until, "reason": reason}))

    @staticmethod
    def blocked_in(conn: Connection | Session, subject: str, service: str, now: dt.datetime) -> dt.datetime | None:
        """Until when `subject` is blocked for `service` (or for every service), None when it is not."""
        return conn.execute(select(func.max(AbuseBlock.until)).where(
            AbuseBlock.subject == subject, AbuseBlock.service.in_((service, ALL)), AbuseBlock.until > now)).scalar()

    def connect(self, ip: str, service: str, now: dt.datetime, exempt: Callable[[], bool]) -> dt.datetime | None:
        """A new connection of `ip` to `service`: until when it is refused (blocked already, or this
        connection crossed a DoS rule), None to go on. `exempt` (the whitelists) is asked only when
        a block would apply. Blocking: one read, and one write transaction when DoS rules count."""
        with self.store.read_connection() as conn:  # a write only when a DoS rule counts
            until = self.blocked_in(conn, ip, service, now)
            rules = self.rules(conn, DOS, service) if until is None else []
        if until is not None:
            return None if exempt() else until
        if not rules or exempt():
            return None
        with self.store.session() as s:
            for rule in rules:
                count = self.count(s, rule, ip, now)
                if count > rule.threshold:  # `threshold` connections go ahead; the next ones are refused
                    self.block(s, rule, ip, now)
                    log.warning("abuse detection: DoS rule %s blocks %s (%d connections)", rule.uid, ip, count)
                    return now + rule.block
        return None

    def blocked_count(self, s: Session, now: dt.datetime) -> int:
        return int(s.execute(select(func.count(func.distinct(AbuseBlock.subject))).where(AbuseBlock.until > now))
                   .scalar_one())

    def blocked(self, actor: Actor, now: dt.datetime) -> list[BlockView]:
        actor.require_system()
        with self.store.reading() as s:
            rows = s.execute(select(AbuseBlock).where(AbuseBlock.until > now)
                             .order_by(AbuseBlock.subject, AbuseBlock.service)).scalars()
            return [BlockView(b.subject, b.service, b.kind, b.blocked_at, b.until, b.reason) for b in rows]

    def unblock(self, actor: Actor, subject: str | None, now: dt.datetime) -> None:
        """Lift every block of a client address or user, and forget its counts and failed logins."""
        actor.require_system()
        text = (subject or "").strip().lower()
        with self.store.session() as s:
            lifted = s.execute(delete(AbuseBlock).where(AbuseBlock.subject == text, AbuseBlock.until > now)).rowcount
            s.execute(delete(AbuseBlock).where(AbuseBlock.subject == text))
            if not lifted:
                raise MailsrvError(ResultCode.NOT_BLOCKED, f"{subject} is not blocked.")
            s.execute(delete(AbuseCounter).where(AbuseCounter.subject == text))
            s.execute(delete(LoginFailure).where(LoginFailure.client_ip == text))
        log.info("abuse detection: %s unblocked", text)
