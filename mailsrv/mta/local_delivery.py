"""Local delivery: a spooled message into a user's Maildir, exactly once; and the mailbox quota.

Mail whose recipients are all local mailboxes without an auto-responder does not come here: it is
written into the mailboxes at acceptance (mailsrv.mta.spool, direct delivery), with the same headers
and file names. This delivers the rest: mail that also goes elsewhere or that an auto-responder answers.

What lands in the Maildir is `Return-Path`, `Delivered-To` and our `Received` header, then the
message exactly as the client transferred it (dot-unstuffed). Line ends are kept as sent, which
over SMTP means CRLF: the added headers end in CRLF too, so a stored message is uniformly CRLF and
its size is the RFC 822 size POP3 and IMAP report, without conversion. (Dovecot reads such files
as they are; it is its `mail_save_crlf = yes` layout.)

Exactly once: the Maildir file name is derived from the spool message id and the recipient row
id, not from time and pid. A delivery that completed on disk but whose outcome never reached
the database (crash in between) finds its file on the next attempt and reports success without
writing a second copy. Within one attempt: write tmp/, fsync, rename into new/; then, once per
queue batch and before any outcome is returned (so before any is recorded), fsync each new/ the
batch renamed into. The batch also shares one mailbox lookup and one mailbox creation check per
mailbox: per message they were a large part of the delivery cost.

Quota: a mailbox may hold `maxsize` MB (the user's setting), else the domain's `maxmailboxsize`
MB; 0 is unlimited (mailsrv.core.settings.mailbox_limit_bytes, as GetUserQuotas reports it). The
SMTP listener checks it at RCPT (with the SIZE the client declared, or 0) and again after DATA with
the real size; mail accepted is delivered even if the mailbox filled up in between, because
refusing then would only turn into a bounce of mail we already took.
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, select

from mailsrv.mailstore import maildir_names
from mailsrv.mailstore.disk import Disk, fsync_directory
from mailsrv.mailstore.disk_usage import used_bytes
from mailsrv.mta.queue import deferred_after
from mailsrv.mta.recipients import LocalMailbox
from mailsrv.mta.spool import ClaimedRecipient, Delivered, Failed, Job, Outcome, SpooledMessage, delivered_copy
from mailsrv.store.db import Store
from mailsrv.store.models import Domain, User

if TYPE_CHECKING:
    from mailsrv.mta.autoreply import AutoResponder, PendingReply

log = logging.getLogger(__name__)


def mailbox_usage(mailbox: LocalMailbox) -> int:
    return used_bytes(Disk.maildir(mailbox.domain.path, mailbox.user))


def first_over_quota(mailboxes: list[LocalMailbox], incoming: int) -> LocalMailbox | None:
    """The first mailbox that `incoming` more bytes would take past its quota (blocking: walks the Maildir)."""
    for mailbox in mailboxes:
        if mailbox.quota_bytes and mailbox_usage(mailbox) + incoming > mailbox.quota_bytes:
            return mailbox
    return None


def maildir_name(message: SpooledMessage, recipient: ClaimedRecipient) -> str:
    """`<seconds>.M<microseconds>Q<spool id>_<recipient id>.mailsrv`: unique (the spool id is a UUID)
    and the same on every attempt and every node, which is what makes redelivery detectable."""
    return maildir_names.new_key(message.received_at, f"{message.id}_{recipient.id}")


def _already_delivered(maildir: Path, name: str) -> bool:
    if (maildir / "new" / name).exists():
        return True
    # A mail client may have seen it already: cur/ holds it under its name with flags.
    try:
        return any(maildir_names.split(entry.name)[0] == name for entry in os.scandir(maildir / "cur"))
    except FileNotFoundError:
        return False


class LocalDelivery:
    """The delivery target for recipients of kind "local" (mailsrv.mta.queue.BatchTarget)."""

    def __init__(self, store: Store, disk: Disk, responder: AutoResponder) -> None:
        self.store = store
        self.disk = disk
        self.responder = responder

    async def deliver_batch(self, jobs: Sequence[Job]) -> list[Sequence[Outcome]]:
        owners = await asyncio.to_thread(self._owners, jobs)
        # Jobs in parallel threads, as the fsyncs of their files overlap; one failing defers only itself.
        results = await asyncio.gather(*(asyncio.to_thread(self._deliver, job, owners) for job in jobs),
                                       return_exceptions=True)
        outcomes: list[Sequence[Outcome]] = []
        renamed_into: set[Path] = set()
        for job, result in zip(jobs, results):
            if isinstance(result, Exception):
                log.error("delivery of %s (local) failed", job.message.id, exc_info=result)
                outcomes.append(deferred_after(job, result))
            elif isinstance(result, BaseException):
                raise result
            else:
                job_outcomes, directories = result
                outcomes.append(job_outcomes)
                renamed_into |= directories
        await asyncio.to_thread(_fsync_all, renamed_into)
        return outcomes

    def _owners(self, jobs: Sequence[Job]) -> dict[int, Row[Any]]:
        """The owners of the batch's recipients by user id, their mailboxes created (blocking)."""
        ids = {r.user_id for job in jobs for r in job.recipients}
        with self.store.reading() as s:
            owners = {row.id: row for row in s.execute(
                select(User.id, User.name, User.autoresponder_enabled, Domain.id.label("domain_id"), Domain.path)
                .join(Domain, Domain.id == User.domain_id).where(User.id.in_(ids)))}
        for owner in owners.values():
            self.disk.create_mailbox(owner.path, owner.name)
        return owners

    def _deliver(self, job: Job, owners: dict[int, Row[Any]]) -> tuple[list[Outcome], set[Path]]:
        """The job's outcomes and the new/ directories it renamed into, not yet fsynced (blocking)."""
        outcomes: list[Outcome] = []
        directories: set[Path] = set()
        for recipient in job.recipients:
            owner = owners.get(recipient.user_id or 0)
            # The name check guards against a deleted user's id having been reused (SQLite may).
            if owner is None or recipient.address.rpartition("@")[0] != owner.name:
                outcomes.append(Failed(f"5.1.1 the mailbox {recipient.address} no longer exists"))
                continue
            directories.add(self._store(job.message, recipient, owner.path, owner.name))
            reply = self._auto_reply(job.message, recipient, owner.id) if owner.autoresponder_enabled else None
            outcomes.append(Delivered(mailbox=(owner.domain_id, owner.id), follow_up=reply))
        return outcomes, directories

    def _auto_reply(self, message: SpooledMessage, recipient: ClaimedRecipient, user_id: int) -> PendingReply | None:
        try:
            return self.responder.prepare(message, recipient.address, user_id)
        except Exception:  # a broken auto-reply must never hold up the mail it answers
            log.exception("auto-reply to %s for %s failed", message.id, recipient.address)
            return None

    def _store(self, message: SpooledMessage, recipient: ClaimedRecipient, domain_path: str, user: str) -> Path:
        """Write the message into the mailbox's new/ and answer that directory, which the caller must fsync."""
        maildir = Disk.folder(Disk.maildir(domain_path, user), message.folder)
        name = maildir_name(message, recipient)
        # Still fsynced by the caller: the earlier attempt may have crashed between rename and fsync.
        if recipient.attempts > 1 and _already_delivered(maildir, name):
            return maildir / "new"
        headers = delivered_copy(recipient.sender or message.sender, recipient.address,
                                 message.trace_header + recipient.headers)
        # A tmp name of our own: two nodes redelivering the same recipient must not share a file.
        tmp = maildir / "tmp" / f"{name}.{uuid.uuid4().hex}"
        with open(tmp, "wb") as out, open(message.path, "rb") as body:
            out.write(headers)
            shutil.copyfileobj(body, out, 1024 * 1024)
            out.flush()
            os.fsync(out.fileno())
        os.rename(tmp, maildir / "new" / name)
        return maildir / "new"


def _fsync_all(directories: set[Path]) -> None:
    for directory in directories:
        fsync_directory(directory)
