"""RequestStatus: the server's status keys (settings-keys.md), each read from where it lives.

- Open sessions (`smtpsessions`, `popsessions`, `imapsessions`) are counted in each process and
  published with its heartbeat (mailsrv.mta.nodes): the sum over the live nodes is at most one
  `[delivery] heartbeat_seconds` old. `websessions` are the unexpired web sign-ins in the store.
- `smtpstatus` … `imapstatus` are the stored service states (StopServices), the same on every node.
- `blockedaddresses`: the client addresses (and users) abuse detection blocks now, on any node
  (mailsrv.directory.abuse).
- `messagesreceivedtoday` / `messagessenttoday` are the traffic counters of the current UTC day.
- `uptimeseconds` counts from the start of this node's `mailsrv serve` process.
"""
from __future__ import annotations

import datetime as dt
import tempfile
import time
from collections.abc import Callable, Iterable

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from mailsrv import __version__
from mailsrv.core.actor import Actor
from mailsrv.core.clock import as_utc
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.directory.abuse import AbuseRules
from mailsrv.directory.listeners import IMAP, POP, SMTP, SUBMISSION, Listeners
from mailsrv.mta.nodes import Heartbeat
from mailsrv.mta.spool import OPEN, Spool
from mailsrv.store.db import Store
from mailsrv.store.models import (
    Domain,
    Node,
    SpoolMessage,
    SpoolRecipient,
    TrafficDaily,
    User,
    WebSession,
)


class ServerStatus:
    def __init__(self, store: Store, spool: Spool, listeners: Listeners, heartbeat: Heartbeat,
                 started_at: float, abuse: AbuseRules) -> None:
        self.store = store
        self.spool = spool
        self.listeners = listeners
        self.heartbeat = heartbeat
        self.started_at = started_at  # time.time() when the serving process started
        self.abuse = abuse

    def request(self, actor: Actor, keys: Iterable[str | None]) -> list[str]:
        """`key=value` for each key, in the order and case asked; an unknown key refuses the call."""
        actor.require_system()
        asked = [(key or "").strip() for key in keys]
        unknown = [key for key in asked if key.lower() not in _KEYS]
        if unknown:
            raise MailsrvError(ResultCode.INVALID_SETTING, f"Unknown status key '{unknown[0]}'.")
        now = self.heartbeat.clock.now()
        states = self.listeners.service_states()
        with self.store.reading() as s:
            return [f"{key}={_KEYS[key.lower()](self, s, states, now)}" for key in asked]

    def readiness(self) -> list[str]:
        """What keeps this process from serving (/readyz), one item each; empty when ready: the store
        reachable, every listener it should serve bound, the spool directory writable."""
        problems: list[str] = []
        try:
            self.store.check_reachable()
        except Exception as exc:  # whatever the driver raises, the answer is the same
            problems.append(f"store: unreachable ({type(exc).__name__})")
        problems += [f"listener: {error}" for error in self.heartbeat.listen_errors]
        try:
            with tempfile.TemporaryFile(dir=self.spool.directory):
                pass
        except OSError as exc:
            problems.append(f"spool: not writable ({exc.strerror})")
        return problems

    def spool_figures(self) -> list[tuple[str, str, float]]:
        """The spool's depth and age for /metrics (the whole store's, as every node shares it)."""
        now = self.heartbeat.clock.now()
        with self.store.reading() as s:
            depth, oldest = s.execute(select(func.count(), func.min(SpoolMessage.received_at)).where(
                SpoolMessage.id.in_(select(SpoolRecipient.message_id).where(SpoolRecipient.status.in_(OPEN))))).one()
            held = s.execute(select(func.count(func.distinct(SpoolRecipient.message_id))).where(
                SpoolRecipient.status.in_(OPEN), SpoolRecipient.held.is_(True))).scalar_one()
        age = 0.0 if oldest is None else max(0.0, (now - as_utc(oldest)).total_seconds())
        return [("mailsrv_spool_messages", "Messages waiting in the spool (a recipient not yet delivered or failed)",
                 float(depth)),
                ("mailsrv_spool_held_messages", "Messages of the spool on hold", float(held)),
                ("mailsrv_spool_oldest_age_seconds", "Age of the oldest message waiting in the spool", age)]

    def _sessions(self, s: Session, column: str, now: dt.datetime) -> int:
        alive = select(func.coalesce(func.sum(getattr(Node, column)), 0)).where(
            Node.beat_at >= now - self.heartbeat.timeout)
        return int(s.execute(alive).scalar_one())


def _oldest_minutes(s: Session, now: dt.datetime) -> int:
    oldest = s.execute(select(func.min(SpoolMessage.received_at)).where(SpoolMessage.id.in_(
        select(SpoolRecipient.message_id).where(SpoolRecipient.status.in_(OPEN))))).scalar_one()
    return 0 if oldest is None else max(0, int((now - as_utc(oldest)).total_seconds() // 60))


def _today(s: Session, now: dt.datetime, column: InstrumentedAttribute[int]) -> int:
    return int(s.execute(select(func.coalesce(func.sum(column), 0))
                         .where(TrafficDaily.day == now.date())).scalar_one())


def _count(s: Session, model: type, *where: ColumnElement[bool]) -> int:
    return int(s.execute(select(func.count()).select_from(model).where(*where)).scalar_one())


_Reader = Callable[[ServerStatus, Session, dict[str, str], dt.datetime], object]
_KEYS: dict[str, _Reader] = {
    "version": lambda st, s, states, now: __version__,
    "uptimeseconds": lambda st, s, states, now: int(time.time() - st.started_at),
    "spoolcount": lambda st, s, states, now: st.spool.count(),
    "spoololdestminutes": lambda st, s, states, now: _oldest_minutes(s, now),
    "smtpstatus": lambda st, s, states, now: states[SMTP],
    "submissionstatus": lambda st, s, states, now: states[SUBMISSION],
    "popstatus": lambda st, s, states, now: states[POP],
    "imapstatus": lambda st, s, states, now: states[IMAP],
    "smtpsessions": lambda st, s, states, now: st._sessions(s, "smtp_sessions", now),
    "popsessions": lambda st, s, states, now: st._sessions(s, "pop_sessions", now),
    "imapsessions": lambda st, s, states, now: st._sessions(s, "imap_sessions", now),
    "websessions": lambda st, s, states, now: _count(s, WebSession, WebSession.expires_at > now),
    "blockedaddresses": lambda st, s, states, now: st.abuse.blocked_count(s, now),
    "domains": lambda st, s, states, now: _count(s, Domain),
    "users": lambda st, s, states, now: _count(s, User),
    "messagesreceivedtoday": lambda st, s, states, now: _today(s, now, TrafficDaily.messages_received),
    "messagessenttoday": lambda st, s, states, now: _today(s, now, TrafficDaily.messages_sent),
}
