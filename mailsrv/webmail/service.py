"""What a signed-in user does in the web interface, over the engine: read its mailbox, and send.

Sending goes through mailsrv.mta.intake exactly as an authenticated SMTP submission does (the same
recipient checks, limits, spool and MessagesSent/BytesSent counting); the sent copy is then filed
in the user's Sent folder, and an answered original gets its R (replied) flag.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
from dataclasses import dataclass

from sqlalchemy import select

from mailsrv.core.actor import Actor
from mailsrv.core.clock import Clock
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.mailstore.disk import Disk
from mailsrv.mailstore.folders import SENT, Mailbox
from mailsrv.mta.intake import Intake, Submission
from mailsrv.mta.policy import Reply
from mailsrv.mta.recipients import Deliver
from mailsrv.store.db import Store
from mailsrv.store.models import Domain
from mailsrv.webmail.outgoing import Draft, build, recipients


@dataclass(frozen=True)
class Answering:
    """The message a draft replies to, to be flagged R once the reply is sent."""
    folder: str
    key: str


def _refused(reply: Reply) -> MailsrvError:
    code = ResultCode.INVALID_ADDRESS if reply.code == 550 else ResultCode.LIMIT_REACHED
    return MailsrvError(code, f"Not sent: {reply.text}.")


class Webmail:
    def __init__(self, intake: Intake, store: Store, clock: Clock) -> None:
        self.intake = intake
        self.store = store
        self.clock = clock

    def mailbox(self, actor: Actor) -> Mailbox:
        """The signed-in user's Maildir (blocking: reads the store)."""
        with self.store.session() as s:
            path = s.execute(select(Domain.path).where(Domain.name == actor.domain)).scalar_one()
        return Mailbox(Disk.maildir(path, actor.user))

    async def send(self, actor: Actor, draft: Draft, client_ip: str, answering: Answering | None = None) -> str:
        """Send `draft` as the user; its spool id. MailsrvError with the reason when refused."""
        addresses = recipients(draft)
        if not addresses:
            raise MailsrvError(ResultCode.INVALID_ADDRESS, "Not sent: give at least one recipient.")
        sender = f"{actor.user}@{actor.domain}"
        now = self.clock.now()
        await self.intake.begin()
        hostname = self.intake.settings.hostname  # the smtphostname setting: Message-ID, our Received header
        try:
            content = build(draft, sender, hostname, now)
        except ValueError as exc:  # e.g. a line break smuggled into a header field
            raise MailsrvError(ResultCode.INVALID_ARGUMENT, f"Not sent: {exc}.") from None
        own = await self.intake.domain(actor.domain)
        client = self.intake.client(client_ip, actor.login)
        accepted: list[tuple[str, Deliver]] = []
        for address in addresses:
            result = await self.intake.check_recipient(client, sender, own, accepted, address, len(content))
            if isinstance(result, Reply):
                raise _refused(result)
            accepted.append((address, result))

        def trace(message_id: str, when: dt.datetime) -> str:
            stamp = email.utils.format_datetime(when)
            return (f"Received: from [{client_ip}] by {hostname} (mailsrv webmail) with HTTP id {message_id};\r\n"
                    f"\t{stamp}\r\n")

        outcome = await self.intake.submit(Submission(
            sender=sender, content=content, accepted=accepted, own_domain=own, actor=actor,
            client_ip=client_ip, helo="", trace=trace))
        if isinstance(outcome, Reply):
            raise _refused(outcome)
        await asyncio.to_thread(self._file_sent, actor, content, answering)
        return outcome

    def _file_sent(self, actor: Actor, content: bytes, answering: Answering | None) -> None:
        mailbox = self.mailbox(actor)
        mailbox.add(SENT, content, "S", self.clock.now())
        if answering is not None:
            try:
                mailbox.set_flags(answering.folder, answering.key, add="R")
            except MailsrvError:  # moved or deleted meanwhile: the reply went out all the same
                pass
