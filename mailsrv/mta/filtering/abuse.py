"""Abuse detection at the SMTP stages (the rules, counters and blocks: mailsrv.directory.abuse).

- connect: a client address blocked for SMTP (by any node, any rule) gets 421 4.7.0 instead of the
  greeting; otherwise the connection is counted under the DoS rules, and the one past a rule's
  threshold is refused and blocks the address. The counts are kept in memory and written by a
  task of this check, at most FLUSH_SECONDS after they were made (mailsrv.directory.abuse).
- RCPT of an unknown recipient: counted under the harvesting rules; the one that reaches a rule's
  threshold blocks the address, and that session's later RCPTs and MAILs get 421 4.7.0 too.
- MAIL of an authenticated user that an internal-spammer rule blocked: 550 5.7.1.
- DATA: an authenticated user's message is counted under the internal-spammer rules, a bounce
  (null sender) under the bounce rules for each local recipient; a rule triggered notifies its
  address by mail (once per window) and, when its action blocks, stops the user's sending.
Trusted and SMTP-whitelisted clients are never counted nor refused. Every verdict is logged.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import logging
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY

from mailsrv.core.clock import Clock
from mailsrv.directory.abuse import (
    BOUNCES,
    FLUSH_SECONDS,
    HARVESTING,
    INTERNAL_SPAMMER,
    SMTP,
    AbuseRules,
    Trigger,
    blocked_text,
)
from mailsrv.mta.filtering.pipeline import Check, Findings
from mailsrv.mta.intake import Submission, spool_recipients
from mailsrv.mta.policy import Client, Reply
from mailsrv.mta.recipients import Deliver, Resolver
from mailsrv.mta.spool import IncomingMessage, Spool

log = logging.getLogger(__name__)


def _blocked_reply(until: dt.datetime) -> Reply:
    return Reply(421, "4.7.0", blocked_text(until))


class AbuseNotices:
    """The notification mails of the rules that notify: from the postmaster of the server's name,
    with the null sender (nobody answers them automatically)."""

    def __init__(self, resolver: Resolver, spool: Spool, clock: Clock) -> None:
        self.resolver = resolver
        self.spool = spool
        self.clock = clock

    async def send(self, trigger: Trigger) -> None:
        rule, now = trigger.rule, self.clock.now()
        hostname = self.resolver.settings.hostname
        what = {INTERNAL_SPAMMER: "sent", BOUNCES: "received bounces:"}.get(rule.kind, "caused")
        mail = EmailMessage(policy=SMTP_POLICY)
        mail["From"] = f"Abuse detection <postmaster@{hostname}>"
        mail["To"] = rule.notify
        mail["Subject"] = f"Abuse detection: {trigger.subject} {what} {trigger.count} messages"
        mail["Date"] = email.utils.format_datetime(now)
        mail["Message-ID"] = email.utils.make_msgid(domain=hostname)
        mail["Auto-Submitted"] = "auto-generated"
        minutes = int(rule.window.total_seconds() // 60)
        body = (f"{trigger.subject} {what} {trigger.count} messages within {minutes} minutes, reaching the "
                f"threshold of the {rule.kind} rule {rule.uid} ({rule.description or 'no description'}).\n")
        if rule.blocks:
            body += f"Its sending is blocked for {int(rule.block.total_seconds() // 60)} minutes (UnblockAddress lifts it).\n"
        mail.set_content(body, charset="utf-8")
        resolution = await asyncio.to_thread(self.resolver.resolve, rule.notify)
        if not isinstance(resolution, Deliver):
            log.warning("abuse detection: cannot notify %s (%s)", rule.notify, type(resolution).__name__)
            return
        message_id = Spool.new_id()
        await self.spool.enqueue(IncomingMessage(
            id=message_id, sender="", content=mail.as_bytes(), received_at=now, client_ip="", helo="",
            trace_header=f"Received: by {hostname} (mailsrv abuse detection) id {message_id};\r\n"
                         f"\t{email.utils.format_datetime(now)}\r\n",
            recipients=spool_recipients([(rule.notify, resolution)])))
        log.info("abuse detection: notified %s of %s", rule.notify, trigger.subject)


class AbuseDetection(Check):
    name = "abuse"

    def __init__(self, rules: AbuseRules, resolver: Resolver, clock: Clock, notices: AbuseNotices) -> None:
        self.rules = rules
        self.resolver = resolver  # its generation, read by the intake as the session opens, keys the rules
        self.clock = clock
        self.notices = notices
        # The blocks this node set during a session (harvesting): its later commands are refused
        # without a read; other sessions meet the stored block at connect.
        self._blocked: dict[str, dt.datetime] = {}
        self._writer: asyncio.Task[None] | None = None  # writes the DoS counts, while there are some

    @staticmethod
    def _exempt(client: Client) -> bool:
        return client.trusted or client.whitelisted

    def _held(self, subject: str) -> dt.datetime | None:
        until = self._blocked.get(subject)
        if until is not None and until <= self.clock.now():
            self._blocked.pop(subject, None)
            return None
        return until

    async def connect(self, client: Client) -> Reply | None:
        exempt, now = self._exempt(client), self.clock.now()
        opening = self.resolver.opening(client.ip)  # the block, read with the generation as the session opened
        admission = await self.rules.store.run_read(self.rules.connect, client.ip, SMTP, now, self.resolver.generation,
                                                    lambda: exempt, opening.block if opening else None)
        until = admission.until
        if admission.settle:
            until = await asyncio.to_thread(self.rules.settle, client.ip, SMTP, now)
        if self.rules.tallies.unwritten and self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_counts())
        if until is None:
            return None
        log.info("abuse detection: connection of %s refused, blocked until %s", client.ip, until)
        return _blocked_reply(until)

    async def _write_counts(self) -> None:
        """Write the DoS counts every FLUSH_SECONDS while connections are counted."""
        try:
            while self.rules.tallies.unwritten:
                await asyncio.sleep(FLUSH_SECONDS)
                try:
                    await asyncio.to_thread(self.rules.tallies.write, self.clock.now())
                except Exception:  # they are lost; the next connections are counted again
                    log.exception("abuse detection: could not write the DoS connection counts")
        finally:
            self._writer = None

    async def mail(self, client: Client, sender: str) -> Reply | None:
        held = self._held(client.ip)
        if held is not None and not self._exempt(client):
            return _blocked_reply(held)
        if client.login is None:
            return None
        until = await asyncio.to_thread(self._user_blocked, client.login)
        if until is None:
            return None
        log.info("abuse detection: sending of %s refused, blocked until %s", client.login, until)
        return Reply(550, "5.7.1", f"Sending of {client.login} is blocked by abuse detection until "
                                   f"{until:%Y-%m-%d %H:%M:%S} UTC")

    def _user_blocked(self, login: str) -> dt.datetime | None:
        with self.rules.store.read_connection() as conn:
            return self.rules.blocked_in(conn, login.lower(), SMTP, self.clock.now())

    async def rcpt(self, client: Client, sender: str, recipient: str, resolution: Deliver | None) -> Reply | None:
        if self._exempt(client):
            return None
        held = self._held(client.ip)
        if held is not None:
            return _blocked_reply(held)
        if resolution is not None:
            return None
        triggers = await asyncio.to_thread(self.rules.event, HARVESTING, SMTP, client.ip, self.clock.now())
        await self._notify(triggers)
        blocks = [t for t in triggers if t.rule.blocks]
        if not blocks:
            return None
        until = self.clock.now() + max(t.rule.block for t in blocks)
        self._blocked[client.ip] = until
        log.info("abuse detection: %s blocked for harvesting (%d unknown recipients)", client.ip, blocks[0].count)
        return _blocked_reply(until)

    async def data(self, message: Submission, findings: Findings) -> Reply | None:
        now = self.clock.now()
        if message.actor is not None:
            await self._notify(await asyncio.to_thread(self.rules.event, INTERNAL_SPAMMER, SMTP,
                                                       message.actor.login.lower(), now))
        if not message.sender:
            for address in dict.fromkeys(a.lower() for a, r in message.accepted if r.domain is not None):
                await self._notify(await asyncio.to_thread(self.rules.event, BOUNCES, SMTP, address, now))
        return None

    async def _notify(self, triggers: list[Trigger]) -> None:
        for trigger in triggers:
            if trigger.notify:
                await self.notices.send(trigger)
