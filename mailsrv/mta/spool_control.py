"""Spool control (svcSpoolAdmin, `mailsrv spool …`): what Postfix's postqueue/postsuper do.

Per message (every open recipient of it); system administrators only. A list of IDs naming one
that is not in the spool changes nothing and is refused naming the unknown ones (ITEM_NOT_FOUND).

- hold: the message's recipients are never claimed, so never attempted and never expire (the
  retry schedule counts attempts); an attempt under way right now still ends and is recorded
  (deferred, it stays held). Release makes it claimable again as it was.
- reset retries: the seed's "reset the retry counts on all messages in the spool" (a backup MX
  hands its mail to a primary that came back, at once): deferred recipients get attempts 0 and are
  due now. Rows still marked as claimed are left alone: their node may have got far before it
  died, and local delivery reads an attempt count above 1 as "look for a copy already written".
- delete: the rows go in one transaction, without a DSN. A delivery in flight at that moment
  cannot be recalled from its peer, but its outcome is never recorded (`Spool.finish` records
  only rows that still exist: no counters, no DSN, no auto-reply); its spool file stays for it to
  read (its modification time is renewed, so `Spool.sweep` leaves it an hour) and `sweep` removes
  it afterwards. A message with nothing in flight has its file removed at once.

Changes wake this node's queue loops at once; the other nodes see them at their next claim, within
their poll interval (`QueueManager.poll_seconds`).
"""
from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from mailsrv.core import events
from mailsrv.core.actor import Actor
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.mta.spool import DEFERRED, OPEN, Spool
from mailsrv.store.models import SpoolMessage, SpoolRecipient

MAX_RESULTS = 10_000


@dataclass(frozen=True)
class SpoolEntry:
    """A message waiting in the spool, as GetSpoolMessages and `mailsrv spool list` show it."""
    id: str
    sender: str
    recipients: list[str]  # those still open
    size: int
    attempts: int  # the most any open recipient has had
    next_attempt: dt.datetime  # UTC, the earliest of its open recipients'
    last_error: str
    held: bool


class SpoolControl:
    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.store = spool.store
        self.clock = spool.clock

    def list(self, actor: Actor, max_results: int) -> list[SpoolEntry]:
        """The `max_results` oldest messages with a recipient still open, oldest first."""
        actor.require_system()
        if not 1 <= max_results <= MAX_RESULTS:
            raise MailsrvError(ResultCode.VALUE_OUT_OF_RANGE, f"maxResults must be from 1 to {MAX_RESULTS}.")
        with self.store.reading() as s:
            messages = s.execute(
                select(SpoolMessage).where(SpoolMessage.id.in_(
                    select(SpoolRecipient.message_id).where(SpoolRecipient.status.in_(OPEN))))
                .order_by(SpoolMessage.received_at, SpoolMessage.id).limit(max_results)).scalars().all()
            rows: dict[str, list[SpoolRecipient]] = {m.id: [] for m in messages}
            for row in s.execute(select(SpoolRecipient).where(SpoolRecipient.message_id.in_(rows),
                                                              SpoolRecipient.status.in_(OPEN))
                                 .order_by(SpoolRecipient.id)).scalars():
                rows[row.message_id].append(row)
            return [_entry(m, rows[m.id]) for m in messages]

    def reset_retries(self, actor: Actor, message_ids: Sequence[str]) -> int:
        """Attempts back to 0 and due now for the deferred recipients of `message_ids` (none: of
        every message); how many recipients."""
        actor.require_system()
        with self.store.session() as s:
            where = [SpoolRecipient.status == DEFERRED, SpoolRecipient.claimed_by.is_(None)]
            if message_ids:
                where.append(SpoolRecipient.message_id.in_(self._known(s, message_ids)))
            count = s.execute(update(SpoolRecipient).where(*where)
                              .values(attempts=0, next_attempt_at=self.clock.now())).rowcount
        for message_id in message_ids or ["*"]:
            events.emit("spool", message_id, action="reset", by=actor.login)
        self.spool.notify()
        return count

    def hold(self, actor: Actor, message_ids: Sequence[str]) -> None:
        self._set_held(actor, message_ids, True)

    def release(self, actor: Actor, message_ids: Sequence[str]) -> None:
        self._set_held(actor, message_ids, False)

    def _set_held(self, actor: Actor, message_ids: Sequence[str], held: bool) -> None:
        actor.require_system()
        with self.store.session() as s:
            s.execute(update(SpoolRecipient).where(SpoolRecipient.message_id.in_(self._known(s, message_ids)),
                                                   SpoolRecipient.status.in_(OPEN)).values(held=held))
        for message_id in dict.fromkeys(message_ids):
            events.emit("spool", message_id, action="hold" if held else "release", by=actor.login)
        if not held:
            self.spool.notify()

    def delete(self, actor: Actor, message_ids: Sequence[str]) -> None:
        """Remove the messages without a DSN (see the module docstring for one in flight)."""
        actor.require_system()
        now = self.clock.now()
        with self.store.session() as s:
            ids = self._known(s, message_ids)
            in_flight = set(s.execute(select(SpoolRecipient.message_id).where(
                SpoolRecipient.message_id.in_(ids), SpoolRecipient.status.in_(OPEN),
                SpoolRecipient.claimed_until >= now)).scalars())
            paths = {m.id: m.path for m in s.execute(select(SpoolMessage).where(SpoolMessage.id.in_(ids))).scalars()}
            s.execute(delete(SpoolRecipient).where(SpoolRecipient.message_id.in_(ids)))
            s.execute(delete(SpoolMessage).where(SpoolMessage.id.in_(ids)))
        for message_id in ids:
            events.emit("spool", message_id, action="delete", by=actor.login)
        for message_id, path in paths.items():
            file = self.spool.data_dir / path
            if message_id in in_flight:
                try:
                    os.utime(file)  # keep it from `sweep` while the delivery reads it
                except FileNotFoundError:
                    pass
            else:
                file.unlink(missing_ok=True)

    @staticmethod
    def _known(s: Session, message_ids: Sequence[str]) -> list[str]:
        """`message_ids`, locked, when every one is in the spool; else ITEM_NOT_FOUND naming the others."""
        if not message_ids:
            raise MailsrvError(ResultCode.INVALID_ARGUMENT, "No message IDs were given.")
        wanted = list(dict.fromkeys(message_ids))
        found = set(s.execute(select(SpoolMessage.id).where(SpoolMessage.id.in_(wanted))
                              .order_by(SpoolMessage.id).with_for_update()).scalars())
        unknown = [message_id for message_id in wanted if message_id not in found]
        if unknown:
            raise MailsrvError(ResultCode.ITEM_NOT_FOUND, f"Not in the spool: {', '.join(unknown)}.")
        return wanted


def _entry(message: SpoolMessage, open_rows: Sequence[SpoolRecipient]) -> SpoolEntry:
    # The last error worth showing: of the recipient tried most often among those with one.
    last = max(open_rows, key=lambda r: (bool(r.last_error), r.attempts))
    return SpoolEntry(message.id, message.sender, [r.original for r in open_rows], message.size,
                      max(r.attempts for r in open_rows), min(r.next_attempt_at for r in open_rows),
                      last.last_error, any(r.held for r in open_rows))
