"""The durable spool: messages accepted over SMTP and the per-recipient queue state.

Acceptance (enqueue) is durable before it is acknowledged, in this order:
1. the session writes `<data_dir>/spool/<id>.tmp`, fsyncs it and renames it to `spool/<id>`;
2. one writer task takes every message waiting at that moment (group commit), fsyncs the spool
   directory once for all their renames, and inserts all their rows in one transaction;
3. only then does each session's DATA answer 250.
A crash before 3 leaves at worst a file without a row (removed by `sweep`) and the client, having
no 250, sends again; a crash after 2 loses nothing.

Direct delivery: a message whose recipients are all local mailboxes without an auto-responder
(mailsrv.mta.intake decides) skips the spool: it goes into the mailboxes before the 250, with one
file write and fsync per mailbox instead of spool file, rows, claim, delivery and finish.
1. the session writes each mailbox's copy (`delivered_copy`: Return-Path, Delivered-To, our
   Received, then the message) as `<Maildir>/tmp/<name>` and fsyncs it; <name> is the final
   Maildir name (mailsrv.mailstore.maildir_names.new_key, as local delivery names its files);
2. the group commit fsyncs each tmp/ directory once, and each new/ directory the previous group
   renamed into; then, in the one transaction of the group (its statements prepared and run by the
   driver, mailsrv.store.db.execute_many), records the counters (MessagesReceived/BytesReceived
   per mailbox, MessagesSent/BytesSent for an authenticated sender) and a `maildir_renames` row per
   copy, and deletes the rows of the previous group, whose renames are now durable;
3. after the commit it renames every tmp/<name> to new/<name>; then the sessions get 250. The mail
   is visible at once; that the rename is durable only the next group's fsync of new/ makes sure,
   and until then the copy's row is there for `sweep` to redo it after a crash.
A crash before the commit of 2: no 250, nothing counted, nothing visible; the tmp files are
orphans `sweep` removes after an age (the client sends again). A crash after it: the delivery is
committed and counted once; `sweep` (at every start, and by any node) renames each row's tmp file
still there into new/ and deletes the row, so the message becomes visible exactly once. Renames
are idempotent across nodes: whoever comes second finds no tmp file and leaves the copy alone.
A mailbox whose user was deleted (or whose id another user now holds) by the time of the commit
fails that message alone (451: the client's retry meets the RCPT refusal); a Maildir without
tmp/ sends the message through the spool instead, whose delivery creates the mailbox.

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

The billed hourly limits (mailsrv.directory.domain_limits) are charged in the group's transaction
too, before anything else in it: a message that would cross one is refused (LimitReached) and
neither recorded nor counted, and its file or copies are removed.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import datetime as dt
import errno
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sqlalchemy import bindparam, delete, false, func, insert, or_, select, true, update
from sqlalchemy.orm import Session

from mailsrv.core import events
from mailsrv.core.actor import Actor
from mailsrv.core.clock import Clock
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.directory.counters import TrafficEvent, record
from mailsrv.directory.domain_limits import Charge, charge, hour_of
from mailsrv.mailstore.disk import Disk, fault_point, fsync_directory
from mailsrv.mta.destinations import domain_of, fair_due, pause
from mailsrv.store.db import Store, execute_many, fetch_in, storage_refused
from mailsrv.store.models import Domain, MaildirRename, SpoolMessage, SpoolRecipient, User

log = logging.getLogger(__name__)

# Threads writing and fsyncing accepted messages. More than the default executor's few: an fsync
# mostly waits for the disk, and the filesystem's journal commits the fsyncs that wait together
# at once, so sessions writing side by side get through more messages than queueing for a thread.
FILE_WRITERS = 32

# Free space a message must leave on the spool's filesystem: the database, the Maildirs and the
# other sessions' messages usually share it.
RESERVE_BYTES = 1024 * 1024
# Spool.has_room takes the free space it saw for up to ROOM_SECONDS while ROOM_SLACK_BYTES more
# than a message needs are free: the spool's filesystem does not fill that much that fast, and
# were it to, the message's write would meet ENOSPC and answer 452 all the same.
ROOM_SECONDS = 1.0
ROOM_SLACK_BYTES = 256 * 1024 * 1024

PENDING, DEFERRED, DELIVERED, FAILED = "pending", "deferred", "delivered", "failed"
OPEN = (PENDING, DEFERRED)
LOCAL, REMOTE = "local", "remote"


@dataclass(frozen=True)
class NewRecipient:
    original: str  # the RCPT TO address
    address: str  # the mailbox (user@domain) or remote address to deliver to
    kind: str  # LOCAL or REMOTE
    user_id: int | None = None
    # This copy's own envelope sender and header lines (before the message's), "" for the message's:
    # a list post spooled once still gives each subscriber its VERP address and unsubscribe link.
    sender: str = ""
    headers: str = ""


@dataclass(frozen=True)
class MaildirCopy:
    """A local mailbox's copy of a message delivered directly (see the module docstring)."""
    maildir: Path
    name: str  # the Maildir file name, the same in tmp/ and new/
    address: str  # the mailbox, user@domain: its Delivered-To
    domain_id: int
    user_id: int
    user: str  # checked against user_id at commit: SQLite may give a deleted user's id to a new one


class Companion(Protocol):
    """Work accepted together with a message, in its group's transaction: what a mailing list takes of
    it (mailsrv.mta.list_server: the post spooled for the subscribers, a held post and its notice, a
    bounce counted). Its files are written, durably, before the commit."""

    def commit(self, s: Session) -> None:
        """Add its rows in the group's transaction."""
        ...

    def committed(self) -> None:
        """After the commit (in the committing thread): what may come later without loss (a due digest
        sent, a used file removed)."""
        ...

    def discard(self) -> None:
        """Remove its files: the transaction failed or refused the message."""
        ...


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
    folder: str = ""  # the mailbox folder local deliveries file it into, "" the inbox (mailsrv.mta.filtering)
    # When given: delivered into these mailboxes at acceptance instead of spooled for `recipients`
    # (which then name the same mailboxes, for when a Maildir has no tmp/ to write into).
    copies: Sequence[MaildirCopy] = ()
    # What accepting it adds to its domains' hourly limits (mailsrv.directory.domain_limits): the
    # commit refuses it with LimitReached when one would be crossed.
    charges: Sequence[Charge] = ()
    # Accepted with it, all or nothing. A message with neither recipients nor copies is its
    # companions alone (mail to mailing lists only): no spool file, no rows of its own.
    companions: Sequence[Companion] = ()

    @property
    def spooled(self) -> bool:
        """Whether it has a spool file and rows of its own."""
        return bool(self.recipients) and not self.copies


def delivered_copy(sender: str, address: str, trace_header: str) -> bytes:
    """What a local mailbox's file holds before the message itself, however it is delivered."""
    return (f"Return-Path: <{sender}>\r\nDelivered-To: {address}\r\n{trace_header}"
            ).encode("utf-8", "surrogateescape")


class MailboxGone(Exception):
    """A direct delivery's mailbox lost its user before the commit: the message is not accepted."""


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
    folder: str = ""  # IncomingMessage.folder


@dataclass(frozen=True)
class ClaimedRecipient:
    id: int
    address: str
    original: str
    user_id: int | None
    attempts: int  # including this one: more than 1 means an earlier attempt may have got far
    sender: str = ""  # NewRecipient's: "" for the message's envelope sender
    headers: str = ""  # NewRecipient's: header lines this copy carries before the message


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
    relay: str = ""  # the host that took it (remote), for the log
    reply: str = ""  # its SMTP reply


@dataclass(frozen=True)
class Deferred:
    error: str  # starts with an RFC 3463 status code when one is known
    remote_mta: str = ""  # the host that answered, for a DSN's Remote-MTA
    reply: str = ""  # its SMTP reply, for a DSN's Diagnostic-Code
    # No host of the recipient's domain could be reached: its other due recipients wait as long
    # without being attempted (mailsrv.mta.destinations.pause).
    unreachable: bool = False


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


def _log_accepted(m: IncomingMessage) -> None:
    size = len(m.content)
    events.emit("queued", m.id, **{"from": m.sender}, size=size, nrcpt=len(m.recipients),
                path="direct" if m.copies else "spool", ip=m.client_ip or None, login=m.auth_login or None)
    for copy in m.copies:  # delivered already, before the 250
        events.emit("delivery", m.id, to=copy.address, kind=LOCAL, size=size, relay="local", delay=0.0, dsn="2.0.0",
                    status=events.SENT, reply="delivered to maildir")


def _log_outcome(job: Job, recipient: ClaimedRecipient, outcome: Outcome, status: str, now: dt.datetime) -> None:
    if isinstance(outcome, Delivered):
        relay, dsn, reply = outcome.relay or "local", "2.0.0", outcome.reply or "delivered to maildir"
    else:
        found = _DSN.match(outcome.error)
        relay, dsn, reply = outcome.remote_mta or "none", found.group(0) if found else "", outcome.reply or outcome.error
    events.emit("delivery", job.message.id, to=recipient.address,
                orig_to=recipient.original if recipient.original != recipient.address else None, kind=job.kind,
                size=job.message.size, relay=relay, delay=round((now - job.message.received_at).total_seconds(), 2),
                dsn=dsn, status=status, reply=reply)


_DSN = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}")


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


# The group commit's statements (prepared once: mailsrv.store.db.execute_many).
_ADD_RENAME = insert(MaildirRename).values(name=bindparam("name"), maildir=bindparam("maildir"))
_DROP_RENAME = delete(MaildirRename).where(MaildirRename.name == bindparam("name"))
_USER_NAME = select(User.name).where(User.id == bindparam("id"))


def write_durably(path: Path, *parts: bytes) -> None:
    """A new file at `path` holding `parts`, fsynced (its directory entry is the caller's to fsync)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            for part in parts:
                view = memoryview(part)
                while view:
                    view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        path.unlink(missing_ok=True)  # e.g. the disk is full: leave nothing half-written behind
        raise


def _rename_into_new(copies: Sequence[MaildirCopy]) -> set[Path]:
    """tmp/<name> to new/<name> for each copy still in tmp/; the new/ directories, to fsync before
    the copies' rows go. Even where another node renamed: its fsync may not have happened yet."""
    for copy in copies:
        try:
            os.rename(copy.maildir / "tmp" / copy.name, copy.maildir / "new" / copy.name)
        except FileNotFoundError:  # renamed already (another node's sweep), or the mailbox is gone
            pass
    return {copy.maildir / "new" for copy in copies}


def _fsync_directories(directories: Iterable[Path]) -> None:
    for directory in directories:
        try:
            fsync_directory(directory)
        except FileNotFoundError:  # the mailbox is gone
            pass


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
        # The names of the last group's direct deliveries, renamed into new/, and those new/
        # directories: the next group fsyncs them, then its transaction deletes the copies'
        # maildir_renames rows (so an idle node leaves them to `sweep`).
        self._renamed: list[str] = []
        self._renamed_into: set[Path] = set()
        self._file_writers = concurrent.futures.ThreadPoolExecutor(FILE_WRITERS, thread_name_prefix="spool-file")
        # Who tells senders about failed recipients (mailsrv.mta.bounces).
        self.notifier = notifier
        self._free_bytes, self._free_at = 0, -ROOM_SECONDS  # has_room's last statvfs

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
        now = time.monotonic()
        # Every MAIL asks: a statvfs (a syscall, and the GIL to win back from the spool's writers)
        # at most every ROOM_SECONDS while the free space dwarfs any message; near full, each time.
        if now - self._free_at > ROOM_SECONDS or self._free_bytes < size + RESERVE_BYTES + ROOM_SLACK_BYTES:
            usage = os.statvfs(self.directory)
            self._free_bytes, self._free_at = usage.f_bavail * usage.f_frsize, now
        return self._free_bytes >= size + RESERVE_BYTES

    async def enqueue(self, message: IncomingMessage) -> None:
        """Return once the message is durably spooled, or delivered when it has `copies`; raise if it
        could not be."""
        if message.copies:
            try:
                await asyncio.get_running_loop().run_in_executor(self._file_writers, self.write_copies, message)
            except FileNotFoundError:  # a Maildir without tmp/: delivery from the spool creates it
                log.info("mailbox of %s incomplete: spooling instead", message.id)
                message = dataclasses.replace(message, copies=())
        if message.spooled:
            await asyncio.get_running_loop().run_in_executor(self._file_writers, self.write_file, message)
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
        try:
            write_durably(tmp, message.content)
            os.rename(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)  # e.g. the disk is full: leave nothing half-written behind
            raise

    def write_copies(self, message: IncomingMessage) -> None:
        """Each of `copies` into its Maildir's tmp/, durable; the commit renames them into new/."""
        written: list[Path] = []
        try:
            for copy in message.copies:
                tmp = copy.maildir / "tmp" / copy.name
                write_durably(tmp, delivered_copy(message.sender, copy.address, message.trace_header),
                               message.content)
                written.append(tmp)
        except BaseException:
            for tmp in written:
                tmp.unlink(missing_ok=True)
            raise

    async def _write_batches(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                refused = await asyncio.to_thread(self._commit, [w.message for w in batch])
            except Exception as exc:  # the sessions answer 451; the writer lives on
                log.exception("spooling %d message(s) failed", len(batch))
                for waiting in batch:
                    if not waiting.done.done():
                        waiting.done.set_exception(exc)
                continue
            for waiting in batch:
                if not waiting.done.done():
                    refusal = refused.get(waiting.message.id)
                    if refusal is None:
                        waiting.done.set_result(None)
                    else:
                        waiting.done.set_exception(refusal)
            if any(not w.message.copies for w in batch):  # spooled, or a list's companions
                self.notify()

    def _commit(self, messages: list[IncomingMessage]) -> dict[str, Exception]:
        """Make the group's messages durable and recorded (see the module docstring); the ids of those
        refused, with why: a domain limit they would cross (LimitReached), a mailbox whose user has
        gone (MailboxGone)."""
        direct = [m for m in messages if m.copies]
        spooled = [m for m in messages if m.spooled]
        refused: dict[str, Exception] = {}
        try:
            if spooled or any(m.companions for m in messages):  # a list's post and notices are spool files too
                fsync_directory(self.directory)
            for tmp_dir in {copy.maildir / "tmp" for m in direct for copy in m.copies}:
                fsync_directory(tmp_dir)
            # After tmp/: on a journalling filesystem that fsync has mostly made these renames durable.
            _fsync_directories(self._renamed_into)
            # Direct deliveries alone, the usual group, are driver statements only: pipelined (Store.session).
            pipelined = not spooled and not any(m.companions or m.charges or m.sent_by for m in messages)
            with self.store.session(pipelined) as s:
                # First: the hourly usage rows are the first rows this transaction locks (domain_limits).
                refused.update(charge(s, [(m.id, hour_of(m.received_at), m.charges) for m in messages if m.charges]))
                # The previous group's files are in new/, durably: their rows can go.
                execute_many(s, _DROP_RENAME, [{"name": name} for name in self._renamed])
                gone = self._gone(s, [m for m in direct if m.id not in refused])
                refused.update({message_id: MailboxGone(f"the mailbox {address} no longer exists")
                                for message_id, address in gone.items()})
                direct = [m for m in direct if m.id not in refused]
                spooled = [m for m in spooled if m.id not in refused]
                events: list[TrafficEvent] = []
                for m in spooled:
                    self.add_rows(s, m)
                taken = [c for m in messages if m.id not in refused for c in m.companions]
                for companion in taken:
                    companion.commit(s)
                for m in spooled + direct:
                    if m.sent_by and (event := self._sent_event(s, m, m.sent_by)):
                        events.append(event)
                for m in direct:
                    events += [TrafficEvent(c.domain_id, c.user_id, m.received_at.astimezone(dt.timezone.utc).date(),
                                            messages_received=1, bytes_received=len(m.content)) for c in m.copies]
                execute_many(s, _ADD_RENAME, [{"name": c.name, "maildir": str(c.maildir)} for m in direct for c in m.copies])
                record(s, *events)
        except BaseException:
            self._discard(messages)
            raise
        self._discard([m for m in messages if m.id in refused])
        for m in spooled + direct:
            _log_accepted(m)
        for companion in taken:
            try:
                companion.committed()
            except Exception:  # taken all the same: what it left undone is redone later (digests, sweeps)
                log.exception("after accepting a message for a mailing list")
        fault_point("maildir-renames-committed")
        copies = [c for m in direct for c in m.copies]
        self._renamed, self._renamed_into = [], set()
        try:
            # Not fsynced before the 250: until the next group's fsync the rows are there for `sweep`.
            self._renamed_into = _rename_into_new(copies)
        except OSError:  # committed all the same: `sweep` finishes what is left, from the rows
            log.exception("moving %d delivered message(s) into new/ failed", len(copies))
        else:
            self._renamed = [c.name for c in copies]
        return refused

    def _discard(self, messages: Sequence[IncomingMessage]) -> None:
        """Remove the files of messages not accepted: their spool file or their mailbox copies in tmp/."""
        for m in messages:
            if m.spooled:
                (self.directory / m.id).unlink(missing_ok=True)
            for copy in m.copies:
                (copy.maildir / "tmp" / copy.name).unlink(missing_ok=True)
            for companion in m.companions:
                companion.discard()

    @staticmethod
    def _gone(s: Session, direct: list[IncomingMessage]) -> dict[str, str]:
        """The messages of `direct` with a mailbox whose user is no longer there: id -> that mailbox."""
        # One prepared read per mailbox: a group's messages mostly go to a few.
        users = {user_id: rows[0][0] if (rows := fetch_in(s, _USER_NAME, {"id": user_id})) else None
                 for user_id in {c.user_id for m in direct for c in m.copies}}
        refused: dict[str, str] = {}
        for m in direct:
            for copy in m.copies:
                if users.get(copy.user_id) != copy.user:
                    refused[m.id] = copy.address
        return refused

    def add_rows(self, s: Session, m: IncomingMessage) -> None:
        """The rows of a message whose file `write_file` wrote, in the caller's transaction (what
        finish does for follow-ups, a digest for itself); the queue runs it once that commits."""
        s.add(SpoolMessage(
            id=m.id, path=str((self.directory / m.id).relative_to(self.data_dir)), sender=m.sender,
            size=len(m.content), received_at=m.received_at, client_ip=m.client_ip, helo=m.helo,
            auth_user=m.auth_login, trace_header=m.trace_header, spf_result=m.spf_result, folder=m.folder,
            recipients=[SpoolRecipient(address=r.address, original=r.original, kind=r.kind,
                                       user_id=r.user_id, status=PENDING, attempts=0, domain=domain_of(r.address),
                                       next_attempt_at=m.received_at, last_error="", sender=r.sender,
                                       headers=r.headers)
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
        self._file_writers.shutdown(wait=False)

    # -- delivery ---------------------------------------------------------------------------

    def claim(self, node: str, limit: int, lease: dt.timedelta, kind: str | None = None,
              per_destination: int | None = None) -> list[Job]:
        """Take up to `limit` due recipients (of `kind`, if given) for `node` until now + lease,
        grouped into jobs; at most `per_destination` of one domain in flight (None: no cap;
        mailsrv.mta.destinations). Held recipients are never taken."""
        now = self.clock.now()
        due = (SpoolRecipient.status.in_(OPEN) & (SpoolRecipient.next_attempt_at <= now)
               & (SpoolRecipient.kind == kind if kind is not None else true()) & (SpoolRecipient.held == false())
               & or_(SpoolRecipient.claimed_until.is_(None), SpoolRecipient.claimed_until < now))
        with self.store.session() as s:
            if per_destination is not None:
                due &= SpoolRecipient.id.in_(s.execute(fair_due(due, per_destination, now, limit)).scalars().all())
            rows = s.execute(
                select(SpoolRecipient)
                .where(due)
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
                    ClaimedRecipient(row.id, row.address, row.original, row.user_id, row.attempts, row.sender,
                                     row.headers))
            jobs = []
            for (message_id, kind), recipients in groups.items():
                m = messages[message_id]
                jobs.append(Job(kind, SpooledMessage(m.id, self.data_dir / m.path, m.sender, m.size,
                                                     m.received_at, m.trace_header, m.spf_result,
                                                     bool(m.auth_user), m.folder),
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
        unreachable: dict[str, tuple[dt.datetime, str]] = {}  # domain -> (its pause's end, why)
        logged: list[tuple[Job, ClaimedRecipient, Outcome, str]] = []  # what this commit records
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
                        if updated:
                            logged.append((job, recipient, outcome, events.SENT))
                        if updated and outcome.mailbox is not None:
                            received.append(TrafficEvent(*outcome.mailbox, now.date(), messages_received=1,
                                                         bytes_received=job.message.size))
                        if outcome.follow_up is not None:
                            follow_up = outcome.follow_up.message
                            if updated and outcome.follow_up.claim(s, now):
                                self.add_rows(s, follow_up)
                            else:
                                finished.append(self.directory / follow_up.id)
                        continue
                    delay = retry_delay(recipient.attempts) if isinstance(outcome, Deferred) else None
                    if delay is None:  # a permanent failure, or the last attempt of the schedule
                        if self._mark(s, node, [recipient.id], {"status": FAILED, "last_error": outcome.error}):
                            failures.append((recipient, outcome))
                            logged.append((job, recipient, outcome, events.BOUNCED))
                    else:
                        if self._mark(s, node, [recipient.id], {"status": DEFERRED, "last_error": outcome.error,
                                                                "next_attempt_at": now + delay}):
                            logged.append((job, recipient, outcome, events.DEFERRED))
                        if isinstance(outcome, Deferred) and outcome.unreachable:
                            unreachable[domain_of(recipient.address)] = (now + delay, outcome.error)
                if failures:
                    # Read before _close_done: the notice quotes the original's headers.
                    notice = self.notifier.notice(s, job.message, failures)
                    if notice is not None:
                        # Should this transaction roll back, the file is an orphan `sweep` removes.
                        self.write_file(notice)
                        self.add_rows(s, notice)
            for domain, (until, error) in sorted(unreachable.items()):
                pause(s, domain, until, error, now)
            closed = self._close_done(s, [job.message.id for job, _ in jobs])
            finished += [job.message.path for job, _ in jobs if job.message.id in closed]
            # Last, after every message row lock: counter rows are always locked after those.
            record(s, *received)
        for job, recipient, outcome, status in logged:
            _log_outcome(job, recipient, outcome, status, now)
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
        return removed + self._sweep_maildirs(cutoff)

    def finish_renames(self) -> int:
        """Move into new/ the direct deliveries committed but not yet there: a process killed between
        its commit and its renames, or another node right now (renaming is idempotent, and new/ is
        fsynced before the rows go); how many rows there were."""
        with self.store.reading() as s:
            pending = s.execute(select(MaildirRename.name, MaildirRename.maildir)).all()
        if pending:
            _fsync_directories(_rename_into_new([MaildirCopy(Path(maildir), name, "", 0, 0, "")
                                                 for name, maildir in pending]))
            with self.store.session() as s:
                execute_many(s, _DROP_RENAME, [{"name": name} for name, _ in pending])
        return len(pending)

    def _sweep_maildirs(self, cutoff: float) -> int:
        """Finish the committed direct deliveries, then remove the tmp/ copies of direct deliveries
        never committed and older than `cutoff`; how many removed."""
        if moved := self.finish_renames():
            log.warning("moved %d committed deliveries into new/", moved)
        with self.store.reading() as s:
            maildirs = [Disk.maildir(path, user) for path, user in
                        s.execute(select(Domain.path, User.name).join(User, User.domain_id == Domain.id))]
        removed = 0
        for maildir in maildirs:
            try:
                entries = list(os.scandir(maildir / "tmp"))
            except FileNotFoundError:
                continue
            for entry in entries:
                # Only ours (named as new/ files are); the spool's local delivery and other
                # writers name their tmp/ files otherwise.
                if entry.name.endswith(".mailsrv") and entry.stat().st_mtime < cutoff:
                    with self.store.reading() as s:  # committed meanwhile by a node we cannot see
                        if s.get(MaildirRename, entry.name) is not None:
                            continue
                    os.unlink(entry.path)
                    removed += 1
        return removed
