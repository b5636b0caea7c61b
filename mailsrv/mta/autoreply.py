"""Auto-responders: a user's configured reply to mail delivered into its mailbox.

When local delivery has put a message into the Maildir of a user whose auto-responder is on, it
asks `AutoResponder.prepare` for a reply. The reply is an ordinary spool message (delivered
locally, or remotely once remote delivery exists) whose file is written at once and whose rows
Spool.finish adds in the transaction that records the delivery, together with the "answered this
sender" row (`PendingReply.claim`). A crash before that commit retries the delivery (the Maildir
write is idempotent) and prepares the reply again; after it, the reply is queued exactly once.

Never answered (RFC 3834 section 2, the rules of Sieve's vacation, RFC 5230 section 4.6):
- automatic, bulk and list mail, by the rule DSNs follow too (mailsrv.mta.loop_guard): the null
  sender, daemon and list senders by name, DSNs, `Auto-Submitted` other than `no` (which includes
  our own replies: no reply loops), `Precedence: bulk/junk/list`, List-Id, List-Unsubscribe;
- the user itself;
- a sender already answered within `[autoreply] window_days` (default 1 day);
- anything, when the server's Auto-Responders policy (system setting `autoresponders`) is Disabled;
  under RequireSPF, mail whose SPF check at SMTP time did not pass, unless its client authenticated
  (mailsrv.mta.spf_check.may_answer; the lock-down guide: replying to forged senders gets a server
  blacklisted).

The reply: From the user, To the original envelope sender, the configured subject and body as
UTF-8 text, `Auto-Submitted: auto-replied`, In-Reply-To/References to the original. Its envelope
sender is null, as RFC 3834 recommends: a reply that cannot be delivered is dropped rather than
bounced to the user.
"""
from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
import logging
import re
from dataclasses import dataclass
from email.message import EmailMessage, Message

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mailsrv.core.clock import Clock
from mailsrv.mailstore.headers import read_headers
from mailsrv.mta import loop_guard, spf_check
from mailsrv.mta.intake import spool_recipients
from mailsrv.mta.recipients import Deliver, Resolver
from mailsrv.mta.spool import IncomingMessage, Spool, SpooledMessage
from mailsrv.store.db import Store
from mailsrv.store.models import AutoReplySent, User

log = logging.getLogger(__name__)

_MESSAGE_ID = re.compile(r"<[^<>\s]+>")


def _message_ids(value: object) -> list[str]:
    return _MESSAGE_ID.findall(str(value or ""))


def refusal(sender: str, user_address: str, headers: Message) -> str | None:
    """Why a message from `sender` to the user at `user_address` must not be answered, on what
    the message itself says (the user's settings, the policy and the window come after); None
    when it may be."""
    return loop_guard.refusal(sender, headers) or ("own address" if sender.lower() == user_address.lower() else None)


def compose(user_address: str, sender: str, subject: str, body: str, original: Message, when: dt.datetime,
            hostname: str) -> bytes:
    """The reply as CRLF bytes, like everything in the spool."""
    reply = EmailMessage(policy=email.policy.SMTP)
    reply["From"] = user_address
    reply["To"] = sender
    # One line whatever was stored: a header must not be split into two by the text.
    reply["Subject"] = " ".join(subject.split()) or "Automatic reply"
    reply["Date"] = email.utils.format_datetime(when)
    reply["Message-ID"] = email.utils.make_msgid(domain=hostname)
    original_id = _message_ids(original.get("Message-ID"))[:1]
    if original_id:
        reply["In-Reply-To"] = original_id[0]
        thread = _message_ids(original.get("References")) or _message_ids(original.get("In-Reply-To"))
        reply["References"] = " ".join(thread + original_id)
    reply["Auto-Submitted"] = "auto-replied"
    reply.set_content(body, charset="utf-8")
    return reply.as_bytes()


@dataclass(frozen=True)
class PendingReply:
    """A prepared reply, a mailsrv.mta.spool.FollowUp: spooled by finish if the window still allows it."""
    message: IncomingMessage
    user_id: int
    sender: str  # lower-case: the key of the once-per-window rule
    window: dt.timedelta

    def claim(self, s: Session, now: dt.datetime) -> bool:
        """Record the reply unless this sender was answered within the window. One statement
        (INSERT … ON CONFLICT DO UPDATE … WHERE) on SQLite and PostgreSQL alike, so two nodes
        finishing two messages from one sender at the same moment send one reply."""
        insert = postgresql_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
        statement = (insert(AutoReplySent).values(user_id=self.user_id, sender=self.sender, sent_at=now)
                     .on_conflict_do_update(index_elements=["user_id", "sender"], set_={"sent_at": now},
                                            where=AutoReplySent.sent_at <= now - self.window)
                     .returning(AutoReplySent.user_id))
        return s.execute(statement).first() is not None


class AutoResponder:
    def __init__(self, store: Store, resolver: Resolver, spool: Spool, clock: Clock, window: dt.timedelta) -> None:
        self.store = store
        self.resolver = resolver
        self.spool = spool
        self.clock = clock
        self.window = window

    def prepare(self, message: SpooledMessage, user_address: str, user_id: int) -> PendingReply | None:
        """The reply to `message`, just delivered to the user's mailbox, with its spool file
        written; None when no reply is due. Blocking (reads the message and the store)."""
        sender = message.sender
        headers = read_headers(message.path)
        reason = refusal(sender, user_address, headers)
        if reason is None:
            reason, subject, body, hostname = self._check_store(message, user_id, sender.lower())
        if reason is not None:
            log.debug("no auto-reply from %s to %s: %s", user_address, sender or "<>", reason)
            return None
        resolution = self.resolver.resolve(sender)
        if not isinstance(resolution, Deliver):
            log.info("no auto-reply from %s to %s: the address does not resolve", user_address, sender)
            return None
        now = self.clock.now()
        reply_id = Spool.new_id()
        reply = IncomingMessage(
            id=reply_id, sender="", received_at=now, client_ip="", helo="",
            content=compose(user_address, sender, subject, body, headers, now, hostname),
            trace_header=(f"Received: by {hostname} (mailsrv auto-reply) id {reply_id};\r\n"
                          f"\t{email.utils.format_datetime(now)}\r\n"),
            recipients=spool_recipients([(sender, resolution)]))
        self.spool.write_file(reply)
        return PendingReply(reply, user_id, sender.lower(), self.window)

    def _check_store(self, message: SpooledMessage, user_id: int,
                     sender: str) -> tuple[str | None, str, str, str]:
        """(why not, subject, body, the server's smtphostname) from the user's settings, the server
        settings and the window."""
        with self.store.session() as s:
            user = s.get(User, user_id)
            if user is None or not user.autoresponder_enabled:
                return "auto-responder off", "", "", ""
            server = self.resolver.system.read(s.connection())
            policy = server["autoresponders"]
            if not spf_check.may_answer(policy, message.spf_result, message.authenticated):
                return f"server policy {policy} (SPF {message.spf_result or 'not checked'})", "", "", ""
            answered = s.execute(select(AutoReplySent.sent_at).where(
                AutoReplySent.user_id == user_id, AutoReplySent.sender == sender,
                AutoReplySent.sent_at > self.clock.now() - self.window)).first()
            if answered is not None:  # finish checks again, atomically; this only saves the work
                return "answered within the window", "", "", ""
            return None, user.autoresponder_subject, user.autoresponder_body, server["smtphostname"]
