"""The queue manager: per node, one asyncio loop per kind of recipient that claims due recipients
of that kind and hands them to its target. Separate loops, so that local mail never waits behind a
batch with a slow remote peer in it.

A Target delivers one Job (claimed recipients of one message, all of one kind) and answers one
Outcome per recipient; a BatchTarget takes all of a batch's jobs at once, so it can share work
between them (local delivery: one mailbox lookup and one directory fsync per batch). Targets are
keyed by recipient kind: "local" is mailsrv.mta.local_delivery, "remote" mailsrv.mta.remote_delivery. A
target that raises defers its job (a BatchTarget: its jobs); the error is logged, the loop goes on.

Deferred recipients are retried on the admin's schedule (system setting `retryminutes`, read at
each run so a change applies at once): after the n-th failed attempt the n-th entry is waited;
when the attempt after the last entry fails too, the recipient fails for good (mailsrv.mta.spool
then spools the DSN, mailsrv.mta.bounces). A RunAware target hears when its loop has nothing left
in flight (`end_run`: the remote target closes the connections it kept open for reuse).

Several nodes may run this against one database: claims are leases taken with SKIP LOCKED, so
each recipient is worked on by one node at a time. A node renews its leases while its batch is
being delivered, so a lease can be short (2 minutes) however long a remote peer takes. A node that
dies mid-delivery delays its claimed recipients only until the live nodes notice that its
heartbeat stopped (mailsrv.mta.nodes: seconds), and its leases are the last resort. A node that
restarts on the same host does not wait even that: node ids are `host:pid:random`, and at start the
leases of this host's nodes whose process no longer exists are released at once. (So nodes
sharing a database need distinct host names, which containers and machines have by default.)
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from mailsrv.directory.system_settings import SystemSettings
from mailsrv.mta.nodes import Heartbeat
from mailsrv.mta.spool import Deferred, Job, Outcome, Spool

log = logging.getLogger(__name__)


class Target(Protocol):
    async def deliver(self, job: Job) -> list[Outcome]:
        """One outcome per job recipient, in order. Must be safe to repeat after a crash."""
        ...


@runtime_checkable
class BatchTarget(Protocol):
    async def deliver_batch(self, jobs: Sequence[Job]) -> list[Sequence[Outcome]]:
        """One outcome list per job, in order, each as Target.deliver's. Must be safe to repeat after a crash."""
        ...


def deferred_after(job: Job, exc: Exception) -> list[Outcome]:
    """The outcomes of a job whose delivery raised `exc`: every recipient tries again later."""
    return [Deferred(f"temporary delivery error: {exc}")] * len(job.recipients)


@runtime_checkable
class Abortable(Protocol):
    def abort(self) -> None:
        """Called when the node stops and deliveries are still under way after `stop_grace`:
        break off their blocking work, whose outcomes will not be recorded."""
        ...


@runtime_checkable
class RunAware(Protocol):
    async def end_run(self) -> None:
        """Called when the target's loop has nothing in flight: release what it kept open."""
        ...


@dataclass
class _Unrecorded:
    results: list[tuple[Job, Sequence[Outcome]]]
    retry_delay: Callable[[int], dt.timedelta | None]
    done: asyncio.Future[None] = field(repr=False)


class QueueManager:
    def __init__(self, spool: Spool, targets: Mapping[str, Target | BatchTarget], system: SystemSettings,
                 heartbeat: Heartbeat, batch: int = 100, lease: dt.timedelta = dt.timedelta(minutes=2),
                 poll_seconds: float = 5.0, stop_grace: float = 5.0,
                 per_destination: Mapping[str, int] | None = None) -> None:
        self.spool = spool
        self.targets = dict(targets)
        self.system = system
        self.heartbeat = heartbeat
        # A thread of its own: a heartbeat must not queue behind claims and outcomes in asyncio's
        # default executor, or a busy node would look dead to the others and fence itself.
        self._beating = ThreadPoolExecutor(1, thread_name_prefix="heartbeat")
        # Outcomes waiting to be recorded, and the task recording them (`_record_waiting`).
        self._unrecorded: list[_Unrecorded] = []
        self._recorder: asyncio.Task[None] | None = None
        self.batch = batch
        self.lease = lease
        self.poll_seconds = poll_seconds
        # How long a stop waits for deliveries under way (a hung peer could hold it for minutes);
        # those it gives up on keep their claims, which a restart on this host releases at once.
        self.stop_grace = stop_grace
        # Per kind: at most this many recipients of one destination in flight, so that a backlog
        # for one slow or dead destination leaves the other room (mailsrv.mta.destinations).
        self.per_destination = dict(per_destination or {})

    @property
    def node(self) -> str:
        """This node's id, unique per process (and per incarnation: mailsrv.mta.nodes)."""
        return self.heartbeat.node

    async def run_until_idle(self) -> int:
        """Deliver until nothing is due or in flight; the number of jobs attempted. Rounds repeat
        until one attempts nothing, as one kind's outcomes may spool another's work (a DSN)."""
        total = 0
        async with self._beating_while():
            while (done := sum(await asyncio.gather(*(self._run_kind(kind, None) for kind in self.targets)))):
                total += done
        return total

    @contextlib.asynccontextmanager
    async def _beating_while(self) -> AsyncIterator[None]:
        """Heartbeats while the body runs, the first one before it: a node claims nothing until
        its heartbeat has reached the store."""
        await self._beat()
        beating = asyncio.create_task(self._beat_every_interval())
        try:
            yield
        finally:
            beating.cancel()

    async def _beat_every_interval(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat.interval.total_seconds())
            await self._beat()

    async def _beat(self) -> None:
        try:
            dead, released = await asyncio.get_running_loop().run_in_executor(self._beating, self.heartbeat.beat)
        except Exception:  # the database is out of reach: past half the timeout, this node fences itself
            log.exception("the heartbeat of %s failed", self.node)
            return
        if dead:
            log.warning("released %d recipients claimed by dead nodes %s", released, ", ".join(sorted(dead)))
            self.spool.notify()
            # What a dead node committed but had not yet moved into new/ becomes visible now, not
            # at the next start of some node.
            try:
                moved = await asyncio.get_running_loop().run_in_executor(self._beating, self.spool.finish_renames)
            except Exception:
                log.exception("moving the deliveries of dead nodes into new/ failed")
            else:
                if moved:
                    log.warning("moved %d committed deliveries of dead nodes into new/", moved)

    async def _run_kind(self, kind: str, stop: asyncio.Event | None) -> int:
        """Deliver `kind` recipients until `stop` is set (None: until nothing is due or in flight);
        the number of jobs attempted.

        Up to `batch` jobs are in flight, and each unit's outcomes are recorded as soon as they are
        known, its room claimed again at once: a peer that takes minutes holds up only its own
        messages. A unit is one job, or for a BatchTarget everything claimed together."""
        target = self.targets[kind]
        wake = self.spool.watch()
        in_flight: dict[asyncio.Task[None], int] = {}  # unit -> its number of jobs
        renewing: asyncio.Task[None] | None = None
        attempted = 0
        try:
            while stop is None or not stop.is_set():
                wake.clear()
                room = self.batch - sum(in_flight.values()) if self.heartbeat.fresh() else 0
                try:
                    jobs = await asyncio.to_thread(self.spool.claim, self.node, room, self.lease, kind,
                                                   self.per_destination.get(kind)) if room else []
                except Exception:  # e.g. the database is down: keep the node alive and try again
                    log.exception("claiming %s recipients failed", kind)
                    jobs = []
                if jobs:
                    renewing = renewing or asyncio.create_task(self._renew_leases(kind))
                    for unit in [jobs] if isinstance(target, BatchTarget) else [[job] for job in jobs]:
                        in_flight[asyncio.create_task(self._deliver(target, kind, unit))] = len(unit)
                    attempted += len(jobs)
                    continue
                if not in_flight:
                    if renewing is not None:
                        renewing.cancel()
                        renewing = None
                    if isinstance(target, RunAware):
                        await target.end_run()
                    if stop is None:
                        break
                waiters = {asyncio.create_task(wake.wait())} | ({asyncio.create_task(stop.wait())} if stop else set())
                done, _ = await asyncio.wait(set(in_flight) | waiters, timeout=self.poll_seconds,
                                             return_when=asyncio.FIRST_COMPLETED)
                for task in waiters:
                    task.cancel()
                for task in done & set(in_flight):
                    del in_flight[task]
            if in_flight:  # stopping: what finishes within the grace period is recorded
                await self._abandon(target, kind, in_flight)
        finally:
            if renewing is not None:
                renewing.cancel()
            self.spool.unwatch(wake)
        return attempted

    async def _abandon(self, target: Target | BatchTarget, kind: str, in_flight: Iterable[asyncio.Task[None]]) -> None:
        _, unfinished = await asyncio.wait(in_flight, timeout=self.stop_grace)
        if unfinished:
            log.warning("stopping with %d %s deliveries under way: they will be attempted again", len(unfinished), kind)
            for task in unfinished:
                task.cancel()
            if isinstance(target, Abortable):
                target.abort()
            await asyncio.wait(unfinished)
        if isinstance(target, RunAware):
            await target.end_run()

    async def _deliver(self, target: Target | BatchTarget, kind: str, jobs: list[Job]) -> None:
        """Attempt a unit of jobs and record its outcomes."""
        try:
            # Read before the attempt, not after: between a peer's acceptance and the recording, a
            # node that dies leaves a message that is sent again; that window is kept short.
            schedule = await asyncio.to_thread(self.system.retry_schedule)
        except Exception:
            log.exception("reading the retry schedule failed: %d %s jobs are not attempted now", len(jobs), kind)
            return
        outcomes = await self._attempt(target, kind, jobs)
        waiting = _Unrecorded(list(zip(jobs, outcomes)), schedule.delay, asyncio.get_running_loop().create_future())
        self._unrecorded.append(waiting)
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._record_waiting(), name="queue-recorder")
        try:
            await asyncio.shield(waiting.done)
        except Exception:  # the leases run out and the recipients are attempted again
            log.exception("recording the outcomes of %d %s jobs failed", len(jobs), kind)

    async def _record_waiting(self) -> None:
        """Record every unit's outcomes waiting at that moment in one transaction (group commit):
        fewer commits under load, and a shorter wait between a peer's acceptance and its
        recording, during which a node that dies leaves a message to be sent again."""
        while self._unrecorded:
            batch, self._unrecorded = self._unrecorded, []
            by_node: dict[str, list[_Unrecorded]] = {}
            for waiting in batch:
                # As the node that claimed them, which may since have been declared dead and gone
                # on under a new id: `finish` then records only what nobody has claimed meanwhile.
                by_node.setdefault(waiting.results[0][0].node, []).append(waiting)
            for node, group in by_node.items():
                try:
                    await asyncio.to_thread(self.spool.finish, node, [r for w in group for r in w.results],
                                            group[-1].retry_delay)
                except Exception as exc:
                    for waiting in group:
                        waiting.done.set_exception(exc)
                    continue
                for waiting in group:
                    waiting.done.set_result(None)
            self.spool.notify()  # the DSNs and auto-replies just spooled may be another loop's work

    async def _attempt(self, target: Target | BatchTarget, kind: str, jobs: list[Job]) -> list[Sequence[Outcome]]:
        """The outcomes of a batch's jobs, in order."""
        if isinstance(target, BatchTarget):
            try:
                return await target.deliver_batch(jobs)
            except Exception as exc:
                log.exception("delivery of %d %s jobs failed", len(jobs), kind)
                return [deferred_after(job, exc) for job in jobs]
        return list(await asyncio.gather(*(self._attempt_one(target, job) for job in jobs)))

    async def _attempt_one(self, target: Target, job: Job) -> Sequence[Outcome]:
        try:
            return await target.deliver(job)
        except Exception as exc:
            log.exception("delivery of %s (%s) failed", job.message.id, job.kind)
            return deferred_after(job, exc)

    async def _renew_leases(self, kind: str) -> None:
        # A third of the lease between renewals: two may fail (database busy) before it runs out.
        # Per kind: each loop renews what it holds, while it holds anything.
        while True:
            await asyncio.sleep(self.lease.total_seconds() / 3)
            try:
                await asyncio.to_thread(self.spool.renew, self.node, self.lease, kind)
            except Exception:
                log.exception("renewing the leases of %s failed", self.node)

    async def release_dead_predecessors(self) -> int:
        """Release the leases of this host's nodes whose process has ended; how many recipients."""
        dead = [node for node in await asyncio.to_thread(self.spool.lease_holders) if _ended_here(node)]
        if not dead:
            return 0
        released = await asyncio.to_thread(self.heartbeat.forget, dead)
        log.warning("released %d recipients claimed by ended processes %s", released, ", ".join(sorted(dead)))
        return released

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set: one loop per kind of recipient, so that a slow remote peer
        never holds up local delivery."""
        await asyncio.to_thread(self.spool.sweep)
        await self.release_dead_predecessors()
        async with self._beating_while():
            await asyncio.gather(*(self._run_kind(kind, stop) for kind in self.targets))

    def close(self) -> None:
        self._beating.shutdown(wait=False, cancel_futures=True)


def _ended_here(node: str) -> bool:
    """Whether `node` (a QueueManager's id) ran on this host in a process that no longer exists."""
    host, _, rest = node.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, under another user
        pass
    return False
