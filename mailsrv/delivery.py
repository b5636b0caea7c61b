"""The queue manager: one asyncio task per node that claims due recipients and hands them to targets.

A Target delivers one Job (claimed recipients of one message, all of one kind) and answers one
Outcome per recipient. Targets are looked up by recipient kind: "local" is mailsrv.local_delivery;
"remote" (MX lookup and SMTP out) is not written yet, so remote recipients are deferred with a
plain reason and stay in the spool, retried on the schedule below, until a remote target is
registered. A target that raises defers its job; the error is logged, the loop goes on.

Several nodes may run this against one database: claims are leases taken with SKIP LOCKED, so
each recipient is worked on by one node at a time, and a node that dies mid-delivery only delays
its claimed recipients until the lease runs out.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from typing import Protocol

from mailsrv.spool import REMOTE, Deferred, Job, Outcome, Spool

log = logging.getLogger(__name__)

# Time between attempts: the n-th retry waits RETRY_DELAYS[n-1], then the last value again. The
# retry and give-up policy proper (and bounces) belong to the remote-delivery work.
RETRY_DELAYS = tuple(dt.timedelta(minutes=m) for m in (15, 30, 60, 90))


def retry_delay(attempts: int) -> dt.timedelta:
    return RETRY_DELAYS[min(max(attempts, 1), len(RETRY_DELAYS)) - 1]


class Target(Protocol):
    async def deliver(self, job: Job) -> list[Outcome]:
        """One outcome per job recipient, in order. Must be safe to repeat after a crash."""
        ...


class QueueManager:
    def __init__(self, spool: Spool, targets: Mapping[str, Target], batch: int = 100,
                 lease: dt.timedelta = dt.timedelta(minutes=10), poll_seconds: float = 5.0) -> None:
        self.spool = spool
        self.targets = dict(targets)
        # Unique per process: a restarted node must not mistake its predecessor's leases for its own.
        self.node = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.batch = batch
        self.lease = lease
        self.poll_seconds = poll_seconds

    async def run_once(self) -> int:
        """Claim and attempt one batch of due recipients; the number of jobs attempted."""
        jobs = await asyncio.to_thread(self.spool.claim, self.node, self.batch, self.lease)
        if not jobs:
            return 0
        outcomes = await asyncio.gather(*(self._attempt(job) for job in jobs))
        await asyncio.to_thread(self.spool.finish, self.node, list(zip(jobs, outcomes)), retry_delay)
        return len(jobs)

    async def run_until_idle(self) -> int:
        """Attempt batches until nothing is due; the number of jobs attempted."""
        total = 0
        while (done := await self.run_once()):
            total += done
        return total

    async def _attempt(self, job: Job) -> Sequence[Outcome]:
        target = self.targets.get(job.kind)
        if target is None:
            reason = "remote delivery is not available yet" if job.kind == REMOTE else f"no target for {job.kind}"
            return [Deferred(reason)] * len(job.recipients)
        try:
            return await target.deliver(job)
        except Exception as exc:
            log.exception("delivery of %s (%s) failed", job.message.id, job.kind)
            return [Deferred(f"temporary delivery error: {exc}")] * len(job.recipients)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set; woken at once by this node's spool, else every poll_seconds."""
        await asyncio.to_thread(self.spool.sweep)
        while not stop.is_set():
            self.spool.committed.clear()
            try:
                if await self.run_once():
                    continue
            except Exception:  # e.g. the database is down: keep the node alive and try again
                log.exception("queue run failed")
            waiters = {asyncio.create_task(self.spool.committed.wait()), asyncio.create_task(stop.wait())}
            _, pending = await asyncio.wait(waiters, timeout=self.poll_seconds, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
