"""The mailbox migration queue (QueueMailBoxMigration and friends): jobs are stored only, nothing
imports them (README, "Stored-only features").

Rights: a job names the mailbox it imports into (`EmailAddress=`); whoever manages that mailbox
manages the job, and a domain administrator lists only its own domain's jobs.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select

from mailsrv.core.actor import Actor
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.directory.user_access import admin_scope, checked_text, managed_address, managed_user
from mailsrv.store.db import Store
from mailsrv.store.models import MigrationJob

PARAMETER_LIMIT = 4000  # one migration parameter value, as one setting value
MIGRATION_EMAIL_KEY = "emailaddress"
MAX_MIGRATION_PARAMETERS = 100


@dataclass(frozen=True)
class MigrationView:
    id: str
    email_address: str
    status: str


def _migration_parameters(items: Iterable[str | None]) -> dict[str, str]:
    """`key=value` strings as a mapping with lower-case keys; keys may not repeat."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = (item or "").partition("=")
        key = key.strip().lower()
        if not sep or not key:
            raise MailsrvError(ResultCode.INVALID_SETTING, f"'{item}' is not a key=value parameter.")
        if key in out:
            raise MailsrvError(ResultCode.INVALID_SETTING, f"The parameter '{key}' is given more than once.")
        out[key] = checked_text(value, f"parameter '{key}'", PARAMETER_LIMIT)
    if len(out) > MAX_MIGRATION_PARAMETERS:
        raise MailsrvError(ResultCode.VALUE_OUT_OF_RANGE,
                           f"A migration takes at most {MAX_MIGRATION_PARAMETERS} parameters.")
    return out


def _migration_view(job: MigrationJob) -> MigrationView:
    email = next((p.partition("=")[2] for p in job.parameters if p.startswith(MIGRATION_EMAIL_KEY + "=")), "")
    return MigrationView(job.id, email, job.status)


class MailboxMigrations:
    def __init__(self, store: Store) -> None:
        self.store = store

    def queue(self, actor: Actor, parameters: Iterable[str | None]) -> MigrationView:
        """Queue an import described by `key=value` parameters (keys stored in lower case).
        `EmailAddress=` names the existing mailbox to import into; the caller must manage it."""
        values = _migration_parameters(parameters)
        if not values.get(MIGRATION_EMAIL_KEY):
            raise MailsrvError(ResultCode.INVALID_ARGUMENT,
                               "A migration needs EmailAddress=, the mailbox to import into.")
        with managed_user(self.store, actor, values[MIGRATION_EMAIL_KEY]) as (s, user):
            values[MIGRATION_EMAIL_KEY] = f"{user.name}@{user.domain.name}"
            job = MigrationJob(id=str(uuid.uuid4()), parameters=[f"{k}={v}" for k, v in values.items()],
                               status="Queued")
            s.add(job)
        return _migration_view(job)

    def list(self, actor: Actor) -> list[MigrationView]:
        """Every job for a system administrator; a domain administrator's own domain's jobs."""
        scope = admin_scope(actor)
        with self.store.session() as s:
            rows = s.execute(select(MigrationJob).order_by(MigrationJob.created_at, MigrationJob.id)).scalars()
            jobs = [_migration_view(j) for j in rows]
        return [j for j in jobs if scope is None or j.email_address.endswith("@" + scope)]

    def remove(self, actor: Actor, raw_id: str | None) -> None:
        with self.store.session() as s:
            job = s.get(MigrationJob, (raw_id or "").strip().lower())
            if job is None:
                raise MailsrvError(ResultCode.ITEM_NOT_FOUND, f"No queued migration has the id '{raw_id}'.")
            managed_address(actor, _migration_view(job).email_address)
            s.delete(job)
