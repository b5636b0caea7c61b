"""Folder auto-clean: server-wide rules (svcServerAdmin Add/Delete/ListFolderAutoCleanRule(s)) that
a background job applies to every mailbox, periodically, on one node at a time.

A rule names a folder and a type:
- `Age`: messages in the folder that arrived more than `mailAgeInDays` days ago are deleted;
- `Size`: when the folder's messages take more than `sizeBeforeAutoClean` MB, the oldest are
  deleted until they take at most `sizeAfterClean` MB.
The folder is a mailbox folder name (`Trash`, `Junk`, `Sent`, a folder of the user's own such as
`Projects.Old`; SmarterMail's `Deleted Items`, `Junk E-Mail` and `Sent Items` name the first three);
the inbox is never auto-cleaned. One rule per folder and type. The contract's rule result has no
folder field, so a listing shows each rule's id, type and thresholds only.

The job (mailsrv.directory.jobs, kind "autoclean") is started by whichever node's runner first
sees it due: `[autoclean] interval_minutes` after the previous run ended, while an enabled rule
exists. It goes over the mailboxes in user id order, `[jobs] batch_size` at a time, the cursor
committed after each batch; deleting is idempotent, so a batch repeated after a crash finds
nothing more to do. Deletions are unlinks: IMAP and POP3 sessions see the messages vanish as after
another client's expunge, and disk usage follows (mailsrv.mailstore.disk_usage).
"""
from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from mailsrv.core.actor import Actor
from mailsrv.core.clock import Clock
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.directory.jobs import ClaimedJob, Jobs, Progress
from mailsrv.mailstore.disk import SPECIAL_FOLDERS, Disk
from mailsrv.mailstore.folders import INBOX, LEVEL_SEPARATOR, Mailbox, folder_directory
from mailsrv.store.db import Store
from mailsrv.store.models import AutocleanRule, Domain, Job, User

log = logging.getLogger(__name__)

KIND = "autoclean"
AGE, SIZE = "Age", "Size"
_MAX_DAYS = 36_500
_MAX_MB = 2 * 1024 * 1024  # 2 TiB: a folder limit beyond it is a typo
# SmarterMail's names of the special folders, and the special folders in any case.
_FOLDER_NAMES = {"deleted items": "Trash", "junk e-mail": "Junk", "sent items": "Sent",
                 **{name.lower(): name for name in SPECIAL_FOLDERS}}


@dataclass(frozen=True)
class Rule:
    id: str
    folder: str
    enabled: bool
    type: str
    size_before_mb: int
    size_after_mb: int
    age_days: int


def folder_name(raw: str | None) -> str:
    """The mailbox folder a rule names (IMAP's "/" between levels is accepted for the Maildir's ".")."""
    text = (raw or "").strip()
    if text.lower() in _FOLDER_NAMES:
        return _FOLDER_NAMES[text.lower()]
    if not text or text.upper() == INBOX:
        raise MailsrvError(ResultCode.INVALID_ARGUMENT,
                           "Name the folder to clean (e.g. Trash or Junk); the inbox is never auto-cleaned.")
    levels = text.replace("/", LEVEL_SEPARATOR).split(LEVEL_SEPARATOR)
    folder_directory(levels)
    return LEVEL_SEPARATOR.join(levels)


def rule_type(raw: str | None) -> str:
    for canonical in (AGE, SIZE):
        if (raw or "").strip().lower() == canonical.lower():
            return canonical
    raise MailsrvError(ResultCode.INVALID_ARGUMENT, f"The rule type must be {AGE} or {SIZE}, not '{raw}'.")


def _check(type_: str, size_before: int, size_after: int, age_days: int) -> None:
    if min(size_before, size_after, age_days) < 0:
        raise MailsrvError(ResultCode.VALUE_OUT_OF_RANGE, "Sizes and ages may not be negative.")
    if type_ == AGE and not 1 <= age_days <= _MAX_DAYS:
        raise MailsrvError(ResultCode.VALUE_OUT_OF_RANGE, f"mailAgeInDays must be from 1 to {_MAX_DAYS} for an Age rule.")
    if type_ == SIZE and not (1 <= size_before <= _MAX_MB and size_after <= size_before):
        raise MailsrvError(ResultCode.VALUE_OUT_OF_RANGE,
                           f"A Size rule needs sizeBeforeAutoClean from 1 to {_MAX_MB} MB and sizeAfterClean "
                           "no larger.")


class AutocleanRules:
    def __init__(self, store: Store, clock: Clock, jobs: Jobs, interval: dt.timedelta) -> None:
        self.store = store
        self.clock = clock
        self.jobs = jobs
        self.interval = interval
        jobs.register(Autoclean(store, clock))

    def add(self, actor: Actor, raw_folder: str | None, enabled: bool, raw_type: str | None,
            size_before_mb: int, size_after_mb: int, age_days: int) -> str:
        """Store a rule; its id."""
        actor.require_system()
        folder, type_ = folder_name(raw_folder), rule_type(raw_type)
        _check(type_, size_before_mb, size_after_mb, age_days)
        with self.store.session() as s:
            if s.execute(select(AutocleanRule.id).where(AutocleanRule.folder == folder,
                                                        AutocleanRule.type == type_)).first() is not None:
                raise MailsrvError(ResultCode.NAME_IN_USE, f"The folder {folder} already has an {type_} rule.")
            rule = AutocleanRule(id=str(uuid.uuid4()), folder=folder, enabled=enabled, type=type_,
                                 size_before_mb=size_before_mb, size_after_mb=size_after_mb, age_days=age_days)
            s.add(rule)
            return rule.id

    def delete(self, actor: Actor, rule_id: str | None) -> None:
        actor.require_system()
        with self.store.session() as s:
            if not s.execute(delete(AutocleanRule).where(AutocleanRule.id == (rule_id or "").strip())).rowcount:
                raise MailsrvError(ResultCode.ITEM_NOT_FOUND, f"No auto-clean rule has the id '{rule_id}'.")

    def list(self, actor: Actor) -> list[Rule]:
        actor.require_system()
        with self.store.reading() as s:
            return rules(s, enabled_only=False)

    def schedule(self) -> None:
        """Start a run when one is due (called by every node's runner at each poll)."""
        with self.store.reading() as s:
            if not self._due(s):
                return
        try:
            with self.store.session() as s:
                if self._due(s):  # again under the write lock: another node may just have started one
                    total = s.execute(select(func.count(User.id))).scalar_one()
                    self.jobs.start(s, KIND, {}, total, "folder auto-clean")
        except MailsrvError as exc:
            if exc.code is not ResultCode.JOB_RUNNING:  # another node was quicker: nothing to do
                raise

    def _due(self, s: Session) -> bool:
        if s.execute(select(AutocleanRule.id).where(AutocleanRule.enabled.is_(True))).first() is None:
            return False
        last = s.execute(select(Job.active_kind, Job.finished_at).where(Job.kind == KIND)
                         .order_by(Job.started_at.desc()).limit(1)).first()
        if last is None:
            return True
        return last.active_kind is None and last.finished_at <= self.clock.now() - self.interval


def rules(s: Session, enabled_only: bool) -> list[Rule]:
    query = select(AutocleanRule).order_by(AutocleanRule.created_at, AutocleanRule.id)
    if enabled_only:
        query = query.where(AutocleanRule.enabled.is_(True))
    return [Rule(r.id, r.folder, r.enabled, r.type, r.size_before_mb, r.size_after_mb, r.age_days)
            for r in s.execute(query).scalars()]


class Autoclean:
    """The Work of an auto-clean run: the rules applied to the next batch of mailboxes."""
    kind = KIND

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def prepare(self, job: ClaimedJob, limit: int) -> Progress | None:
        with self.store.reading() as s:
            active = rules(s, enabled_only=True)
            mailboxes = s.execute(select(User.id, User.name, Domain.path).join(Domain, Domain.id == User.domain_id)
                                  .where(User.id > job.cursor).order_by(User.id).limit(limit)).all()
        if not mailboxes:
            return None
        now, removed = self.clock.now(), 0
        for _, name, domain_path in mailboxes:
            mailbox = Mailbox(Disk.maildir(domain_path, name))
            if not mailbox.root.is_dir():
                continue
            for rule in active:
                if rule.type == AGE:
                    removed += mailbox.remove_older_than(rule.folder, now - dt.timedelta(days=rule.age_days))
                else:
                    removed += mailbox.shrink(rule.folder, rule.size_before_mb * 1024 * 1024,
                                              rule.size_after_mb * 1024 * 1024)
        if removed:
            log.info("auto-clean deleted %d messages in %d mailboxes", removed, len(mailboxes))
        return Progress(mailboxes[-1].id, len(mailboxes))

    def record(self, s: Session, job: ClaimedJob, limit: int, prepared: Any) -> Progress | None:
        return prepared
