"""Digests of a mailing list (`digestmode`): its digest subscribers (ListMember kind DIGEST) get the
accepted posts bundled, RFC 1153 style as MIME: a `multipart/mixed` message holding a text/plain
table of contents and a `multipart/digest` of the posts as `message/rfc822` parts.

Posting keeps every accepted post of a list in digest mode (`keep`): a durable copy in
`<data_dir>/digests/<list id>/` and a `list_digest_posts` row, committed with the post itself. A
list's digest is due when its oldest waiting post has waited PERIOD (one day), or the waiting posts
reach MAX_POSTS (50) or
MAX_BYTES (100 KB); `send_due` (every node runs it from its periodic loop; `send_if_due` after
the commit of a post that makes the digest due) sends each due one.

One node at a time: the digest's spool file is written, then one transaction deletes exactly the
posts it holds and adds the digest's spool rows (Spool.add_rows). A node that finds fewer rows
than it read (another node's digest took them) rolls back and drops its file, so each post is in
exactly one digest whatever the nodes do; a crash before that commit leaves the posts waiting and
an unreferenced spool file the spool's sweep removes; the posts' files go after the commit (and
`sweep` removes those a crash, or a deleted list, left behind).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import email.errors
import email.header
import email.utils
import logging
import os
import time
import uuid
from dataclasses import dataclass
from email.message import Message
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.parser import BytesParser
from email.policy import compat32
from pathlib import Path

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from mailsrv.core.clock import Clock
from mailsrv.mailstore.disk import fsync_directory
from mailsrv.mta.intake import spool_recipients
from mailsrv.mta.recipients import Deliver, Resolver
from mailsrv.mta.spool import IncomingMessage, Spool
from mailsrv.store.db import Store
from mailsrv.store.models import DIGEST, DigestPost, Domain, ListMember, MailingList

log = logging.getLogger(__name__)

PERIOD = dt.timedelta(days=1)
MAX_POSTS = 50
MAX_BYTES = 100 * 1024
CHECK_INTERVAL = dt.timedelta(minutes=1)
_CRLF = compat32.clone(linesep="\r\n")


@dataclass(frozen=True)
class _Pending:
    ids: list[int]
    paths: list[str]
    subjects: list[str]
    authors: list[str]


def _header(message: Message, name: str) -> str:
    """A header's text for the table of contents; as it stands when its encoded words do not decode."""
    raw = str(message.get(name, ""))
    try:
        raw = str(email.header.make_header(email.header.decode_header(raw)))
    except (email.errors.HeaderParseError, LookupError, UnicodeDecodeError):
        pass
    return " ".join(raw.split())


class Digests:
    def __init__(self, store: Store, resolver: Resolver, spool: Spool, clock: Clock, data_dir: Path) -> None:
        self.store = store
        self.resolver = resolver
        self.spool = spool
        self.clock = clock
        self.data_dir = data_dir

    def keep(self, mailing_list: MailingList, message: bytes) -> DigestPost | None:
        """A durable copy of an accepted post of `mailing_list` for its next digest, and its row for the
        post's own transaction (mailsrv.mta.list_server); None when the list is not in digest mode.
        Blocking."""
        if not (mailing_list.settings or {}).get("digestmode"):
            return None
        directory = self.data_dir / "digests" / str(mailing_list.id)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{uuid.uuid4().hex}.eml"
        with open(path, "wb") as f:
            f.write(message)
            f.flush()
            os.fsync(f.fileno())
        fsync_directory(directory)
        headers = BytesParser(policy=compat32).parsebytes(message, headersonly=True)
        return DigestPost(list_id=mailing_list.id, path=str(path.relative_to(self.data_dir)),
                          subject=_header(headers, "Subject")[:500], author=_header(headers, "From")[:500],
                          size=len(message), added_at=self.clock.now())

    def send_if_due(self, list_id: int) -> bool:
        """Send the list's digest when its posts make it due (after a post's commit); whether it was sent."""
        return list_id in self.due() and self.send(list_id)

    def due(self) -> list[int]:
        """The lists whose digest is due (see the module docstring)."""
        with self.store.session() as s:
            return list(s.execute(
                select(DigestPost.list_id).group_by(DigestPost.list_id).having(or_(
                    func.min(DigestPost.added_at) <= self.clock.now() - PERIOD,
                    func.count() >= MAX_POSTS, func.sum(DigestPost.size) >= MAX_BYTES))).scalars())

    async def run(self, stop: asyncio.Event) -> None:
        """Every node: send the due digests every CHECK_INTERVAL until `stop` is set."""
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.send_due)
                await asyncio.to_thread(self.sweep)
            except Exception:  # the store may be away for a moment: the next round tries again
                log.exception("sending due digests failed")
            try:
                await asyncio.wait_for(stop.wait(), CHECK_INTERVAL.total_seconds())
            except TimeoutError:
                pass

    def sweep(self, min_age: dt.timedelta = dt.timedelta(hours=1)) -> int:
        """Remove post files no row refers to: a crash between a post's file and its row, a crash
        after a digest's commit, a deleted list's waiting posts (their rows went with the list). Only
        files older than `min_age`: a node may be between a file and its row right now."""
        root = self.data_dir / "digests"
        if not root.is_dir():
            return 0
        with self.store.session() as s:
            known = set(s.execute(select(DigestPost.path)).scalars())
        cutoff = time.time() - min_age.total_seconds()
        removed = 0
        for path in root.glob("*/*.eml"):
            try:
                if str(path.relative_to(self.data_dir)) not in known and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:  # another node's sweep, at the same moment
                continue
        return removed

    def send_due(self) -> int:
        """Send every due digest; how many this node sent (blocking)."""
        return sum(self.send(list_id) for list_id in self.due())

    def send(self, list_id: int) -> bool:
        """Send the list's waiting posts as one digest now; False when another node took them or there
        were none."""
        with self.store.session() as s:
            found = s.execute(select(MailingList, Domain.name).join(Domain, Domain.id == MailingList.domain_id)
                              .where(MailingList.id == list_id)).first()
            rows = s.execute(select(DigestPost.id, DigestPost.path, DigestPost.subject, DigestPost.author)
                             .where(DigestPost.list_id == list_id).order_by(DigestPost.id)).all()
            subscribers = list(s.execute(select(ListMember.address).where(
                ListMember.list_id == list_id, ListMember.kind == DIGEST, ~ListMember.disabled)).scalars())
        if found is None or not rows:
            return False
        mailing_list, domain = found
        pending = _Pending(*map(list, zip(*rows)))
        digest = self._message(f"{mailing_list.name}@{domain}", mailing_list, pending, subscribers)
        if digest.recipients:
            self.spool.write_file(digest)
        try:
            with self.store.session() as s:
                if not self._take(s, pending.ids):
                    raise _Taken()
                if digest.recipients:
                    self.spool.add_rows(s, digest)
        except _Taken:
            (self.spool.directory / digest.id).unlink(missing_ok=True)
            return False
        except BaseException:
            (self.spool.directory / digest.id).unlink(missing_ok=True)
            raise
        for path in pending.paths:
            (self.data_dir / path).unlink(missing_ok=True)
        log.info("digest of %d post(s) of %s@%s to %d subscriber(s)", len(pending.ids), mailing_list.name, domain,
                 len(subscribers))
        self.spool.notify()
        return True

    @staticmethod
    def _take(s: Session, ids: list[int]) -> bool:
        return s.execute(delete(DigestPost).where(DigestPost.id.in_(ids))).rowcount == len(ids)

    def _message(self, address: str, mailing_list: MailingList, pending: _Pending,
                 subscribers: list[str]) -> IncomingMessage:
        now = self.clock.now()
        name, _, domain = address.partition("@")
        toc = [f"{address} digest, {now:%a, %d %b %Y}: {len(pending.ids)} message(s)", "", "Today's Topics:", ""]
        toc += [f"  {n}. {subject or '(no subject)'} ({author})"
                for n, (subject, author) in enumerate(zip(pending.subjects, pending.authors), 1)]
        toc += ["", f"To leave the digest, write to {name}-unsubscribe@{domain}.", ""]
        digest = MIMEMultipart("digest")
        for path in pending.paths:
            with open(self.data_dir / path, "rb") as f:
                digest.attach(MIMEMessage(BytesParser(policy=compat32).parse(f)))
        outer = MIMEMultipart("mixed")
        outer["From"] = address
        outer["To"] = address
        outer["Subject"] = f"{name} Digest, {now:%d %b %Y}, {len(pending.ids)} message(s)"
        outer["Date"] = email.utils.format_datetime(now)
        outer["Message-ID"] = email.utils.make_msgid(domain=domain)
        outer["List-Id"] = f"<{name}.{domain}>"
        outer["List-Unsubscribe"] = f"<mailto:{name}-unsubscribe@{domain}>"
        outer["Precedence"] = "list"
        outer.attach(MIMEText("\n".join(toc), "plain", "utf-8"))
        outer.attach(digest)
        accepted = []
        for subscriber in subscribers:
            resolution = self.resolver.resolve(subscriber)
            if isinstance(resolution, Deliver):
                accepted.append((subscriber, resolution))
            else:
                log.warning("digest of %s: subscriber %s does not resolve", address, subscriber)
        message_id = Spool.new_id()
        return IncomingMessage(
            id=message_id, sender=address, content=outer.as_bytes(policy=_CRLF), received_at=now,
            client_ip="", helo="", trace_header=(f"Received: by {domain} (mailsrv digest) id {message_id};\r\n"
                                                 f"\t{email.utils.format_datetime(now)}\r\n"),
            recipients=spool_recipients(accepted))


class _Taken(Exception):
    """Another node's digest took the posts first."""
