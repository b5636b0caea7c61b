"""Bounces: the delivery status notification (RFC 3464) to the sender of mail that failed for good.

mailsrv.mta.spool calls `Bouncer.notice` (its FailureNotifier) in the transaction that records the
failures — a 5xx at once, a temporary failure after the last attempt of the retry schedule — so a
DSN is spooled exactly when, and only once, a failure is recorded. It is an ordinary spool
message from the null sender `<>` (RFC 5321 §4.5.5: a DSN that cannot be delivered is dropped,
never bounced again) to the original envelope sender, delivered locally or remotely.
It is built with the standard `email` package: a text part for people, message/delivery-status
(RFC 3464 §2.2, §2.3) and the original's headers as text/rfc822-headers.

No DSN is sent:
- for automatic, bulk and list mail, by the rule auto-replies follow too (mailsrv.mta.loop_guard): to
  the null sender (the failed message was itself a DSN or an auto-reply), to daemon and list
  senders by name, for DSNs, `Auto-Submitted` other than `no`, `Precedence: bulk/junk/list`,
  List-Id, List-Unsubscribe: answering those is how loops start;
- when the server's bounce policy (system setting `bouncing`) is Disabled, or RequireSPF and the
  sender neither passed SPF at acceptance nor authenticated (mailsrv.mta.spf_check.may_answer):
  bouncing to forged senders is backscatter;
- to a sender address that no longer resolves (a deleted local user);
- to a mailing list's bounces address: the failed subscribers' bounces are counted instead
  (mailsrv.mta.list_server.record_bounces).

Nothing is counted for the DSN as sent (it has no `sent_by`); delivered into a local mailbox it is
counted as received there, like any message.
"""
from __future__ import annotations

import email.policy
import email.utils
import logging
import re
from collections.abc import Sequence
from email.message import EmailMessage, Message, MIMEPart
from email.policy import Policy

from sqlalchemy.orm import Session

from mailsrv.core.clock import Clock
from mailsrv.mailstore.headers import header_bytes, parse_headers
from mailsrv.mta import loop_guard, spf_check
from mailsrv.mta.intake import spool_recipients
from mailsrv.mta.list_server import record_bounces
from mailsrv.mta.recipients import BOUNCES, Deliver, ListAddress, Resolver
from mailsrv.mta.spool import (
    ClaimedRecipient,
    Deferred,
    Failed,
    IncomingMessage,
    Spool,
    SpooledMessage,
)

log = logging.getLogger(__name__)

_STATUS = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}\b")


def _ascii(text: str) -> str:
    # DSN fields are US-ASCII (RFC 3464 §2.1.1); one line each.
    return re.sub(r"[^ -~]", "?", " ".join(text.split()))


def status_of(failure: Deferred | Failed) -> str:
    """The RFC 3463 status of a failure: the code its error starts with, else the class default."""
    found = _STATUS.match(failure.error)
    return found.group(0) if found else ("4.0.0" if isinstance(failure, Deferred) else "5.0.0")


def _fields(policy: Policy, fields: list[tuple[str, str]]) -> Message:
    """One block of a message/delivery-status part: header fields only, no body."""
    block = Message(policy)
    for name, value in fields:
        block[name] = value
    return block


def compose(hostname: str, message: SpooledMessage, headers: bytes,
            failures: Sequence[tuple[ClaimedRecipient, Deferred | Failed]], when_text: str, message_id: str) -> bytes:
    """The DSN as CRLF bytes: human part, message/delivery-status, text/rfc822-headers."""
    # SMTPUTF8: an internationalised address is written as the UTF-8 it is, not as an encoded word.
    policy = email.policy.SMTPUTF8
    human = [f"This is the mail system at {hostname}.", "",
             "Your message could not be delivered to the following recipients:", ""]
    for recipient, failure in failures:
        human += [f"  <{recipient.address}>: {_ascii(failure.error)}"]
    human += ["", "The headers of your message are attached."]
    blocks = [_fields(policy, [("Reporting-MTA", f"dns; {hostname}"),
                               ("Arrival-Date", email.utils.format_datetime(message.received_at))])]
    for recipient, failure in failures:
        fields = [("Final-Recipient", f"rfc822; {recipient.address}")]
        if recipient.original.lower() != recipient.address.lower():  # an alias or forwarding expanded it
            fields.append(("Original-Recipient", f"rfc822; {recipient.original}"))
        fields += [("Action", "failed"), ("Status", status_of(failure))]
        if failure.remote_mta:
            fields.append(("Remote-MTA", f"dns; {failure.remote_mta}"))
        fields += [("Diagnostic-Code", f"smtp; {_ascii(failure.reply or failure.error)}"),
                   ("Last-Attempt-Date", when_text)]
        blocks.append(_fields(policy, fields))

    dsn = EmailMessage(policy)
    dsn["From"] = f"Mail Delivery System <MAILER-DAEMON@{hostname}>"
    dsn["To"] = f"<{message.sender}>"
    dsn["Subject"] = "Undelivered Mail Returned to Sender"
    dsn["Date"] = when_text
    dsn["Message-ID"] = f"<{message_id}@{hostname}>"
    dsn["Auto-Submitted"] = "auto-replied"
    dsn.set_type("multipart/report")
    dsn.set_param("report-type", "delivery-status")
    dsn.preamble = "This is a MIME-encapsulated message."

    notification = MIMEPart(policy)
    text = "\n".join(human) + "\n"
    # Unwrapped, as written: quoted-printable would only make the raw text harder to read.
    notification.set_content(text, cte="7bit" if text.isascii() else "8bit")
    notification["Content-Description"] = "Notification"
    report = MIMEPart(policy)
    report["Content-Type"] = "message/delivery-status"
    report["Content-Description"] = "Delivery report"
    report.set_payload(blocks)
    quoted = MIMEPart(policy)
    quoted["Content-Type"] = "text/rfc822-headers"
    quoted["Content-Description"] = "Undelivered message headers"
    # The original's bytes as they came (surrogateescape round-trips any 8-bit byte unchanged).
    quoted.set_payload(headers.decode("ascii", "surrogateescape"))
    for part in (notification, report, quoted):
        dsn.attach(part)
    return dsn.as_bytes()


class Bouncer:
    """mailsrv.mta.spool.FailureNotifier: writes DSNs under the server's bounce policy."""

    def __init__(self, resolver: Resolver, clock: Clock) -> None:
        self.resolver = resolver
        self.clock = clock

    def notice(self, s: Session, message: SpooledMessage,
               failures: Sequence[tuple[ClaimedRecipient, Deferred | Failed]]) -> IncomingMessage | None:
        sender = message.sender
        if not sender:  # never answered (mailsrv.mta.loop_guard); known without reading the policy or the file
            return None
        resolution = self.resolver.resolve(sender)
        route = resolution.routes[0] if isinstance(resolution, Deliver) and resolution.routes else None
        if isinstance(route, ListAddress) and route.role == BOUNCES:
            # A list's copy: no DSN to the list, whose bounces address would only count it; counted
            # here, in the transaction that records the failure. Originals are the subscribers.
            record_bounces(s, route.list_id, [r.original for r, failure in failures
                                              if isinstance(failure, Failed) and status_of(failure).startswith("5")])
            return None
        server = self.resolver.system.read(s.connection())
        policy, hostname = server["bouncing"], server["smtphostname"]
        if not spf_check.may_answer(policy, message.spf_result, message.authenticated):
            log.info("no DSN to %s for %s: bounce policy %s (SPF %s)", sender, message.id, policy,
                     message.spf_result or "not checked")
            return None
        # Our trace header first: the sender sees where the message got to.
        headers = message.trace_header.encode("utf-8", "surrogateescape") + header_bytes(message.path)
        reason = loop_guard.refusal(sender, parse_headers(headers))
        if reason is not None:
            log.info("no DSN to %s for %s: %s", sender, message.id, reason)
            return None
        if not isinstance(resolution, Deliver):
            log.info("no DSN for %s: its sender %s does not resolve", message.id, sender)
            return None
        now = self.clock.now()
        dsn_id = Spool.new_id()
        when = email.utils.format_datetime(now)
        return IncomingMessage(
            id=dsn_id, sender="", received_at=now, client_ip="", helo="",
            content=compose(hostname, message, headers, failures, when, dsn_id),
            trace_header=f"Received: by {hostname} (mailsrv DSN) id {dsn_id};\r\n\t{when}\r\n",
            recipients=spool_recipients([(sender, resolution)]))
