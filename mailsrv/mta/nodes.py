"""Node liveness: heartbeats in the store, so that a dead node's claims are taken over in seconds.

Every queue manager (a `mailsrv serve` process, or each of its workers) is a node. It writes its
heartbeat into the `nodes` table every `[delivery] heartbeat_seconds`; in the same transaction it
forgets every node whose heartbeat is older than `node_timeout_seconds`: their rows go and their
claimed recipients are released (due at once), so the live nodes take them over without waiting
for the claims' 2-minute leases. Leases stay as the last resort (a node of an older version, a
claim made before the first heartbeat).

Fencing. A node declared dead may only have been stalled (a long pause, the database out of reach)
and still be delivering what another node now takes over. So a node counts itself alive only for
half the timeout after its last heartbeat that reached the store (timed from before the write):
past that it claims nothing, and remote delivery sends no message's final dot for it
(`Heartbeat.holds`), which is the step that cannot be taken back. The others declare it dead only
after the full timeout, measured from the instant written in its last heartbeat, so a remote
delivery that passed the check ends before its recipients can be taken over unless the peer takes
longer than half the timeout to answer the final dot (RFC 1047's window, which no sender closes).
Local delivery needs no fence: a redelivery finds the copy already written by its file name. A node
that finds its heartbeat row gone was declared dead: it goes on under a new node id, so nothing it
had claimed under the old one passes the fence any more; `Spool.finish` records outcomes only for
rows the node still holds, so whatever another node took over is recorded by that node alone.

Each heartbeat also publishes what only the node's process knows: its open SMTP, POP and IMAP
sessions (RequestStatus sums them over the nodes, so the figure is at most one heartbeat interval
old) and the listeners it could not bind (ListServerPorts reports them).
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from mailsrv.core.clock import Clock
from mailsrv.directory.jobs import release_jobs
from mailsrv.core.sessions import IMAP, POP, SMTP, OpenSessions
from mailsrv.mta.spool import Spool
from mailsrv.store.db import Store
from mailsrv.store.models import Node

log = logging.getLogger(__name__)


def new_node_id() -> str:
    """Unique per process and incarnation: `host:pid:random`. The host and pid let a restarted
    node release at once the claims of an ended process of its own host (QueueManager)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def forget(s: Session, nodes: Sequence[str]) -> int:
    """Delete the rows of `nodes`, known dead, and release their claims (recipients, and the
    background job one of them was working on: mailsrv.directory.jobs); how many recipients."""
    if not nodes:
        return 0
    s.execute(delete(Node).where(Node.id.in_(nodes)))
    release_jobs(s, nodes)
    return Spool.release(s, nodes)


class Heartbeat:
    def __init__(self, store: Store, clock: Clock, interval: dt.timedelta, timeout: dt.timedelta,
                 sessions: OpenSessions | None = None) -> None:
        self.store = store
        self.sessions = sessions or OpenSessions()
        # Set by the wiring's listener manager: one "address (protocol): reason" per listener.
        self.listen_errors: list[str] = []
        self.clock = clock
        self.interval = interval
        self.timeout = timeout
        self.node = new_node_id()
        self._beaten_at: float | None = None  # time.monotonic() before the last beat that committed

    def forget(self, nodes: Sequence[str]) -> int:
        """`forget` in a transaction of its own (blocking)."""
        with self.store.session() as s:
            return forget(s, nodes)

    def fresh(self) -> bool:
        """Whether this node may start deliveries: its last heartbeat reached the store less than
        half the timeout ago."""
        return (self._beaten_at is not None
                and time.monotonic() - self._beaten_at < self.timeout.total_seconds() / 2)

    def holds(self, node: str) -> bool:
        """Whether a delivery claimed as `node` may still take a step that cannot be undone."""
        return node == self.node and self.fresh()

    def beat(self) -> tuple[list[str], int]:
        """Write this node's heartbeat and forget the dead nodes (blocking): their ids and the
        number of recipients released."""
        started, now = time.monotonic(), self.clock.now()
        published = {"smtp_sessions": self.sessions.count(SMTP), "pop_sessions": self.sessions.count(POP),
                     "imap_sessions": self.sessions.count(IMAP), "listen_errors": "\n".join(self.listen_errors)}
        with self.store.session() as s:
            if not s.execute(update(Node).where(Node.id == self.node).values(beat_at=now, **published)).rowcount:
                if self._beaten_at is not None:
                    old, self.node = self.node, new_node_id()
                    log.warning("node %s was declared dead (no heartbeat for %s): going on as %s",
                                old, self.timeout, self.node)
                s.add(Node(id=self.node, beat_at=now, **published))
                s.flush()
            dead = list(s.execute(select(Node.id).where(Node.beat_at < now - self.timeout)).scalars())
            released = forget(s, dead)
        self._beaten_at = started
        return dead, released
