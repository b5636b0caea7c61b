"""The list server: posts to a mailing list, the bounces of its copies, and moderation.

A list answers at three addresses of its domain (mailsrv.mta.recipients resolves them to a ListAddress):
`name@` takes posts, `name-bounces[+TOKEN]@` takes the bounces of its copies, and
`name-moderate+TOKEN@` takes the moderator's answers (automatic mail there is ignored: an
out-of-office reply to the notice approves nothing).

Who may post (checked at RCPT, and again at DATA where the password is seen):
- the null sender never (a list does not take automatic mail: 550 at RCPT); a disabled list, nobody;
- a sender on the list's kill list never (550);
- `whocanpost` `anyone`: everyone; `subscribersonly`: subscribers, digest subscribers, the poster
  whitelist and the moderator; `moderator`/`moderatoronly`: the moderator alone;
- `maxmessagesize` (KB) caps the post's size (552), `maxrecipients` the post's own envelope: the
  RCPTs of the transaction that carries it (452 past it), as a domain's `maxrecipients` does;
- with `requirepassword`, the post carries the list `password` either as the Subject's first word in
  brackets ("[secret] Hello", removed before posting) or in an `Approved:` header (removed).
A sender who may not post, or a post without its password, is held for the moderator when the list has
one and is not moderator-only (SmarterMail's moderated lists: the moderator decides what others send);
otherwise it is refused with 550 and a text naming the rule.

An accepted post is rewritten once (`rewrite`) and spooled as ONE message whose recipients are the
enabled subscribers (digest subscribers are the digest's), so delivery is durable and the file is
written once. Each subscriber's copy still has its own envelope sender and List-Unsubscribe, kept on
its spool recipient (mailsrv.mta.spool.NewRecipient `sender`, `headers`): the VERP address
`name-bounces+TOKEN@domain` (`verp_address`: TOKEN signed for the list, naming the subscriber, read
ignoring case) and a one-click link (RFC 8058) naming the subscriber (`personal_headers`).

One decision per message: `take` only prepares (files written durably: the post's spool file, its
digest copy, a held post and its notice); its rows (a mailsrv.mta.spool.Companion) are committed by
the spool's group commit together with the message's other recipients (mailsrv.mta.intake), before
the 250. A crash or failure before that commit takes nothing, anywhere (the fault point TAKEN is
there); the files it leaves are swept (the spool's sweep, `_expire` for hold files, the digests').

Digests: a list with `digestmode` also hands the rewritten post to the digests (mailsrv.mta.digests)
for its digest subscribers, who never get the post itself.

Automatic mail is never posted nor answered (mailsrv.mta.loop_guard: Auto-Submitted, Precedence
bulk/junk/list, List-Id, DSNs, daemon senders) and a post carrying `X-Loop: name@domain` is this
list's own: both are accepted and dropped (logged), so nothing goes back to a robot.

Bounces: mail to a copy's VERP address counts one for the subscriber its token names when it is a DSN
of a permanent failure or any other mail from the null sender (a broken MTA's plain "undeliverable"
text names nobody itself); mail to `name-bounces@` without a valid token counts each subscriber a DSN
reports as failed (5.x.x); and a copy our own delivery fails permanently counts too
(mailsrv.mta.bounces counts it instead of writing a DSN). At
BOUNCE_THRESHOLD the subscription is disabled (no more copies). Deliveries that succeed do not reset
the count (DSNs report failures only): the subscriber's owner or an admin re-enables it.
Mail to the bounces address is always accepted and never forwarded.

Moderation: a held post is written (fsynced) under `<data_dir>/list-holds/<random name>` and its
ListHold row is committed with the moderator's notice, whose From and Reply-To are
`name-moderate+TOKEN@domain` (a signed token naming the hold's file, mailsrv.core.tokens, purpose
MODERATE_PURPOSE, valid HOLD_DAYS); replying to the notice approves it: the hold's row goes in the
commit that spools the post; mail to the reject address given in the notice drops it. Held posts
expire after HOLD_DAYS: expired ones are deleted by the next hold or answer of any list (lazily, on
whichever node handles it), and an answer to an expired hold does nothing.
"""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import email
import email.policy
import email.utils
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mailsrv.core.clock import Clock
from mailsrv.core.tokens import Tokens
from mailsrv.directory.mailing_lists import LIST
from mailsrv.mailstore.disk import fault_point, fsync_directory
from mailsrv.mta import loop_guard
from mailsrv.mta.list_addresses import unsubscribe_url
from mailsrv.mta.policy import Reply
from mailsrv.mta.recipients import (
    BOUNCES,
    MODERATE,
    Deliver,
    ListAddress,
    LocalMailbox,
    RemoteAddress,
    Resolver,
)
from mailsrv.mta.spool import (
    LOCAL,
    REMOTE,
    IncomingMessage,
    NewRecipient,
    Spool,
    write_durably,
)
from mailsrv.store.models import (
    DIGEST,
    DigestPost,
    KILLLIST,
    SUBSCRIBER,
    WHITELIST,
    Domain,
    ListHold,
    ListMember,
    MailingList,
)

log = logging.getLogger(__name__)

Trace = Callable[[str, dt.datetime], str]  # our Received header for (message id, time), as intake's Submission has it

BOUNCE_THRESHOLD = 5  # bounces (DSNs, or our own permanent failures) that disable a subscription
HOLD_DAYS = 7  # how long a held post waits for its moderator
MODERATE_PURPOSE = "list-moderate"
HOLDS = "list-holds"
HOLD_NAME_BYTES = 6  # a held post's file name, random: its key in the moderator's tokens
ORPHAN_SECONDS = 3600  # a hold file without a row this old was never committed (a node may be committing now)
# A copy's VERP tag: signed for its list (the purpose is `list-bounce:<list id>`), payload the subscriber.
# A bounce comes within the sender's retry schedule (days); a month leaves room for slow ones.
BOUNCE_PURPOSE = "list-bounce"
BOUNCE_MAX_AGE = dt.timedelta(days=30)
TAKEN = "list-taken"  # the fault point (mailsrv.mailstore.disk) where a list's take is prepared, not committed

POST, HOLD, DROP = "post", "hold", "drop"

NULL_SENDER = Reply(550, "5.7.1", "Mailing lists do not take mail from the null sender")
LIST_DISABLED = Reply(550, "5.2.1", "This mailing list is disabled")
KILLED = Reply(550, "5.7.1", "You are not allowed to post to this list")
TOO_BIG = Reply(552, "5.3.4", "Message size exceeds the list's maximum message size")
TOO_MANY = Reply(452, "4.5.3", "Too many recipients for a list post")


def flag(value: Any) -> bool:
    """A stored boolean, also when it was kept as text (Convert.ToBoolean spellings)."""
    return value is True or str(value).strip().lower() in ("true", "1", "yes", "enabled")


def _number(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


# What a list that never set a key has: the defaults of svcMailListAdmin's table, the one place
# they are written (read by the list server and the list commands, mailsrv.mta.list_commands).
LIST_DEFAULTS: dict[str, Any] = {name: key.default for name, key in LIST.items()
                                 if name not in ("moderator", "description")}


def list_setting(values: dict[str, Any] | None, key: str) -> Any:
    """A list key's stored value, else its default (an empty stored value counts as unset)."""
    value = (values or {}).get(key)
    return LIST_DEFAULTS[key] if value is None or value == "" else value


class DigestSink(Protocol):
    """mailsrv.mta.digests.Digests (which builds on mailsrv.mta.intake, as this module's caller)."""

    def keep(self, mailing_list: MailingList, message: bytes) -> DigestPost | None: ...

    def send_if_due(self, list_id: int) -> bool: ...


@dataclass
class Taken:
    """What a list takes of a message: a mailsrv.mta.spool.Companion, accepted with the message (and
    whatever else it goes to) in one transaction."""
    files: list[Path] = field(default_factory=list)  # written durably before the commit
    rows: list[Callable[[Session], None]] = field(default_factory=list)  # added in the commit
    after: list[Callable[[], None]] = field(default_factory=list)  # run once committed

    def commit(self, s: Session) -> None:
        for add in self.rows:
            add(s)

    def committed(self) -> None:
        for step in self.after:
            step()

    def discard(self) -> None:
        for path in self.files:
            path.unlink(missing_ok=True)


def verp_address(tokens: Tokens, route: ListAddress, subscriber: str) -> str:
    """The envelope sender of `subscriber`'s copy: `name-bounces+TOKEN@domain`, TOKEN naming the
    subscriber (signed, read ignoring case)."""
    token = tokens.sign(f"{BOUNCE_PURPOSE}:{route.list_id}", subscriber.lower())
    return f"{route.name}-bounces+{token}@{route.domain.name}"


def personal_headers(tokens: Tokens, route: ListAddress, subscriber: str, to_subscriber: bool = False) -> str:
    """`subscriber`'s List-Unsubscribe (RFC 2369, RFC 8058): the mailto, and the one-click link that
    takes exactly this subscriber off; with `to_subscriber` (`listtoaddress` SUBSCRIBERADDRESS), its To."""
    url = unsubscribe_url(tokens, route.domain.name, route.list_id, subscriber)
    to = f"To: {subscriber}\r\n" if to_subscriber else ""
    return f"{to}List-Unsubscribe: <mailto:{route.name}-unsubscribe@{route.domain.name}>, <{url}>\r\n"


@dataclass(frozen=True)
class ListRules:
    """The list keys (settings-keys.md) the list server obeys, parsed from a list's stored settings."""
    disabled: bool
    who_can_post: str  # anyone / subscribersonly / moderator
    require_password: bool
    password: str
    prepend_subject: bool
    subject: str
    max_message_kb: int
    max_recipients: int
    reply_to_list: bool
    to_address: str  # DEFAULT / LISTADDRESS / SUBSCRIBERADDRESS / an address
    from_address: str  # POSTERADDRESS / LISTADDRESS / an address
    reply_to_address: str  # LISTADDRESS / POSTERADDRESS / an address
    digest_mode: bool  # the post also goes to the digest (mailsrv.mta.digests)

    @classmethod
    def of(cls, values: dict[str, Any]) -> ListRules:
        def get(key: str) -> Any:
            return list_setting(values, key)
        who = str(get("whocanpost")).strip().lower()
        return cls(
            disabled=flag(get("disabled")),
            who_can_post="moderator" if who in ("moderator", "moderatoronly") else
            who if who == "subscribersonly" else "anyone",
            require_password=flag(get("requirepassword")), password=str(get("password")),
            prepend_subject=flag(get("prependsubject")), subject=str(get("subject")),
            max_message_kb=_number(get("maxmessagesize")), max_recipients=_number(get("maxrecipients")),
            reply_to_list=flag(get("replytolist")),
            to_address=str(get("listtoaddress")).strip(),
            from_address=str(get("listfromaddress")).strip(),
            reply_to_address=str(get("listreplytoaddress")).strip(),
            digest_mode=flag(get("digestmode")))


def list_address(route: ListAddress) -> str:
    return f"{route.name}@{route.domain.name}"


def _headers(content: bytes) -> email.message.Message:
    end = content.find(b"\r\n\r\n")
    return BytesHeaderParser(policy=compat32).parsebytes(content if end < 0 else content[:end + 2])


_PASSWORD_SUBJECT = re.compile(r"^\s*\[([^\]]*)\]\s*")


def _password_given(headers: email.message.Message) -> str:
    approved = headers.get("Approved")
    if approved is not None:
        return str(approved).strip()
    found = _PASSWORD_SUBJECT.match(str(headers.get("Subject") or ""))
    return found.group(1) if found else ""


def _split(content: bytes) -> tuple[list[bytes], bytes]:
    """The header fields (each with its folded lines, CRLF included) and the rest (blank line and body)."""
    end = content.find(b"\r\n\r\n")
    head, rest = (content, b"") if end < 0 else (content[:end + 2], content[end + 2:])
    fields: list[bytes] = []
    for line in head.split(b"\r\n")[:-1] if head.endswith(b"\r\n") else head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line + b"\r\n"
        else:
            fields.append(line + b"\r\n")
    return fields, rest or b"\r\n"


def _field_name(field: bytes) -> str:
    return field.split(b":", 1)[0].strip().decode("ascii", "replace").lower()


# What `rewrite` replaces: whatever the poster or an earlier list put there.
_REPLACED = {"list-id", "list-post", "list-help", "list-subscribe", "list-unsubscribe", "list-unsubscribe-post",
             "list-archive", "list-owner", "precedence", "approved", "return-path", "delivered-to"}


def rewrite(content: bytes, route: ListAddress, rules: ListRules, description: str, command_address: str) -> bytes:
    """The post as every subscriber gets it: subject prefix, From/To/Reply-To per the list keys, the
    RFC 2369 headers but List-Unsubscribe (each copy's own: `personal_headers`), RFC 8058's
    List-Unsubscribe-Post, `Precedence: list`, `X-Loop`; the body untouched."""
    fields, rest = _split(content)
    headers = _headers(content)
    own = list_address(route)
    poster = email.utils.parseaddr(str(headers.get("From") or ""))
    replaced = set(_REPLACED)
    added: list[str] = []
    subject = str(headers.get("Subject") or "")
    given = _PASSWORD_SUBJECT.match(subject)
    if rules.require_password and given and given.group(1) == rules.password:
        subject = subject[given.end():]
    prefix = (rules.subject or f"[{route.name}]").strip()
    if rules.prepend_subject and prefix.lower() not in subject.lower():
        subject = f"{prefix} {subject}".strip()
    replaced.add("subject")
    added.append(f"Subject: {subject}")
    if rules.from_address.upper() != "POSTERADDRESS":
        sender = own if rules.from_address.upper() == "LISTADDRESS" else rules.from_address
        name = poster[0] or poster[1]
        replaced.add("from")
        added.append(f"From: {email.utils.formataddr((f'{name} via {route.name}' if name else '', sender))}")
    to = rules.to_address.upper()
    if to == "SUBSCRIBERADDRESS":  # each copy's own (`personal_headers`)
        replaced.add("to")
    elif to not in ("DEFAULT", ""):
        replaced.add("to")
        added.append(f"To: {own if to == 'LISTADDRESS' else rules.to_address}")
    if rules.reply_to_list:
        target = rules.reply_to_address.upper()
        replaced.add("reply-to")
        added.append(f"Reply-To: {own if target == 'LISTADDRESS' else poster[1] if target == 'POSTERADDRESS' else rules.reply_to_address}")
    label = description.replace("\r", " ").replace("\n", " ").replace("<", "").replace(">", "").strip()
    added += [f"List-Id: {label + ' ' if label else ''}<{route.name}.{route.domain.name}>",
              f"List-Post: <mailto:{own}>"]
    if command_address:
        added.append(f"List-Help: <mailto:{command_address}?subject=help>")
    added += [f"List-Subscribe: <mailto:{route.name}-subscribe@{route.domain.name}>",
              "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
              "Precedence: list", f"X-Loop: {own}"]
    kept = [f for f in fields if _field_name(f) not in replaced]
    return b"".join(kept) + "".join(f"{h}\r\n" for h in added).encode("utf-8") + rest


@dataclass(frozen=True)
class Verdict:
    action: str  # POST, HOLD or DROP
    why: str = ""


class ListServer:
    def __init__(self, resolver: Resolver, spool: Spool, clock: Clock, tokens: Tokens,
                 digests: DigestSink) -> None:
        self.resolver = resolver
        self.tokens = tokens
        self.digests = digests
        self.store = resolver.store
        self.spool = spool
        self.clock = clock
        self.data_dir = spool.data_dir
        self.holds = self.data_dir / HOLDS

    # -- who may post ------------------------------------------------------------------------

    def _kinds(self, list_id: int, address: str) -> set[str]:
        with self.store.read_connection() as c:
            return set(c.execute(select(ListMember.kind).where(
                ListMember.list_id == list_id, ListMember.address == address.lower())).scalars())

    def check(self, route: ListAddress, sender: str, size: int, recipients: int,
              content: bytes | None = None) -> Verdict | Reply:
        """Whether `sender` may post (blocking: one read of the sender's memberships): POST, HOLD, or the
        refusal; with `content`, also the password and the loop rules (DROP)."""
        if route.role in (BOUNCES, MODERATE):  # always taken: never refused, never forwarded
            return Verdict(POST)
        rules = ListRules.of(route.settings)
        if not sender:
            return NULL_SENDER
        if rules.disabled:
            return LIST_DISABLED
        if rules.max_message_kb and size > rules.max_message_kb * 1024:
            return TOO_BIG
        if rules.max_recipients and recipients > rules.max_recipients:
            return TOO_MANY
        kinds = self._kinds(route.list_id, sender)
        if KILLLIST in kinds:
            return KILLED
        moderator = bool(route.moderator) and sender.lower() == route.moderator.lower()
        allowed = moderator or rules.who_can_post == "anyone" or (
            rules.who_can_post == "subscribersonly" and bool(kinds & {SUBSCRIBER, DIGEST, WHITELIST}))
        why = "" if allowed else {"subscribersonly": "only subscribers may post to this list",
                                  "moderator": "only the moderator may post to this list"}[rules.who_can_post]
        if content is not None:
            headers = _headers(content)
            automatic = loop_guard.refusal(sender, headers)
            own = list_address(route).lower()
            if any(own in str(v).lower() for v in headers.get_all("X-Loop", [])):
                automatic = "its own post (X-Loop)"
            if automatic:
                return Verdict(DROP, automatic)
            if allowed and rules.require_password and not moderator \
                    and (not rules.password or _password_given(headers) != rules.password):
                allowed, why = False, "this list requires its password"
        if allowed:
            return Verdict(POST)
        if route.moderator and rules.who_can_post != "moderator":
            return Verdict(HOLD, why)
        return Reply(550, "5.7.1", f"<{list_address(route)}>: {why}")

    # -- taking a message --------------------------------------------------------------------

    async def take(self, route: ListAddress, verdict: Verdict, sender: str, content: bytes, client_ip: str,
                   helo: str, trace: Trace) -> Taken:
        """What accepting a message for `route` does (post, hold, drop; a bounce or a moderator's answer),
        prepared: its files written, its rows left for the caller to commit with the rest of the message
        (mailsrv.mta.intake), so that everything the message goes to is taken, or nothing."""
        taken = Taken()
        try:
            await asyncio.to_thread(self._take, taken, route, verdict, sender, content, client_ip, helo, trace)
            fault_point(TAKEN)
        except BaseException:
            taken.discard()
            raise
        return taken

    def _take(self, taken: Taken, route: ListAddress, verdict: Verdict, sender: str, content: bytes,
              client_ip: str, helo: str, trace: Trace) -> None:
        if route.role == BOUNCES:
            failed = self._bounced(route, sender, content)
            if failed:
                taken.rows.append(lambda s: record_bounces(s, route.list_id, failed))
        elif route.role == MODERATE:
            automatic = loop_guard.refusal(sender, _headers(content))
            if automatic:  # an out-of-office answering the notice must not approve anything
                log.info("list %s: ignored a moderator answer from %s: %s", list_address(route), sender, automatic)
            else:
                self._answer(taken, route, client_ip, helo, trace)
        elif verdict.action == DROP:
            log.info("list %s: dropped a message from %s: %s", list_address(route), sender, verdict.why)
        elif verdict.action == HOLD:
            self._hold(taken, route, sender, content, client_ip, helo, trace, verdict.why)
        else:
            self._post(taken, route, sender, content, client_ip, helo, trace)

    def _spool(self, taken: Taken, message: IncomingMessage) -> None:
        """`message` spooled by the commit of `taken` (its file now)."""
        self.spool.write_file(message)
        taken.files.append(self.spool.directory / message.id)
        taken.rows.append(lambda s: self.spool.add_rows(s, message))

    def _post(self, taken: Taken, route: ListAddress, sender: str, content: bytes, client_ip: str, helo: str,
              trace: Trace) -> None:
        """The rewritten post for every enabled subscriber, each copy with its own envelope sender and
        List-Unsubscribe (one spooled message), and for the digest."""
        post, recipients, mailing_list = self._expand(route, content)
        kept = self.digests.keep(mailing_list, post) if mailing_list is not None else None
        if kept is not None:  # the digest subscribers' copy (mailsrv.mta.digests)
            taken.files.append(self.data_dir / kept.path)
            taken.rows.append(lambda s: s.add(kept))
            taken.after.append(lambda: self.digests.send_if_due(route.list_id))
        if not recipients:
            log.info("list %s: a post from %s has no subscriber to go to", list_address(route), sender)
            return
        message_id, now = Spool.new_id(), self.clock.now()
        self._spool(taken, IncomingMessage(
            id=message_id, sender=f"{route.name}-bounces@{route.domain.name}", content=post, received_at=now,
            client_ip=client_ip, helo=helo, trace_header=trace(message_id, now),
            recipients=self._personal(route, recipients)))
        log.info("list %s: post from %s spooled as %s for %d recipients", list_address(route), sender,
                 message_id, len(recipients))

    def _expand(self, route: ListAddress, content: bytes) -> tuple[bytes, list[NewRecipient], MailingList | None]:
        with self.store.read_connection() as c:
            subscribers = list(c.execute(select(ListMember.address).where(
                ListMember.list_id == route.list_id, ListMember.kind == SUBSCRIBER,
                ListMember.disabled.is_(False))).scalars())
            domain_settings = c.execute(select(Domain.settings).where(Domain.id == route.domain.id)).scalar() or {}
        with self.store.session() as s:
            mailing_list = s.get(MailingList, route.list_id)
            if mailing_list is not None:
                s.expunge(mailing_list)
        command = str(domain_settings.get("listcommandaddress") or "")
        if command and "@" not in command:
            command = f"{command}@{route.domain.name}"
        post = rewrite(content, route, ListRules.of(route.settings),
                       mailing_list.description if mailing_list is not None else "", command)
        return post, self._recipients(subscribers), mailing_list

    def _personal(self, route: ListAddress, recipients: list[NewRecipient]) -> list[NewRecipient]:
        """Each subscriber's copy with its VERP envelope sender and its own one-click unsubscribe link
        (every mailbox a subscriber reaches gets the subscriber's)."""
        to_subscriber = ListRules.of(route.settings).to_address.upper() == "SUBSCRIBERADDRESS"
        copies: dict[str, tuple[str, str]] = {}
        out = []
        for r in recipients:
            if r.original not in copies:
                copies[r.original] = (verp_address(self.tokens, route, r.original),
                                      personal_headers(self.tokens, route, r.original, to_subscriber))
            sender, headers = copies[r.original]
            out.append(dataclasses.replace(r, sender=sender, headers=headers))
        return out

    def _recipients(self, subscribers: list[str]) -> list[NewRecipient]:
        """One spool recipient per mailbox or remote address the subscribers reach (a local subscriber
        is resolved like any RCPT: aliases, forwarding; a list among them is skipped: no list fan-in)."""
        out: dict[tuple[str, str], NewRecipient] = {}
        local_domains: dict[str, bool] = {}
        for address in subscribers:
            domain = address.rpartition("@")[2]
            if domain not in local_domains:
                local_domains[domain] = self.resolver.lookup("domain", domain) is not None
            if not local_domains[domain]:
                out.setdefault((REMOTE, address), NewRecipient(address, address, REMOTE))
                continue
            result = self.resolver.lookup("resolve", address)
            if not isinstance(result, Deliver):
                log.warning("list subscriber %s skipped: %s", address, type(result).__name__.lower())
                continue
            for r in result.routes:
                if isinstance(r, LocalMailbox):
                    out.setdefault((LOCAL, r.address.lower()), NewRecipient(address, r.address, LOCAL, r.user_id))
                elif isinstance(r, RemoteAddress):
                    out.setdefault((REMOTE, r.address.lower()), NewRecipient(address, r.address, REMOTE))
        return list(out.values())

    # -- bounces -----------------------------------------------------------------------------

    def _bounced(self, route: ListAddress, sender: str, content: bytes) -> list[str]:
        """The subscribers a message to the bounces address reports as failed. A copy's own address
        (VERP: its signed tag) names its subscriber, whatever the bounce says or fails to say: a DSN
        counts when it reports a permanent failure, other mail from the null sender (a broken MTA's
        "undeliverable" text) always. Without a valid tag: the DSN's failed recipients."""
        failed = _failed_recipients(content)
        if route.tag:
            subscriber = self.tokens.verify(f"{BOUNCE_PURPOSE}:{route.list_id}", route.tag, BOUNCE_MAX_AGE)
            if subscriber is None:
                log.info("list %s: a bounce to an unknown or expired VERP tag", list_address(route))
            elif failed or (failed is None and not sender):
                return [subscriber]
            else:
                return []
        if not failed:
            log.info("list %s: a message to its bounces address names no failed subscriber", list_address(route))
        return failed or []

    # -- moderation --------------------------------------------------------------------------

    def _expire(self) -> None:
        """Delete the expired holds, and the files of holds never committed (a crash before the commit)."""
        now = self.clock.now()
        with self.store.session() as s:
            paths = list(s.execute(delete(ListHold).where(ListHold.created_at < now - dt.timedelta(days=HOLD_DAYS))
                                   .returning(ListHold.path)).scalars())
            known = set(s.execute(select(ListHold.path)).scalars())
        for path in paths:
            (self.data_dir / path).unlink(missing_ok=True)
        cutoff = time.time() - ORPHAN_SECONDS  # the files' own clock, as the spool's sweep
        for entry in os.scandir(self.holds) if self.holds.is_dir() else ():
            try:
                if f"{HOLDS}/{entry.name}" not in known and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
            except FileNotFoundError:  # another node's expiry, at the same moment
                continue

    def _hold(self, taken: Taken, route: ListAddress, sender: str, content: bytes, client_ip: str, helo: str,
              trace: Trace, why: str) -> None:
        """The post kept for the moderator and the moderator's notice: one commit, so never one without the other."""
        self._expire()
        self.holds.mkdir(mode=0o700, exist_ok=True)
        name = secrets.token_hex(HOLD_NAME_BYTES)
        write_durably(self.holds / name, content)
        taken.files.append(self.holds / name)
        fsync_directory(self.holds)
        hold = ListHold(list_id=route.list_id, sender=sender, path=f"{HOLDS}/{name}", created_at=self.clock.now())
        taken.rows.append(lambda s: s.add(hold))
        approve = f"{route.name}-moderate+{self.tokens.sign(MODERATE_PURPOSE, f'a:{name}')}@{route.domain.name}"
        reject = f"{route.name}-moderate+{self.tokens.sign(MODERATE_PURPOSE, f'r:{name}')}@{route.domain.name}"
        headers = _headers(content)
        notice = EmailMessage(email.policy.SMTP)
        notice["From"] = approve
        notice["Reply-To"] = approve
        notice["To"] = route.moderator
        notice["Subject"] = f"Approval needed: {list_address(route)} post from {sender}"
        notice["Date"] = email.utils.format_datetime(self.clock.now())
        notice["Message-ID"] = email.utils.make_msgid(domain=route.domain.name)
        notice["Auto-Submitted"] = "auto-generated"
        notice["Precedence"] = "list"
        notice["X-Loop"] = list_address(route)
        notice.set_content(
            f"A post to {list_address(route)} from {sender} is held: {why}.\n"
            f"Subject: {headers.get('Subject', '')}\n\n"
            f"To approve it, reply to this message (it goes to {approve}).\n"
            f"To reject it, send any message to {reject}.\n"
            f"Unanswered, it is deleted after {HOLD_DAYS} days.\n")
        notice.add_attachment(email.message_from_bytes(content, policy=email.policy.SMTP))
        recipients = self._recipients([route.moderator.lower()])
        if recipients:
            message_id, now = Spool.new_id(), self.clock.now()
            self._spool(taken, IncomingMessage(
                id=message_id, sender=f"{route.name}-bounces@{route.domain.name}", content=notice.as_bytes(),
                received_at=now, client_ip=client_ip, helo=helo, trace_header=trace(message_id, now),
                recipients=recipients))
        else:
            log.warning("list %s: its moderator %s does not resolve: no notice", list_address(route), route.moderator)
        log.info("list %s: post from %s held (%s): %s", list_address(route), sender, name, why)

    def _answer(self, taken: Taken, route: ListAddress, client_ip: str, helo: str, trace: Trace) -> None:
        """A moderator's answer: the hold its token names goes, in the commit that spools the approved
        post; nothing when the token is not ours or the hold is gone or expired."""
        self._expire()
        payload = self.tokens.verify(MODERATE_PURPOSE, route.tag, dt.timedelta(days=HOLD_DAYS))
        action, _, name = (payload or "").partition(":")
        path = f"{HOLDS}/{name}"
        with self.store.read_connection() as c:
            hold = c.execute(select(ListHold.id, ListHold.sender).where(
                ListHold.path == path, ListHold.list_id == route.list_id)).first() if action in ("a", "r") else None
        if hold is None:
            log.info("list %s: a moderator answer with an unknown or expired token", list_address(route))
            return
        approved = Taken()
        if action == "a":
            try:
                content = (self.data_dir / path).read_bytes()
            except FileNotFoundError:  # its row is being removed by another node's answer or expiry
                log.info("list %s: the held post %s is gone", list_address(route), name)
                return
            self._post(approved, route, hold.sender, content, client_ip, helo, trace)
            taken.files += approved.files
        else:
            log.info("list %s: held post from %s rejected by the moderator", list_address(route), hold.sender)

        def claim(s: Session) -> None:
            if s.execute(delete(ListHold).where(ListHold.id == hold.id)).rowcount:
                approved.commit(s)
            else:  # another node's answer took it first
                approved.discard()
        taken.rows.append(claim)
        taken.after += [*approved.after, lambda: (self.data_dir / path).unlink(missing_ok=True)]


def record_bounces(s: Session, list_id: int, addresses: Sequence[str]) -> list[str]:
    """Count one bounce for each of `addresses` subscribed to list `list_id`, in the caller's transaction;
    the subscriptions this disables."""
    disabled: list[str] = []
    if not addresses:
        return disabled
    members = s.execute(select(ListMember).where(
        ListMember.list_id == list_id, ListMember.kind.in_((SUBSCRIBER, DIGEST)),
        ListMember.address.in_([a.lower() for a in addresses])).with_for_update()).scalars().all()
    for member in members:
        member.bounces += 1
        if member.bounces >= BOUNCE_THRESHOLD and not member.disabled:
            member.disabled = True
            disabled.append(member.address)
            log.warning("list %d: %s disabled after %d bounces", list_id, member.address, member.bounces)
    return disabled


def _failed_recipients(content: bytes) -> list[str] | None:
    """The recipients a DSN reports as failed permanently (Action failed, Status 5.x.x), lower case:
    Original-Recipient when given, else Final-Recipient; None when `content` is no DSN."""
    message = email.message_from_bytes(content, policy=compat32)
    failed: list[str] | None = None
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        failed = failed or []
        payload = part.get_payload()
        for block in payload[1:] if isinstance(payload, list) else []:
            status = str(block.get("Status") or "").strip()
            if str(block.get("Action") or "").strip().lower() != "failed" or not status.startswith("5"):
                continue
            named = block.get("Original-Recipient") or block.get("Final-Recipient") or ""
            address = str(named).partition(";")[2].strip().strip("<>").lower()
            if "@" in address:
                failed.append(address)
    return failed

