"""The durable spool: messages accepted over SMTP and the per-recipient queue state.

Acceptance (enqueue) is durable before it is acknowledged, in this order:
1. the session writes `<data_dir>/spool/<id>.tmp`, fsyncs it and renames it to `spool/<id>`;
2. one writer task takes every message waiting at that moment (group commit), fsyncs the spool
   directory once for all their renames, and inserts all their rows in one transaction;
3. only then does each session's DATA answer 250.
A crash before 3 leaves at worst a file without a row (removed by `sweep`) and the client, having
no 250, sends again; a crash after 2 loses nothing.

Delivery claims due recipients under a lease (`claim`, FOR UPDATE SKIP LOCKED so nodes on one
PostgreSQL never take the same row) and records outcomes with `finish`: status and traffic
counters in one transaction, and only for rows this node still holds — so a completed delivery is
recorded exactly once, and never repeated after a restart. The transaction that finishes a
message's last open recipient deletes its rows; its file is unlinked after that commit.

Traffic counted here (mailsrv.directory.counters, same transaction as the event):
- at acceptance, when the client authenticated as a local user: MessagesSent +1 and BytesSent
  +size for that user and its domain — once per message, whatever the recipients;
- at each delivery into a local mailbox: MessagesReceived +1 and BytesReceived +size for the
  mailbox's user and domain (an alias expanding to three mailboxes counts three receptions;
  forwarding away without keeping a copy counts nothing for the forwarding user).
`size` is the DATA as transferred by the client (dot-unstuffed, line ends as sent), without the
trace headers we add; the day is the UTC day of the event.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import errno
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sqlalchemy import delete, func, or_, select, true, update
from sqlalchemy.orm import Session

from mailsrv.core.actor import Actor
from mailsrv.core.clock import Clock
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.directory.counters import TrafficEvent, record
from mailsrv.mailstore.disk import fsync_directory
from mailsrv.store.db import Store, storage_refused
from mailsrv.store.models import Domain, SpoolMessage, SpoolRecipient, User

log = logging.getLogger(__name__)

# Free space a message must leave on the spool's filesystem: the database, the Maildirs and the
# other sessions' messages usually share it.
RESERVE_BYTES = 1024 * 1024

PENDING, DEFERRED, DELIVERED, FAILED = "pending", "deferred", "delivered", "failed"
OPEN = (PENDING, DEFERRED)
LOCAL, REMOTE = "local", "remote"


@dataclass(frozen=True)
class NewRecipient:
    original: str  # the RCPT TO address
    address: str  # the mailbox (user@domain) or remote address to deliver to
    kind: str  # LOCAL or REMOTE
    user_id: int | None = None


@dataclass(frozen=True)
class IncomingMessage:
    id: str
    sender: str
    content: bytes
    received_at: dt.datetime
    client_ip: str
    helo: str
    trace_header: str
    recipients: Sequence[NewRecipient]
    auth_login: str = ""
    sent_by: tuple[str, str] | None = None  # (domain, user) of an authenticated local sender
    spf_result: str = ""  # mailsrv.mta.spf_check's result for the sender; "" when not checked


@dataclass(frozen=True)
class SpooledMessage:
    id: str
    path: Path
    sender: str
    size: int
    received_at: dt.datetime
    trace_header: str
    spf_result: str = ""
    authenticated: bool = False  # the client authenticated as a local user


@dataclass(frozen=True)
class ClaimedRecipient:
    id: int
    address: str
    original: str
    user_id: int | None
    attempts: int  # including this one: more than 1 means an earlier attempt may have got far


@dataclass(frozen=True)
class Job:
    """Claimed recipients of one message that one target delivers together."""
    kind: str
    message: SpooledMessage
    recipients: tuple[ClaimedRecipient, ...]
    node: str  # who claimed them: its outcomes are recorded as that node's (`finish`)


class FollowUp(Protocol):
    """A message a delivery gives rise to (an auto-reply). Its spool file is written before
    `finish`; `finish` spools its rows in the transaction that records the delivery, so a crash
    can neither lose it nor, the delivery being retried, send it twice."""
    message: IncomingMessage

    def claim(self, s: Session, now: dt.datetime) -> bool:
        """In finish's transaction: whether to spool `message` now (False: it is not wanted after all)."""
        ...


@dataclass(frozen=True)
class Delivered:
    mailbox: tuple[int, int] | None = None  # (domain id, user id) of a local mailbox: counted as received
    follow_up: FollowUp | None = None


@dataclass(frozen=True)
class Deferred:
    error: str  # starts with an RFC 3463 status code when one is known
    remote_mta: str = ""  # the host that answered, for a DSN's Remote-MTA
    reply: str = ""  # its SMTP reply, for a DSN's Diagnostic-Code


@dataclass(frozen=True)
class Failed:
    error: str
    remote_mta: str = ""
    reply: str = ""


class FailureNotifier(Protocol):
    """Writes to the sender of a message some of whose recipients failed for good (mailsrv.mta.bounces)."""

    def notice(self, s: Session, message: SpooledMessage,
               failures: Sequence[tuple[ClaimedRecipient, Deferred | Failed]]) -> IncomingMessage | None:
        """In finish's transaction: the notice to spool, or None when none is to be sent."""
        ...


Outcome = Delivered | Deferred | Failed


def storage_full(exc: BaseException) -> bool:
    """Whether `exc` says the storage is full: the disk or quota (ENOSPC, EDQUOT) or the database
    (refused by `Store.session` as STORAGE_ERROR, or raw, possibly wrapped by SQLAlchemy)."""
    if isinstance(exc, MailsrvError):
        return exc.code is ResultCode.STORAGE_ERROR
    for error in (exc, getattr(exc, "orig", None)):
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if storage_refused(error):
            return True
    return False


@dataclass
class _Waiting:
    message: IncomingMessage
    done: asyncio.Future[None] = field(repr=False)


class Spool:
    def __init__(self, store: Store, data_dir: Path, clock: Clock, notifier: FailureNotifier,
                 max_batch: int = 256) -> None:
        self.store = store
        self.data_dir = data_dir
        self.directory = data_dir / "spool"
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.clock = clock
        self.max_batch = max_batch
        # The events of this node's queue loops (`watch`), set when there is new work for them.
        self._watchers: list[asyncio.Event] = []
        self._queue: asyncio.Queue[_Waiting] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        # Who tells senders about failed recipients (mailsrv.mta.bounces).
        self.notifier = notifier

    def watch(self) -> asyncio.Event:
        """An event that `notify` sets: the caller clears it, then waits on it for new work."""
        event = asyncio.Event()
        self._watchers.append(event)
        return event

    def unwatch(self, event: asyncio.Event) -> None:
        self._watchers.remove(event)

    def notify(self) -> None:
        """Wake this node's queue loops: rows were committed (accepted mail, DSNs, auto-replies)."""
        for event in self._watchers:
            event.set()

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    # -- acceptance -------------------------------------------------------------------------

    def has_room(self, size: int) -> bool:
        """Whether a message of `size` bytes fits on the spool's filesystem with RESERVE_BYTES to spare."""
        usage = os.statvfs(self.directory)
        return usage.f_bavail * usage.f_frsize >= size + RESERVE_BYTES

    async def enqueue(self, message: IncomingMessage) -> None:
        """Return once the message is durably spooled; raise if it could not be."""
        await asyncio.to_thread(self.write_file, message)
        waiting = _Waiting(message, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(waiting)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_batches(), name="spool-writer")
        # Shielded: a client hanging up must not cancel the batch its message is part of.
        await asyncio.shield(waiting.done)

    def write_file(self, message: IncomingMessage) -> None:
        """The message's spool file, durable; its rows are added by `enqueue` or with a FollowUp."""
        final = self.directory / message.id
        tmp = final.with_name(message.id + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                view = memoryview(message.content)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)  # e.g. the disk is full: leave nothing half-written behind
            raise

    async def _write_batches(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await asyncio.to_thread(self._commit, [w.message for w in batch])
            except Exception as exc:  # the sessions answer 451; the writer lives on
                log.exception("spooling %d message(s) failed", len(batch))
                for waiting in batch:
                    if not waiting.done.done():
                        waiting.done.set_exception(exc)
                continue
            for waiting in batch:
                if not waiting.done.done():
                    waiting.done.set_result(None)
            self.notify()

    def _commit(self, messages: list[IncomingMessage]) -> None:
        try:
            fsync_directory(self.directory)
            with self.store.session() as s:
                sent: list[TrafficEvent] = []
                for m in messages:
                    self._add_rows(s, m)
                    if m.sent_by and (event := self._sent_event(s, m, m.sent_by)):
                        sent.append(event)
                record(s, *sent)
        except BaseException:
            for m in messages:
                (self.directory / m.id).unlink(missing_ok=True)
            raise

    def _add_rows(self, s: Session, m: IncomingMessage) -> None:
        s.add(SpoolMessage(
            id=m.id, path=str((self.directory / m.id).relative_to(self.data_dir)), sender=m.sender,
            size=len(m.content), received_at=m.received_at, client_ip=m.client_ip, helo=m.helo,
            auth_user=m.auth_login, trace_header=m.trace_header, spf_result=m.spf_result,
            recipients=[SpoolRecipient(address=r.address, original=r.original, kind=r.kind,
                                       user_id=r.user_id, status=PENDING, attempts=0,
                                       next_attempt_at=m.received_at, last_error="")
                        for r in m.recipients]))

    @staticmethod
    def _sent_event(s: Session, m: IncomingMessage, sent_by: tuple[str, str]) -> TrafficEvent | None:
        domain_name, user_name = sent_by
        ids = s.execute(select(Domain.id, User.id).join(User, User.domain_id == Domain.id)
                        .where(Domain.name == domain_name, User.name == user_name)).first()
        if ids is None:  # a user deleted mid-session has nobody left to bill
            return None
        return TrafficEvent(ids[0], ids[1], m.received_at.astimezone(dt.timezone.utc).date(),
                            messages_sent=1, bytes_sent=len(m.content))

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            try:
                await self._writer
            except asyncio.CancelledError:
                pass
            self._writer = None

    # -- delivery ---------------------------------------------------------------------------

    def claim(self, node: str, limit: int, lease: dt.timedelta, kind: str | None = None) -> list[Job]:
        """Take up to `limit` due recipients (of `kind`, if given) for `node` until now + lease,
        grouped into jobs."""
        now = self.clock.now()
        with self.store.session() as s:
            rows = s.execute(
                select(SpoolRecipient)
                .where(SpoolRecipient.status.in_(OPEN), SpoolRecipient.next_attempt_at <= now,
                       SpoolRecipient.kind == kind if kind is not None else true(),
                       or_(SpoolRecipient.claimed_until.is_(None), SpoolRecipient.claimed_until < now))
                .order_by(SpoolRecipient.next_attempt_at, SpoolRecipient.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).scalars().all()
            if not rows:
                return []
            for row in rows:
                row.claimed_by, row.claimed_until, row.attempts = node, now + lease, row.attempts + 1
            messages = {m.id: m for m in s.execute(
                select(SpoolMessage).where(SpoolMessage.id.in_({r.message_id for r in rows}))).scalars()}
            groups: dict[tuple[str, str], list[ClaimedRecipient]] = {}
            for row in rows:
                groups.setdefault((row.message_id, row.kind), []).append(
                    ClaimedRecipient(row.id, row.address, row.original, row.user_id, row.attempts))
            jobs = []
            for (message_id, kind), recipients in groups.items():
                m = messages[message_id]
                jobs.append(Job(kind, SpooledMessage(m.id, self.data_dir / m.path, m.sender, m.size,
                                                     m.received_at, m.trace_header, m.spf_result,
                                                     bool(m.auth_user)),
                                tuple(recipients), node))
            return jobs

    def renew(self, node: str, lease: dt.timedelta, kind: str) -> int:
        """Extend the leases `node` holds on `kind` recipients to now + lease; how many."""
        with self.store.session() as s:
            return s.execute(update(SpoolRecipient)
                             .where(SpoolRecipient.claimed_by == node, SpoolRecipient.kind == kind,
                                    SpoolRecipient.status.in_(OPEN),
                                    # Released (its node declared dead): no longer this node's.
                                    SpoolRecipient.claimed_until.is_not(None))
                             .values(claimed_until=self.clock.now() + lease)).rowcount

    def lease_holders(self) -> set[str]:
        """The nodes holding a lease that has not run out."""
        with self.store.session() as s:
            return set(s.execute(select(SpoolRecipient.claimed_by).distinct().where(
                SpoolRecipient.status.in_(OPEN), SpoolRecipient.claimed_until >= self.clock.now())).scalars())

    @staticmethod
    def release(s: Session, nodes: Sequence[str]) -> int:
        """End the leases of `nodes`, known dead, so their recipients are due at once; how many.
        In the caller's transaction: mailsrv.mta.nodes forgets a dead node in one.

        `claimed_by` stays: local delivery reads the attempt already counted as "look for a copy
        written before the crash". Should the node only have been stalled, `finish` still records
        its outcomes for rows nobody has claimed since (they are true), never for the others."""
        return s.execute(update(SpoolRecipient)
                         .where(SpoolRecipient.claimed_by.in_(nodes), SpoolRecipient.status.in_(OPEN))
                         .values(claimed_until=None)).rowcount

    def finish(self, node: str, results: Sequence[tuple[Job, Sequence[Outcome]]],
               retry_delay: Callable[[int], dt.timedelta | None]) -> None:
        """Record outcomes (one per job recipient, in order) in one transaction.

        `retry_delay(attempts)` is the wait before the next attempt, None when the schedule is
        used up: a Deferred outcome then fails the recipient for good. Recipients that fail in
        this call are reported to the sender through `notifier` in the same transaction, so a
        notice is spooled exactly when the failure is recorded.

        A row another node has taken over since (our lease ran out) is left alone: that node's
        outcome is the one recorded, so nothing is counted twice."""
        now = self.clock.now()
        finished: list[Path] = []  # spool files no longer needed once this transaction commits
        received: list[TrafficEvent] = []
        jobs = sorted(results, key=lambda result: result[0].message.id)
        with self.store.session() as s:
            # Deliveries, by far the most common outcome, are recorded in one statement per batch.
            delivered = self._mark(s, node, [r.id for job, outcomes in jobs
                                             for r, o in zip(job.recipients, outcomes, strict=True)
                                             if isinstance(o, Delivered)], {"status": DELIVERED, "last_error": ""})
            for job, outcomes in jobs:
                failures: list[tuple[ClaimedRecipient, Deferred | Failed]] = []
                for recipient, outcome in zip(job.recipients, outcomes, strict=True):
                    if isinstance(outcome, Delivered):
                        updated = recipient.id in delivered
                        if updated and outcome.mailbox is not None:
                            received.append(TrafficEvent(*outcome.mailbox, now.date(), messages_received=1,
                                                         bytes_received=job.message.size))
                        if outcome.follow_up is not None:
                            follow_up = outcome.follow_up.message
                            if updated and outcome.follow_up.claim(s, now):
                                self._add_rows(s, follow_up)
                            else:
                                finished.append(self.directory / follow_up.id)
                        continue
                    delay = retry_delay(recipient.attempts) if isinstance(outcome, Deferred) else None
                    if delay is None:  # a permanent failure, or the last attempt of the schedule
                        if self._mark(s, node, [recipient.id], {"status": FAILED, "last_error": outcome.error}):
                            failures.append((recipient, outcome))
                    else:
                        self._mark(s, node, [recipient.id], {"status": DEFERRED, "last_error": outcome.error,
                                                             "next_attempt_at": now + delay})
                if failures:
                    # Read before _close_done: the notice quotes the original's headers.
                    notice = self.notifier.notice(s, job.message, failures)
                    if notice is not None:
                        # Should this transaction roll back, the file is an orphan `sweep` removes.
                        self.write_file(notice)
                        self._add_rows(s, notice)
            closed = self._close_done(s, [job.message.id for job, _ in jobs])
            finished += [job.message.path for job, _ in jobs if job.message.id in closed]
            # Last, after every message row lock: counter rows are always locked after those.
            record(s, *received)
        for path in finished:
            path.unlink(missing_ok=True)

    @staticmethod
    def _mark(s: Session, node: str, ids: list[int], values: dict[str, object]) -> set[int]:
        """Set `values` on those of the recipient rows `ids` that this node still holds; their ids."""
        if not ids:
            return set()
        return set(s.execute(
            update(SpoolRecipient)
            .where(SpoolRecipient.id.in_(ids), SpoolRecipient.claimed_by == node, SpoolRecipient.status.in_(OPEN))
            .values(claimed_by=None, claimed_until=None, **values)
            .returning(SpoolRecipient.id)).scalars())

    @staticmethod
    def _close_done(s: Session, message_ids: list[str]) -> set[str]:
        """Delete the messages among `message_ids` with no open recipient left; their ids."""
        # Lock the message rows first, in id order (so two nodes finishing together cannot
        # deadlock): two nodes finishing a message's last two recipients at once must not each see
        # the other's row still open and both leave the message behind.
        present = s.execute(select(SpoolMessage.id).where(SpoolMessage.id.in_(message_ids))
                            .order_by(SpoolMessage.id).with_for_update()).scalars().all()
        still_open = set(s.execute(select(SpoolRecipient.message_id).distinct().where(
            SpoolRecipient.message_id.in_(present), SpoolRecipient.status.in_(OPEN))).scalars())
        done = {message_id for message_id in present if message_id not in still_open}
        if done:
            s.execute(delete(SpoolMessage).where(SpoolMessage.id.in_(done)))
        return done

    def reset_retries(self) -> int:
        """Make every deferred recipient due now with its attempts counted from zero (SmarterMail's
        "reset retry counts", e.g. once a primary MX is back); the number of recipients reset.

        Rows still marked as claimed are left alone: their node may have got far before it died,
        and local delivery reads an attempt count above 1 as "look for a copy already written"."""
        with self.store.session() as s:
            return s.execute(update(SpoolRecipient)
                             .where(SpoolRecipient.status == DEFERRED, SpoolRecipient.claimed_by.is_(None))
                             .values(attempts=0, next_attempt_at=self.clock.now())).rowcount

    # -- housekeeping -----------------------------------------------------------------------

    def message_count(self, actor: Actor) -> int:
        """GetSpoolMessageCount: the whole server's queue, so for system administrators only."""
        actor.require_system()
        return self.count()

    def count(self) -> int:
        """Messages with any recipient not yet delivered or failed."""
        with self.store.session() as s:
            return s.execute(select(func.count(func.distinct(SpoolRecipient.message_id)))
                             .where(SpoolRecipient.status.in_(OPEN))).scalar_one()

    def sweep(self, min_age: dt.timedelta = dt.timedelta(hours=1)) -> int:
        """Remove spool files no row refers to (a crash between file and commit, or after the
        last delivery's commit). Only files older than `min_age`: a node sharing the directory
        may be between its rename and its commit right now."""
        cutoff = time.time() - min_age.total_seconds()
        with self.store.session() as s:
            known = set(s.execute(select(SpoolMessage.id)).scalars())
        removed = 0
        for entry in os.scandir(self.directory):
            name = entry.name.removesuffix(".tmp")
            if entry.is_file() and name not in known and entry.stat().st_mtime < cutoff:
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:  # another worker's sweep, at the same moment
                    continue
                removed += 1
        return removed
