"""Domain settings propagation (svcGlobalUpdate; the seed's "Default Domain Settings Propagation").

The values are checked first, as SetRequestedDomainSettings checks them (the DOMAIN table of
mailsrv.core.settings and the domain checks of mailsrv.directory.domains): one bad key or value and
nothing is started. Then a background job (mailsrv.directory.jobs) applies them to every domain that
existed when it started, in id order, `[jobs] batch_size` domains per transaction with one bulk
UPDATE that merges the values into each domain's settings document in the database (no domain is
loaded into Python: memory stays flat at 100,000 domains). The UPDATE raises the directory
generation (migration 0007's triggers on domains.settings), so SMTP's cached lookups on every node
see each batch's values at their next transaction, as after SetRequestedDomainSettings.

Domains added while a job runs keep the defaults they were created with: propagation and the
defaults (SetRequestedDomainDefaults) are separate, as in the seed. A domain deleted meanwhile is
simply not counted, so `done` may end below `total`.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from mailsrv.core import settings
from mailsrv.core.actor import Actor
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.directory.domains import validate_settings
from mailsrv.directory.jobs import ClaimedJob, Jobs, JobStatus, Progress
from mailsrv.store.db import Store
from mailsrv.store.models import Domain

KIND = "propagation"
# The catch-all names an alias of its own domain: no one value fits every domain.
NOT_PROPAGATED = frozenset({"catchall"})
_TYPE_NAMES = {bool: "bool", int: "int", str: "string"}

# Merge the JSON object :patch into the settings of the domains with ids in (:after, :last].
_MERGE = {
    "sqlite": text("UPDATE domains SET settings = json_patch(settings, :patch) WHERE id > :after AND id <= :last"),
    "postgresql": text("UPDATE domains SET settings = CAST(CAST(settings AS jsonb) || CAST(:patch AS jsonb) AS json) "
                       "WHERE id > :after AND id <= :last"),
}


class Propagation:
    """The Work of a propagation job: parameters {"settings": {key: value}, "last_id": id}."""
    kind = KIND

    def prepare(self, job: ClaimedJob, limit: int) -> bool:
        return True  # everything happens in the batch's transaction

    def record(self, s: Session, job: ClaimedJob, limit: int, prepared: Any) -> Progress | None:
        ids = select(Domain.id).where(Domain.id > job.cursor, Domain.id <= job.parameters["last_id"]) \
            .order_by(Domain.id).limit(limit).subquery()
        count, last = s.execute(select(func.count(), func.max(ids.c.id))).one()
        if not count:
            return None
        patch = json.dumps(job.parameters["settings"])
        s.execute(_MERGE[s.get_bind().dialect.name], {"patch": patch, "after": job.cursor, "last": last})
        return Progress(last, count)


class GlobalUpdate:
    def __init__(self, store: Store, jobs: Jobs) -> None:
        self.store = store
        self.jobs = jobs
        jobs.register(Propagation())

    def fields(self, actor: Actor) -> list[str]:
        """`key=type` of every domain setting that may be propagated."""
        actor.require_system()
        return [f"{name}={_TYPE_NAMES[key.kind]}" for name, key in settings.DOMAIN.items()
                if name not in NOT_PROPAGATED]

    def start(self, actor: Actor, assignments: Iterable[str | None]) -> str:
        """Check every value, then start the job that applies them to every domain; its id."""
        actor.require_system()
        assignments = list(assignments)
        if not assignments:
            raise MailsrvError(ResultCode.INVALID_ARGUMENT, "No settings to apply: give at least one key=value.")
        changes = settings.parse_assignments(settings.DOMAIN, assignments)
        if NOT_PROPAGATED & changes.keys():
            raise MailsrvError(ResultCode.INVALID_SETTING, f"Setting '{min(NOT_PROPAGATED & changes.keys())}' is "
                               "particular to each domain and cannot be applied to all.")
        with self.store.session() as s:
            validate_settings(s, None, changes)
            total, last = s.execute(select(func.count(Domain.id), func.max(Domain.id))).one()
            return self.jobs.start(s, KIND, {"settings": changes, "last_id": last or 0}, total,
                                   "global update")

    def status(self, actor: Actor) -> list[str]:
        """The status keys of GetGlobalUpdateStatus (extensions.md)."""
        actor.require_system()
        job = self.jobs.latest(KIND)
        if job is None:
            return ["id=", "state=Idle", "done=0", "total=0", "started=", "finished=", "fields=", "error="]
        return [f"id={job.id}", f"state={job.state}", f"done={job.done}", f"total={job.total}",
                f"started={_iso(job)}", f"finished={_iso(job, finished=True)}",
                f"fields={','.join(job.parameters['settings'])}", f"error={job.error}"]


def _iso(job: JobStatus, finished: bool = False) -> str:
    when = job.finished if finished else job.started
    return when.strftime("%Y-%m-%dT%H:%M:%SZ") if when is not None else ""
