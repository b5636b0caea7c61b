"""Background jobs over every domain or mailbox, shared by every node through the store.

A job is a row (`jobs`): its kind, parameters, state and progress. Any node may start one; every
node runs a `JobRunner`, and one of them at a time works on a job: it claims the row under a lease
(`claimed_by`, `claimed_until`; `FOR UPDATE SKIP LOCKED` on PostgreSQL, SQLite's single writer
otherwise) and renews it while it works. The work goes in batches: each batch's effect on the store
commits in the same transaction as the job's new `cursor` (the last domain or user id done) and
`done` count, and only while the node still holds the claim, so after a crash or a kill another
node (once the lease has run out) or the restarted one goes on after the last committed batch and
no batch is recorded twice. Effects outside the store (files an auto-clean deletes) happen before
that commit and are idempotent: repeated after a crash, they find nothing more to do. In the
wiring a node's id is its heartbeat's (mailsrv.mta.nodes): when the other nodes find it dead,
they release its job with its recipients, without waiting for the lease.

What a kind does is a `Work`: `prepare` runs outside the transaction (disk work, may read the
store), `record` inside it; None from either means there is nothing after the cursor any more.
One job per kind is active at a time (the unique `active_kind`): a second start is refused with
JOB_RUNNING, whatever node it reaches.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from mailsrv.core.clock import Clock
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.mailstore.disk import fault_point
from mailsrv.store.db import Store
from mailsrv.store.models import Job

log = logging.getLogger(__name__)

RUNNING, FINISHED, FAILED = "Running", "Finished", "Failed"
# A fault point after each batch's commit (mailsrv.mailstore.disk): tests kill a node there.
BATCH_COMMITTED = "job-batch-committed"


@dataclass(frozen=True)
class Progress:
    cursor: int  # the last id the batch covered
    done: int  # how many items the batch did


@dataclass(frozen=True)
class ClaimedJob:
    id: str
    kind: str
    parameters: dict[str, Any]
    cursor: int


class Work(Protocol):
    kind: str

    def prepare(self, job: ClaimedJob, limit: int) -> Any:
        """Outside any transaction: what can be done before the commit (idempotent). None: nothing left."""
        ...

    def record(self, s: Session, job: ClaimedJob, limit: int, prepared: Any) -> Progress | None:
        """Inside the batch's transaction, after `prepare`'s answer: the batch's store effect."""
        ...


@dataclass(frozen=True)
class JobStatus:
    id: str
    state: str
    done: int
    total: int
    started: dt.datetime
    finished: dt.datetime | None
    parameters: dict[str, Any]
    error: str


class Jobs:
    """The job rows: start, claim, advance, status. Blocking: call off the event loop."""

    def __init__(self, store: Store, clock: Clock, lease: dt.timedelta, batch: int) -> None:
        self.store = store
        self.clock = clock
        self.lease = lease
        self.batch = batch
        self.works: dict[str, Work] = {}

    def register(self, work: Work) -> None:
        self.works[work.kind] = work

    def start(self, s: Session, kind: str, parameters: Mapping[str, Any], total: int, what: str) -> str:
        """A new job of `kind` in the caller's transaction (flushed here); its id. Refused with
        JOB_RUNNING while one of that kind is not over. Earlier jobs of the kind are forgotten:
        the status shows the latest."""
        if s.execute(select(Job.id).where(Job.active_kind == kind)).first() is not None:
            raise _running(what)
        s.execute(delete(Job).where(Job.kind == kind))
        job = Job(id=uuid.uuid4().hex, kind=kind, active_kind=kind, state=RUNNING, parameters=dict(parameters),
                  cursor=0, done=0, total=total, error="", started_at=self.clock.now())
        s.add(job)
        try:
            with s.begin_nested():
                s.flush()
        except IntegrityError:  # another node started one between our check and our insert
            raise _running(what) from None
        return job.id

    def latest(self, kind: str) -> JobStatus | None:
        with self.store.reading() as s:
            job = s.execute(select(Job).where(Job.kind == kind).order_by(Job.started_at.desc()).limit(1)).scalar()
            if job is None:
                return None
            return JobStatus(job.id, job.state, job.done, job.total, job.started_at, job.finished_at,
                             dict(job.parameters), job.error)

    def claim(self, node: str) -> ClaimedJob | None:
        """Take a job that nobody holds (never claimed, released, or its lease run out) for `node`."""
        now = self.clock.now()
        claimable = (Job.active_kind.in_(self.works), or_(Job.claimed_until.is_(None), Job.claimed_until < now))
        # Every node asks at every poll: read first, so that on SQLite the one write lock is taken
        # only when there is a job to claim.
        with self.store.reading() as s:
            if s.execute(select(Job.id).where(*claimable).limit(1)).first() is None:
                return None
        with self.store.session() as s:
            job = s.execute(select(Job).where(*claimable).order_by(Job.started_at).limit(1)
                            .with_for_update(skip_locked=True)).scalar()
            if job is None:
                return None
            if job.claimed_by is not None and job.claimed_by != node:
                log.warning("taking over job %s (%s) from %s (found dead, or its lease ran out)", job.id, job.kind,
                            job.claimed_by)
            job.claimed_by, job.claimed_until = node, now + self.lease
            return ClaimedJob(job.id, job.kind, dict(job.parameters), job.cursor)

    def _held(self, s: Session, job: ClaimedJob, node: str) -> Job | None:
        """The job's row, locked, while `node` still holds it."""
        row = s.execute(select(Job).where(Job.id == job.id).with_for_update()).scalar()
        if row is None or row.claimed_by != node or row.active_kind is None:
            return None
        return row

    def renew(self, job: ClaimedJob, node: str) -> bool:
        """Extend the lease; False when the job is no longer this node's (taken over, or over)."""
        with self.store.session() as s:
            row = self._held(s, job, node)
            if row is None:
                return False
            row.claimed_until = self.clock.now() + self.lease
            return True

    def release(self, job: ClaimedJob, node: str) -> None:
        """Give the job back at once (stopping): another node may go on with it now."""
        with self.store.session() as s:
            s.execute(update(Job).where(Job.id == job.id, Job.claimed_by == node).values(claimed_until=None))

    def step(self, job: ClaimedJob, node: str) -> ClaimedJob | None:
        """Do one batch of `job` and commit it with the job's progress; the job as it goes on, or
        None when it is over or no longer this node's."""
        work = self.works[job.kind]
        try:
            prepared = work.prepare(job, self.batch)
            with self.store.session() as s:
                row = self._held(s, job, node)
                if row is None:
                    log.warning("job %s is no longer held by %s: its batch is not recorded", job.id, node)
                    return None
                progress = work.record(s, job, self.batch, prepared) if prepared is not None else None
                now = self.clock.now()
                if progress is None:
                    row.state, row.active_kind, row.finished_at = FINISHED, None, now
                    row.claimed_by = row.claimed_until = None
                    return None
                row.cursor, row.done = progress.cursor, row.done + progress.done
                row.claimed_until = now + self.lease
        except MailsrvError as exc:
            self._fail(job, node, exc.message)
            return None
        except DBAPIError:
            raise  # the database out of reach: the lease runs out and the job is taken up again
        except Exception as exc:
            log.exception("job %s (%s) failed", job.id, job.kind)
            self._fail(job, node, f"{type(exc).__name__}: {exc}")
            return None
        fault_point(BATCH_COMMITTED)
        return ClaimedJob(job.id, job.kind, job.parameters, progress.cursor)

    def _fail(self, job: ClaimedJob, node: str, error: str) -> None:
        with self.store.session() as s:
            row = self._held(s, job, node)
            if row is not None:
                row.state, row.active_kind, row.finished_at, row.error = FAILED, None, self.clock.now(), error
                row.claimed_by = row.claimed_until = None

    def run_until_idle(self, node: str) -> int:
        """Claim and finish jobs until none is left to claim (blocking); the number of batches done.
        The runner's loop does the same with lease renewals and stops; tests and tools call this."""
        batches = 0
        while (job := self.claim(node)) is not None:
            while job is not None:
                job = self.step(job, node)
                batches += 1
        return batches


def release_jobs(s: Session, nodes: Sequence[str]) -> None:
    """In the caller's transaction: the jobs claimed by `nodes`, known dead (mailsrv.mta.nodes), may
    be claimed at once rather than when their leases run out."""
    s.execute(update(Job).where(Job.claimed_by.in_(nodes)).values(claimed_until=None))


def _running(what: str) -> MailsrvError:
    return MailsrvError(ResultCode.JOB_RUNNING, f"A {what} is already running; wait until it has finished.")


class JobRunner:
    """Every node's loop: claim a job when there is one, work on it batch by batch while renewing its
    lease, look again every `poll_seconds` (and let `schedule` start periodic jobs)."""

    def __init__(self, jobs: Jobs, node: Callable[[], str], poll_seconds: float,
                 schedule: Callable[[], None] = lambda: None) -> None:
        self.jobs = jobs
        self.node = node
        self.poll_seconds = poll_seconds
        self.schedule = schedule

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            node = self.node()
            try:
                await asyncio.to_thread(self.schedule)
                job = await asyncio.to_thread(self.jobs.claim, node)
            except Exception:  # e.g. the database is down: try again at the next poll
                log.exception("looking for background jobs failed")
                job = None
            if job is not None:
                await self._work(job, node, stop)
                continue
            try:
                await asyncio.wait_for(stop.wait(), self.poll_seconds)
            except TimeoutError:
                pass

    async def _work(self, job: ClaimedJob, node: str, stop: asyncio.Event) -> None:
        renewing = asyncio.create_task(self._renew(job, node))
        current: ClaimedJob | None = job
        try:
            while current is not None and not stop.is_set():
                current = await asyncio.to_thread(self.jobs.step, current, node)
            if current is not None:  # stopping between two batches: another node goes on at once
                await asyncio.to_thread(self.jobs.release, current, node)
        except Exception:
            log.exception("job %s (%s) stopped on an error; it is taken up again after its lease", job.id, job.kind)
        finally:
            renewing.cancel()

    async def _renew(self, job: ClaimedJob, node: str) -> None:
        """While one batch takes long (a large Maildir), so that the lease does not run out under it."""
        while True:
            await asyncio.sleep(self.jobs.lease.total_seconds() / 3)
            try:
                if not await asyncio.to_thread(self.jobs.renew, job, node):
                    return
            except Exception:
                log.exception("renewing the lease of job %s failed", job.id)
