"""List commands by mail (majordomo/Mailman style): subscribe, unsubscribe, help, confirm.

Where they are sent (mailsrv.mta.list_addresses, accepted at RCPT by the resolver):
- the domain's command address (`listcommandaddress`): one command per line, in the subject and
  then the body's first text/plain part; blank lines, quoted lines (`>`) and unknown lines are
  skipped, reading stops at `end` or a signature (`-- `), and at most MAX_COMMANDS are run:

      subscribe LIST [digest]     ask to join LIST (digest: the daily digest instead of each post)
      unsubscribe LIST            leave LIST (its posts and its digest)
      help                        this text
      confirm TOKEN               confirm a subscription (the reply to a confirmation does this)

  LIST is the list's name or its full address. Nothing recognised is answered with the help.
- `LIST-subscribe@`, `LIST-unsubscribe@`, `LIST-help@`: the address is the command, for LIST;
- `LIST-confirm+TOKEN@`: `confirm TOKEN`.

Subscribing and unsubscribing are double opt-in (a forged sender can neither sign someone up nor
take them off): the sender is sent a confirmation whose subject is `confirm TOKEN` (TOKEN signed by
mailsrv.core.tokens, purpose "list-confirm", payload list id, what (a member kind, or unsubscribe)
and address, valid CONFIRM_DAYS) with Reply-To the command address; replying (or writing to
LIST-confirm+TOKEN@) does what the token names, once: a token used again, altered or expired changes
nothing and is answered so. Only the sender itself can be subscribed or unsubscribed.

The list's settings: `disablelistcommand` refuses every command by mail for the list;
`disablesubscribecommand` refuses subscribe (and confirm); `allowunsubscribe` off refuses
unsubscribe; `sendsubscribe`/`sendunsubscribe` send a welcome/goodbye notice.

Automatic mail (mailsrv.mta.loop_guard: the null sender, Auto-Submitted, Precedence bulk/list/junk,
list and daemon senders) is never answered nor acted upon. Answers have the null envelope sender
and `Auto-Submitted: auto-replied`, so they are never answered either: no loops.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import email.policy
import email.utils
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage, Message

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mailsrv.core import settings
from mailsrv.core.clock import Clock
from mailsrv.core.tokens import Tokens
from mailsrv.mta import loop_guard
from mailsrv.mta.intake import spool_recipients
from mailsrv.mta.list_addresses import (
    CONFIRM,
    HELP,
    SUBSCRIBE,
    UNSUBSCRIBE,
    UNSUBSCRIBE_PURPOSE,
    ListCommandAddress,
    unsubscribe_token,
)
from mailsrv.mta.list_server import flag, list_setting
from mailsrv.mta.recipients import Deliver, Resolver
from mailsrv.mta.spool import IncomingMessage, Spool
from mailsrv.store.db import Store
from mailsrv.store.models import DIGEST, SUBSCRIBER, Domain, ListMember, MailingList

log = logging.getLogger(__name__)

MAX_COMMANDS = 10
CONFIRM_DAYS = 7
CONFIRM_PURPOSE = "list-confirm"
# A one-click link works as long as an old post may still be read and acted on.
UNSUBSCRIBE_DAYS = 365

HELP_TEXT = """Commands, one per line, in the subject or the body of a message to this address:

  subscribe LIST [digest]   join LIST (digest: one digest a day instead of each post)
  unsubscribe LIST          leave LIST
  help                      this text
  confirm TOKEN             confirm a subscription (replying to the confirmation does this)

LIST is the list's name or address. Lines starting with ">" are skipped; "end" stops reading.
You can also write to LIST-subscribe@, LIST-unsubscribe@ or LIST-help@ this domain.
"""

# Headers unfolded up to RFC 5322's limit: a confirmation's subject (its token) stays on one line.
_POLICY = email.policy.SMTP.clone(max_line_length=998)
_PREFIX = re.compile(r"^\s*((re|fwd?|aw|sv)\s*:\s*)+", re.IGNORECASE)


def setting(mailing_list: MailingList, key: str) -> bool:
    """A boolean list key, or its default (mailsrv.mta.list_server.LIST_DEFAULTS)."""
    return flag(list_setting(mailing_list.settings, key))


def command_lines(headers: Message) -> list[list[str]]:
    """The commands of a message to the command address, each as its words (see the module docstring)."""
    subject = _PREFIX.sub("", str(headers.get("Subject", "")))
    part = next((p for p in headers.walk() if p.get_content_type() == "text/plain"), None)
    body = ""
    if part is not None:
        try:
            body = part.get_content()  # type: ignore[attr-defined]  # an EmailMessage under policy.default
        except (LookupError, ValueError):  # an unknown charset or a broken encoding: the subject only
            body = ""
    commands: list[list[str]] = []
    for line in [subject, *body.splitlines()]:
        if line.rstrip() == "--" or line.strip().lower() == "end":
            break
        words = line.split()
        if not words or line.lstrip().startswith(">"):
            continue
        if words[0].lower() in (SUBSCRIBE, UNSUBSCRIBE, HELP, CONFIRM):
            commands.append(words)
            if len(commands) == MAX_COMMANDS:
                break
    return commands


@dataclass
class _Answers:
    """What one message's commands produce: lines of the reply to the sender, and other mails
    (confirmation, welcome, goodbye) as (subject, body, reply-to)."""
    lines: list[str] = field(default_factory=list)
    mails: list[tuple[str, str, str]] = field(default_factory=list)


class ListCommands:
    def __init__(self, store: Store, resolver: Resolver, spool: Spool, clock: Clock, tokens: Tokens) -> None:
        self.store = store
        self.resolver = resolver
        self.spool = spool
        self.clock = clock
        self.tokens = tokens

    async def handle(self, sender: str, content: bytes, targets: Sequence[ListCommandAddress]) -> None:
        """Run the commands of a message accepted for the command addresses `targets` and spool the
        answers (blocking work in a thread)."""
        replies = await asyncio.to_thread(self.answer, sender, content, targets)
        for reply in replies:
            await self.spool.enqueue(reply)

    def answer(self, sender: str, content: bytes, targets: Sequence[ListCommandAddress]) -> list[IncomingMessage]:
        """Apply the commands to the store; the answer mails to send (blocking)."""
        headers = email.message_from_bytes(content, policy=email.policy.default)
        reason = loop_guard.refusal(sender, headers)
        if reason is not None:
            log.info("list commands from %s ignored: %s", sender or "<>", reason)
            return []
        replies: list[IncomingMessage] = []
        for target in {(t.domain, t.list_name, t.action, t.token): t for t in targets}.values():
            with self.store.session() as s:
                domain = s.execute(select(Domain).where(Domain.name == target.domain)).scalar_one_or_none()
                if domain is None:
                    continue
                answers = _Answers()
                if target.action:
                    words = [target.action, target.token] if target.action == CONFIRM else [target.action, target.list_name]
                    self._run(s, domain, sender, words, answers)
                else:
                    commands = command_lines(headers)
                    for words in commands:
                        self._run(s, domain, sender, words, answers)
                    if not commands:
                        answers.lines.append(HELP_TEXT)
                command_local = settings.value(settings.DOMAIN, domain.settings, "listcommandaddress")
            from_address = target.address
            command_address = f"{command_local}@{target.domain}" if command_local else from_address
            original = " ".join(str(headers.get("Subject", "")).split())
            subject = (original if _PREFIX.match(original) else f"Re: {original}") if original else "Your list commands"
            if answers.lines:
                replies.append(self._mail(from_address, sender, subject, "\n".join(answers.lines), command_address,
                                          headers))
            replies += [self._mail(from_address, sender, mail_subject, body, reply_to or command_address, headers)
                        for mail_subject, body, reply_to in answers.mails]
        return [r for r in replies if r.recipients]

    def _run(self, s: Session, domain: Domain, sender: str, words: list[str], answers: _Answers) -> None:
        action = words[0].lower()
        shown = "> " + " ".join(words)
        if action == HELP:
            answers.lines += [shown, HELP_TEXT]
            return
        if action == CONFIRM:
            answers.lines += [shown, self._confirm(s, domain, sender, words[1] if len(words) > 1 else "", answers)]
            return
        if len(words) < 2:
            answers.lines += [shown, f"{action} needs the name of a list.", ""]
            return
        name = words[1].lower().removesuffix("@" + domain.name.lower())
        mailing_list = s.execute(select(MailingList).where(MailingList.domain_id == domain.id,
                                                           MailingList.name == name)).scalar_one_or_none()
        if mailing_list is None:
            answers.lines += [shown, f"There is no list {name} at {domain.name}.", ""]
        elif setting(mailing_list, "disablelistcommand"):
            answers.lines += [shown, f"Commands by mail are disabled for {name}@{domain.name}.", ""]
        elif action == SUBSCRIBE:
            kind = DIGEST if len(words) > 2 and words[2].lower() == "digest" else SUBSCRIBER
            answers.lines += [shown, self._subscribe(s, mailing_list, domain, sender, kind, answers), ""]
        else:
            answers.lines += [shown, self._unsubscribe(s, mailing_list, domain, sender, answers), ""]

    def _subscribe(self, s: Session, mailing_list: MailingList, domain: Domain, sender: str, kind: str,
                   answers: _Answers) -> str:
        address = f"{mailing_list.name}@{domain.name}"
        if setting(mailing_list, "disablesubscribecommand"):
            return f"Subscribing by mail is disabled for {address}."
        if _member(s, mailing_list.id, kind, sender) is not None:
            return f"{sender} is already subscribed to {address}."
        what = f"subscribe {sender} to {address}{' (digest)' if kind == DIGEST else ''}"
        return self._ask(mailing_list, domain, sender, kind, what, answers)

    def _ask(self, mailing_list: MailingList, domain: Domain, sender: str, kind: str, what: str,
             answers: _Answers) -> str:
        """Send `sender` the confirmation of `kind` (a member kind, or UNSUBSCRIBE) on the list."""
        token = self.tokens.sign(CONFIRM_PURPOSE, f"{mailing_list.id}:{kind}:{sender.lower()}")
        answers.mails.append((f"confirm {token}", (
            f"Someone, hopefully you, asked to {what}.\n\n"
            f"To confirm, reply to this message, keeping its subject, or write to\n"
            f"{mailing_list.name}-confirm+{token}@{domain.name}\n\n"
            f"If you did not ask for this, ignore it: nothing happens without your confirmation.\n"
            f"The confirmation is valid for {CONFIRM_DAYS} days.\n"), ""))
        return f"A confirmation was sent to {sender}: reply to it to complete the request."

    def _confirm(self, s: Session, domain: Domain, sender: str, token: str, answers: _Answers) -> str:
        payload = self.tokens.verify(CONFIRM_PURPOSE, token, dt.timedelta(days=CONFIRM_DAYS))
        list_id, kind, address = (payload or "::").split(":", 2)
        mailing_list = s.get(MailingList, int(list_id)) if list_id.isdigit() else None
        if mailing_list is None or mailing_list.domain_id != domain.id:
            return "The confirmation code is invalid or expired; nothing was changed.\n"
        name = f"{mailing_list.name}@{domain.name}"
        if kind == UNSUBSCRIBE:
            return self._unsubscribe(s, mailing_list, domain, address, answers, confirmed=True) + "\n"
        if setting(mailing_list, "disablelistcommand") or setting(mailing_list, "disablesubscribecommand"):
            return f"Subscribing by mail is disabled for {name}.\n"
        if _member(s, mailing_list.id, kind, address) is not None:
            return f"{address} is already subscribed to {name}; nothing was changed.\n"
        s.add(ListMember(list_id=mailing_list.id, kind=kind, address=address, added_at=self.clock.now()))
        s.flush()
        log.info("%s subscribed to %s (%s) by mail from %s", address, name, kind, sender)
        if setting(mailing_list, "sendsubscribe"):
            answers.mails.append((f"Welcome to {name}", (
                f"Welcome to {name}.\n\n{mailing_list.description}\n\n"
                f"To leave the list, write to {mailing_list.name}-unsubscribe@{domain.name}.\n"), ""))
        return f"{address} is now subscribed to {name}.\n"

    def _unsubscribe(self, s: Session, mailing_list: MailingList, domain: Domain, sender: str,
                     answers: _Answers, confirmed: bool = False) -> str:
        """Ask `sender` to confirm leaving the list, or (`confirmed`) take it off."""
        name = f"{mailing_list.name}@{domain.name}"
        if setting(mailing_list, "disablelistcommand"):
            return f"Commands by mail are disabled for {name}."
        if not setting(mailing_list, "allowunsubscribe"):
            return f"Unsubscribing by mail is not allowed for {name}: ask the list's moderator."
        if not confirmed:
            if _member(s, mailing_list.id, SUBSCRIBER, sender) is None \
                    and _member(s, mailing_list.id, DIGEST, sender) is None:
                return f"{sender} is not subscribed to {name}."
            return self._ask(mailing_list, domain, sender, UNSUBSCRIBE, f"unsubscribe {sender} from {name}", answers)
        if not remove_subscriber(s, mailing_list.id, sender):
            return f"{sender} is not subscribed to {name}; nothing was changed."
        if setting(mailing_list, "sendunsubscribe"):
            answers.mails.append((f"Goodbye from {name}", f"{sender} has been unsubscribed from {name}.\n", ""))
        return f"{sender} is no longer subscribed to {name}."

    def _mail(self, from_address: str, to: str, subject: str, body: str, reply_to: str,
              original: Message) -> IncomingMessage:
        now = self.clock.now()
        mail = EmailMessage(policy=_POLICY)
        mail["From"] = from_address
        mail["To"] = to
        mail["Reply-To"] = reply_to
        mail["Subject"] = " ".join(subject.split())
        mail["Date"] = email.utils.format_datetime(now)
        mail["Message-ID"] = email.utils.make_msgid(domain=from_address.rpartition("@")[2])
        if original.get("Message-ID"):
            mail["In-Reply-To"] = " ".join(str(original["Message-ID"]).split())
        mail["Auto-Submitted"] = "auto-replied"
        mail.set_content(body, charset="utf-8")
        resolution = self.resolver.resolve(to)
        message_id = Spool.new_id()
        return IncomingMessage(
            id=message_id, sender="", content=mail.as_bytes(), received_at=now, client_ip="", helo="",
            trace_header=(f"Received: by {from_address.rpartition('@')[2]} (mailsrv list commands) id {message_id};"
                          f"\r\n\t{email.utils.format_datetime(now)}\r\n"),
            recipients=spool_recipients([(to, resolution)]) if isinstance(resolution, Deliver) else [])


@dataclass(frozen=True)
class OneClick:
    """What a one-click unsubscribe token names, and what happened (or would happen) to it."""
    list_address: str
    address: str
    allowed: bool  # the list's allowunsubscribe
    removed: bool = False  # this request took the address off (False when it was not on any more)


class OneClickUnsubscribe:
    """RFC 8058 one-click unsubscribe: the link's signed token (mailsrv.mta.list_addresses:
    purpose "unsubscribe", payload list id and address, valid UNSUBSCRIBE_DAYS), no login; the web
    listener serves it (services.web). The token takes its address off the list's subscribers and
    digest subscribers, idempotently. Each copy of a post carries its own subscriber's link
    (mailsrv.mta.list_server), so it takes nobody else off."""

    def __init__(self, store: Store, tokens: Tokens) -> None:
        self.store = store
        self.tokens = tokens

    def token(self, list_id: int, address: str) -> str:
        """The token of a one-click link for the subscriber `address`."""
        return unsubscribe_token(self.tokens, list_id, address)

    def check(self, token: str, apply: bool = False) -> OneClick | None:
        """What `token` unsubscribes (None: invalid, expired, or its list is gone); with `apply`, do it
        unless the list does not allow unsubscribing (blocking)."""
        payload = self.tokens.verify(UNSUBSCRIBE_PURPOSE, token, dt.timedelta(days=UNSUBSCRIBE_DAYS))
        list_id, _, address = (payload or "").partition(":")
        if not list_id.isdigit() or not address:
            return None
        with self.store.session() as s:
            found = s.execute(select(MailingList, Domain).join(Domain, Domain.id == MailingList.domain_id)
                              .where(MailingList.id == int(list_id))).first()
            if found is None:
                return None
            mailing_list, domain = found
            allowed = setting(mailing_list, "allowunsubscribe")
            removed = apply and allowed and remove_subscriber(s, mailing_list.id, address)
            if removed:
                log.info("%s unsubscribed from %s@%s by one-click", address, mailing_list.name, domain.name)
            return OneClick(f"{mailing_list.name}@{domain.name}", address, allowed, removed)


def _member(s: Session, list_id: int, kind: str, address: str) -> ListMember | None:
    return s.get(ListMember, (list_id, kind, address.lower()))


def remove_subscriber(s: Session, list_id: int, address: str) -> bool:
    """Take `address` off the list's subscribers and digest subscribers; whether it was on either."""
    removed = s.execute(delete(ListMember).where(ListMember.list_id == list_id,
                                                 ListMember.kind.in_((SUBSCRIBER, DIGEST)),
                                                 ListMember.address == address.lower()))
    return bool(removed.rowcount)
