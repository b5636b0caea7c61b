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

Counting is an atomic UPSERT into the rule's fixed window (`abuse_counters`, one row per rule and
subject, restarted when its window has passed), at the price of fixed windows (a burst straddling
two windows may reach twice the threshold before it is blocked). Every event is one UPSERT, but
DoS connections, which come with every session, are counted in memory per process (`Tallies`) and
written in batches, at most FLUSH_SECONDS after they came: a connection costs no write unless it
may be the one past a threshold, and then one transaction writes what this process counted and
decides against the store's total. So on one node (or worker process) the block comes exactly at
the threshold; with several, each decides on the store's count as of its last write plus its own,
so a client spreading its connections over N processes may get at most the connections the other
N-1 took within FLUSH_SECONDS past the threshold before it is blocked. Counts not yet written when
a process is killed are lost (at most FLUSH_SECONDS' worth: a rate estimate, no mail is at stake).
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

from sqlalchemy import bindparam, case, delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from mailsrv.core.actor import Actor
from mailsrv.core.config import SecurityConfig
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.store.db import Store
from mailsrv.store.models import AbuseBlock, AbuseCounter, AbuseRule, LoginFailure, directory_generation

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
# How long DoS connections counted in memory wait at most before they are written (see above).
FLUSH_SECONDS = 0.5
# Subjects whose DoS count a process keeps: past it, those with nothing left to write are
# forgotten (read again at their next connection).
_TALLIES = 100_000


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


@dataclass(frozen=True)
class BlockEnd:
    """The end of a subject's latest block for a service as read (BLOCK_END), expired or not; None:
    it was never blocked."""
    end: dt.datetime | None


def unexpired(end: dt.datetime | None, now: dt.datetime) -> dt.datetime | None:
    """A block's end while it still holds at `now`, else None."""
    return end if end is not None and end > now else None


@dataclass(frozen=True)
class Admission:
    """A new connection as `AbuseRules.connect` finds it: refused until `until` (None: it goes on),
    or `settle`: it may be the one past a DoS threshold, which `AbuseRules.settle` decides."""
    until: dt.datetime | None = None
    settle: bool = False


@dataclass
class _Tally:
    """One subject's connections under one DoS rule in the rule's window starting `window_start`,
    as this process knows them: the store's count when it last read or wrote it, what it is writing
    now and what it counted since."""
    window_start: dt.datetime
    stored: int
    writing: int = 0
    pending: int = 0

    @property
    def total(self) -> int:
        return self.stored + self.writing + self.pending


_RULES = select(AbuseRule.id, AbuseRule.kind, AbuseRule.service, AbuseRule.action, AbuseRule.timeframe_minutes,
                AbuseRule.threshold, AbuseRule.block_minutes, AbuseRule.notify, AbuseRule.description) \
    .order_by(AbuseRule.id)
# Prepared reads (Store.fetch) of every SMTP connection. The end of a subject's latest block for a
# service, expired or not (`unexpired` compares it with the caller's clock): without the clock's time
# among its parameters it can also be read with the directory generation as an SMTP session opens,
# one statement (mailsrv.mta.recipients).
BLOCK_END = select(func.max(AbuseBlock.until)).where(
    AbuseBlock.subject == bindparam("subject"),
    or_(AbuseBlock.service == bindparam("service"), AbuseBlock.service == ALL))
_COUNTER = select(AbuseCounter.window_start, AbuseCounter.count).where(
    AbuseCounter.rule_id == bindparam("rule_id"), AbuseCounter.subject == bindparam("subject"))


def _minutes(value: int | None, what: str, least: int = 1) -> int:
    number = int(value or 0)
    if not least <= number <= _LIMIT_MINUTES:
        raise MailsrvError(ResultCode.VALUE_OUT_OF_RANGE, f"{what} must be between {least} and {_LIMIT_MINUTES}.")
    return number


def window_of(rule: Rule, now: dt.datetime) -> dt.datetime:
    """The start of the rule's fixed window that `now` is in."""
    return _EPOCH + ((now - _EPOCH) // rule.window) * rule.window


def _insert(s: Session):  # type: ignore[no-untyped-def]
    return postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert


def count_events(s: Session, rule: Rule, subject: str, start: dt.datetime, events: int = 1) -> int:
    """Add `events` of `subject` to the rule's window beginning at `start` (`window_of`); the count
    in it, these included. A window older than the stored one (written late: another node has
    moved on) adds nothing."""
    stored = AbuseCounter.window_start
    statement = _insert(s)(AbuseCounter).values(rule_id=rule.id, subject=subject, window_start=start, count=events)
    statement = statement.on_conflict_do_update(
        index_elements=[AbuseCounter.rule_id, AbuseCounter.subject],
        set_={"count": case((stored == start, AbuseCounter.count + events), (stored < start, events),
                            else_=AbuseCounter.count),
              "window_start": case((stored < start, start), else_=stored)}).returning(AbuseCounter.count)
    return int(s.execute(statement).scalar_one())


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
        self.tallies = Tallies(store)  # the DoS connections counted here

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
            rules = self._load(conn.execute(_RULES).all())
        return [r for r in self._with_default(rules) if kind is None or r.kind == kind]

    def _with_default(self, rules: Sequence[Rule]) -> list[Rule]:
        if any(r.kind == BRUTE_FORCE for r in rules):
            return list(rules)
        return [*rules, self.default_brute_force]

    @staticmethod
    def _load(rows: Sequence[Sequence]) -> tuple[Rule, ...]:  # type: ignore[type-arg]
        return tuple(Rule(rule_id, kind, service, action, dt.timedelta(minutes=timeframe), threshold,
                          dt.timedelta(minutes=block), notify, description)
                     for rule_id, kind, service, action, timeframe, threshold, block, notify, description in rows)

    def rules(self, conn: Connection, kind: str, service: str) -> list[Rule]:
        """The rules of `kind` covering `service` as of the generation read now in `conn` (blocking)."""
        generation = directory_generation(conn)
        if generation != self._generation:
            self._keep(generation, self._load(conn.execute(_RULES).all()))
        return self._of(kind, service)

    def rules_at(self, generation: int | None, kind: str, service: str) -> list[Rule]:
        """As `rules`, for the directory generation the caller has just read (blocking only when it
        moved: one prepared read of the rules, after the generation, so never older than it)."""
        if generation is None or generation != self._generation:
            self._keep(generation, self._load(self.store.fetch(_RULES, {})))
        return self._of(kind, service)

    def _keep(self, generation: int | None, rules: tuple[Rule, ...]) -> None:
        with self._lock:
            self._generation, self._rules = generation, rules

    def _of(self, kind: str, service: str) -> list[Rule]:
        return [r for r in self._with_default(self._rules) if r.kind == kind and r.covers(service)]

    # -- events, counters and blocks ----------------------------------------------------------

    def event(self, kind: str, service: str, subject: str, now: dt.datetime) -> list[Trigger]:
        """Count one event under every rule of `kind` for `service`; the rules it triggered, their
        blocks stored (blocking: one transaction, a read of the generation and an UPSERT per rule)."""
        with self.store.session() as s:
            triggers = []
            for rule in self.rules(s.connection(), kind, service):
                count = count_events(s, rule, subject, window_of(rule, now))
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

    def blocked_until(self, subject: str, service: str, now: dt.datetime) -> dt.datetime | None:
        """`blocked_in`, as one prepared read of its own (Store.fetch)."""
        [(end,)] = self.store.fetch(BLOCK_END, {"subject": subject, "service": service})
        return unexpired(end, now)

    def connect(self, ip: str, service: str, now: dt.datetime, generation: int | None,
                exempt: Callable[[], bool], known: BlockEnd | None = None) -> Admission:
        """A new connection of `ip` to `service`, under the rules of the directory `generation` the
        caller has just read: refused when `ip` is blocked already, else counted under the DoS rules
        (in memory); `settle` when it may be the one past a threshold. `exempt` (the whitelists) is
        asked only when a block or a count would apply. Blocking: prepared reads only (Store.fetch):
        the block, unless the caller read it with the generation (`known`), and another for a
        subject this process has not counted in the rule's window yet."""
        until = self.blocked_until(ip, service, now) if known is None else unexpired(known.end, now)
        if until is not None:
            return Admission(None if exempt() else until)
        rules = self.rules_at(generation, DOS, service)
        if not rules or exempt():
            return Admission()
        return Admission(settle=self.tallies.add(rules, ip, now))

    def settle(self, ip: str, service: str, now: dt.datetime) -> dt.datetime | None:
        """After a connection `connect` could not decide: write every count this process holds and
        block `ip` when the store's count is past a DoS rule's threshold; until when it is refused,
        None when it goes on (blocking: one write transaction)."""
        until = None

        def decide(s: Session, rule: Rule, count: int) -> None:
            nonlocal until
            # `threshold` connections go ahead; the next ones are refused.
            if until is None and rule.covers(service) and count > rule.threshold:
                self.block(s, rule, ip, now)
                log.warning("abuse detection: DoS rule %s blocks %s (%d connections)", rule.uid, ip, count)
                until = now + rule.block

        self.tallies.write(now, ip, decide)
        return until

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


class Tallies:
    """The DoS connections this process counted and has not all written yet (see the module's
    docstring), per rule and client address."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._tallies: dict[tuple[Rule, str], _Tally] = {}
        self._lock = threading.Lock()  # the tallies: counted on the event loop, written from a worker thread
        self._writing = threading.Lock()  # one write at a time: a tally's `writing` is one batch
        self.unwritten = False  # some count waits to be written

    def add(self, rules: Sequence[Rule], subject: str, now: dt.datetime) -> bool:
        """Count one connection of `subject` under `rules`; whether it may be past one's threshold
        (as the store counted at its last read or write here, plus what this process counted since).
        Blocking only for a subject not counted here in a rule's current window: its stored count
        is read first (a prepared read), so that one process alone blocks exactly at the threshold."""
        crossed = False
        for rule in rules:
            crossed = self._one_more(rule, subject, window_of(rule, now)) > rule.threshold or crossed
        return crossed

    def _one_more(self, rule: Rule, subject: str, start: dt.datetime) -> int:
        """One more connection of `subject` under `rule` in the window beginning at `start`; the total."""
        stored: int | None = None
        while True:
            with self._lock:
                tally = self._tallies.get((rule, subject))
                if (tally is None or tally.window_start != start) and stored is not None:
                    # What was counted in a window that has passed no longer matters: dropped unwritten.
                    tally = self._tallies[(rule, subject)] = _Tally(start, stored)
                if tally is not None and tally.window_start == start:
                    tally.pending += 1
                    self.unwritten = True
                    return tally.total
            rows = self.store.fetch(_COUNTER, {"rule_id": rule.id, "subject": subject})
            stored = int(rows[0][1]) if rows and rows[0][0] == start else 0

    def write(self, now: dt.datetime, subject: str | None = None,
              decide: Callable[[Session, Rule, int], None] | None = None) -> None:
        """Write what was counted (blocking: one transaction), each stored count read back by the
        same statement; `decide(session, rule, count)` is told `subject`'s under each rule it was
        counted under, in that transaction (even when another write took its last counts)."""
        with self._writing:
            with self._lock:
                batch = [((rule, counted), tally) for (rule, counted), tally in self._tallies.items()
                         if tally.pending or counted == subject]
                for _, tally in batch:
                    tally.writing, tally.pending = tally.pending, 0
                self.unwritten = False
            written: list[tuple[_Tally, int]] = []
            committed = False
            try:
                with self.store.session() as s:
                    live = set(s.execute(select(AbuseRule.id).where(AbuseRule.kind == DOS)).scalars())
                    for (rule, counted), tally in batch:
                        if rule.id not in live or tally.window_start != window_of(rule, now):
                            continue  # a rule deleted since, a window that has passed: nothing to decide on
                        count = count_events(s, rule, counted, tally.window_start, tally.writing)
                        written.append((tally, count))
                        if counted == subject and decide is not None:
                            decide(s, rule, count)
                committed = True
            finally:
                with self._lock:
                    for _, tally in batch:
                        tally.writing = 0  # written, or lost with the failed transaction
                    for tally, count in written if committed else ():
                        tally.stored = count
                    if len(self._tallies) > _TALLIES:
                        self._tallies = {key: tally for key, tally in self._tallies.items() if tally.pending}
