"""Taking a message in (`Intake`): the sender and recipient checks and the acceptance into the spool.

Shared by SMTP (MAIL, RCPT and DATA answers) and the web interface's send, so a message sent from the
browser meets the same limits, resolution and counting as one submitted over SMTP AUTH: it is
spooled with `sent_by` set, which makes the spool count MessagesSent/BytesSent for the sender.
Refusals are SMTP replies; the web interface shows their text.

An authenticated user sends only as an address it owns (mailsrv.mta.recipients.Resolver, `owned_by`):
the envelope sender (the null sender is always allowed) and every address of the `From:` and
`Sender:` headers; anything else is refused 553 5.7.1, so a login cannot put another user's,
another domain's or a remote name on its mail.
"""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import email.utils
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any, Protocol

import dns.resolver

from mailsrv.core import events
from mailsrv.core.actor import Actor
from mailsrv.core.clock import Clock
from mailsrv.core.dns import Memo, NotCached, cache_first
from mailsrv.directory.address_lists import SMTP, AddressLists
from mailsrv.directory.domain_limits import (
    Charge,
    LimitReached,
    Usage,
    disk_quota_refusal,
    hour_of,
    usage,
)
from mailsrv.directory.system_settings import SmtpSettings
from mailsrv.mailstore import maildir_names
from mailsrv.mailstore.disk import Disk
from mailsrv.mta import spf_check
from mailsrv.mta.filtering.dkim import Signer
from mailsrv.mta.filtering.pipeline import Pipeline
from mailsrv.mta.incoming_gateways import IncomingRole
from mailsrv.mta.list_addresses import ListCommandAddress
from mailsrv.mta.list_server import ListServer
from mailsrv.mta.local_delivery import first_over_quota
from mailsrv.mta.policy import Client, Policy, RecipientCheck, Reply, SenderCheck
from mailsrv.mta.recipients import (
    MISS,
    Deliver,
    Disabled,
    DomainInfo,
    ListAddress,
    LocalMailbox,
    RemoteAddress,
    Resolver,
    Unknown,
)
from mailsrv.mta.spool import (
    LOCAL,
    REMOTE,
    Companion,
    IncomingMessage,
    MaildirCopy,
    NewRecipient,
    Spool,
    storage_full,
)

log = logging.getLogger(__name__)

TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")
TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
BLACKLISTED = Reply(554, "5.7.1", "Your address is on this server's blacklist: connection refused")
INSUFFICIENT_STORAGE = Reply(452, "4.3.1", "Insufficient system storage")
BARE_LINE_END = Reply(550, "5.6.0", "Bare CR or LF in the message: every line must end with CRLF")


@dataclass(frozen=True)
class Submission:
    sender: str  # the envelope sender, "" for the null sender
    content: bytes
    accepted: Sequence[tuple[str, Deliver]]  # (recipient as given, its resolution), each passed check_recipient
    own_domain: DomainInfo | None  # the authenticated sender's domain
    actor: Actor | None  # the authenticated local user, None for unauthenticated clients
    client_ip: str
    helo: str
    trace: Callable[[str, dt.datetime], str]  # our Received header for (message id, time)
    spf_result: str = ""
    folder: str = ""  # the mailbox folder local copies are filed into ("" the inbox): the filters' verdict
    trusted: bool = False  # the client is trusted (relay networks, SMTP whitelist or bypass): Client.trusted
    whitelisted: bool = False  # the client is on the SMTP IP whitelist: Client.whitelisted

    @property
    def filtered(self) -> bool:
        """Whether the content filters judge it: not an authenticated user's, nor a trusted or
        whitelisted client's."""
        return self.actor is None and not self.trusted and not self.whitelisted


def _bare_line_end(content: bytes) -> bool:
    # A next hop may take a bare CR or LF for a line end, and so "<LF>.<LF>" for the end of the
    # data and what follows for commands of its own (SMTP smuggling): refused, as Postfix's
    # smtpd_forbid_bare_newline does, rather than rewritten, which would break signatures.
    pairs = content.count(b"\r\n")
    return content.count(b"\r") != pairs or content.count(b"\n") != pairs


def _header_senders(content: bytes) -> list[str]:
    """Every address of the message's `From:` and `Sender:` headers ("" for one that does not parse)."""
    end = content.find(b"\r\n\r\n")  # the parser stops at the first empty line; spare it the body
    header = BytesHeaderParser(policy=compat32).parsebytes(content if end < 0 else content[:end + 2])
    values = [str(v) for v in header.get_all("From", []) + header.get_all("Sender", [])]
    return [address for _, address in email.utils.getaddresses(values)]


def mailboxes(resolutions: Iterable[Deliver]) -> list[LocalMailbox]:
    seen: dict[int, LocalMailbox] = {}
    for resolution in resolutions:
        for route in resolution.routes:
            if isinstance(route, LocalMailbox):
                seen.setdefault(route.user_id, route)
    return list(seen.values())


def spool_recipients(accepted: Iterable[tuple[str, Deliver]]) -> list[NewRecipient]:
    """One spool recipient per distinct mailbox or remote address, however many RCPTs reach it
    (list command addresses are not delivered to: Intake.submit hands them the message)."""
    out: dict[tuple[str, str], NewRecipient] = {}
    for original, resolution in accepted:
        for route in resolution.routes:
            if isinstance(route, ListCommandAddress):
                continue
            if isinstance(route, LocalMailbox):
                recipient = NewRecipient(original, route.address, LOCAL, route.user_id)
            else:
                recipient = NewRecipient(original, route.address, REMOTE)
            out.setdefault((recipient.kind, recipient.address.lower()), recipient)
    return list(out.values())


async def _over_quota(boxes: list[LocalMailbox], incoming: int) -> LocalMailbox | None:
    """first_over_quota, in a worker thread only when some mailbox has a quota (it walks the Maildir)."""
    if not any(box.quota_bytes for box in boxes):
        return None
    return await asyncio.to_thread(first_over_quota, boxes, incoming)


def direct_copies(message_id: str, received_at: dt.datetime, resolutions: Sequence[Deliver],
                  folder: str = "") -> list[MaildirCopy]:
    """The mailbox copies of a message delivered at acceptance (mailsrv.mta.spool), or none when it
    must go through the spool: a remote route (forwarding, relay) or an auto-responder to run.
    `folder` names the mailbox folder to file them into (Disk.folder)."""
    routes = [route for resolution in resolutions for route in resolution.routes
              if not isinstance(route, ListCommandAddress)]
    if any(not isinstance(route, LocalMailbox) or route.auto_responder for route in routes):
        return []
    return [MaildirCopy(Disk.folder(Disk.maildir(box.domain.path, box.user), folder),
                        maildir_names.new_key(received_at, f"{message_id}_{box.user_id}"),
                        box.address, box.domain.id, box.user_id, box.user)
            for box in mailboxes(resolutions)]


def _list_route(resolution: Deliver) -> ListAddress | None:
    """The list a recipient is, when it is one (a list address resolves to that route alone)."""
    routes = resolution.routes
    return routes[0] if len(routes) == 1 and isinstance(routes[0], ListAddress) else None


def _fan_out(resolution: Deliver) -> int:
    return max(1, sum(1 for route in resolution.routes if isinstance(route, RemoteAddress)))


async def _domain_full(boxes: Iterable[LocalMailbox], incoming: int) -> Reply | None:
    """The refusal when one of the mailboxes' domains has no room for `incoming` bytes; the disk is
    walked, in a worker thread, only for domains with a quota. Temporary at RCPT and after DATA
    alike: the domain may free space or be granted more."""
    domains = {box.domain.id: box.domain for box in boxes if box.domain.max_size_bytes}
    if not domains:
        return None

    def first_refusal() -> str | None:
        return next(filter(None, (disk_quota_refusal(d.name, d.path, d.max_size_bytes, incoming)
                                  for d in domains.values())), None)
    refusal = await asyncio.to_thread(first_refusal)
    return Reply(452, "4.2.2", refusal) if refusal else None


def limit_reply(code: int, refusal: LimitReached) -> Reply:
    """An hourly limit reached: temporary, the client retries in a later hour."""
    return Reply(code, "4.7.1", f"Domain {refusal}")


def _sent_charge(actor: Actor | None, own_domain: DomainInfo | None, size: int) -> Charge | None:
    """What a message of `size` bytes sent by an authenticated user adds to its domain's hour; None
    when neither sending limit is enabled."""
    if actor is None or own_domain is None or not (own_domain.hourly.messages or own_domain.hourly.bytes_sent):
        return None
    return Charge(own_domain.name, own_domain.id, own_domain.hourly, messages_sent=1, bytes_sent=size)


def hourly_charges(message: Submission) -> list[Charge]:
    """What accepting `message` adds to its domains' enabled hourly limits (mailsrv.directory.domain_limits)."""
    sent = _sent_charge(message.actor, message.own_domain, len(message.content))
    charges = [sent] if sent else []
    if not message.sender:
        bounced = {r.domain.id: r.domain for _, r in message.accepted if r.domain and r.domain.hourly.bounces}
        charges += [Charge(d.name, d.id, d.hourly, bounces_received=1) for d in bounced.values()]
    return charges



class ListCommandHandler(Protocol):
    """mailsrv.mta.list_commands.ListCommands, which needs this module's spool_recipients."""

    async def handle(self, sender: str, content: bytes, targets: Sequence[ListCommandAddress]) -> None: ...


class Intake:
    """Taking mail in, for every way it arrives: the answers to MAIL, RCPT and DATA, and the
    acceptance into the spool. Built once by the server; SMTP and the web interface share it."""

    def __init__(self, resolver: Resolver, policy: Policy, spool: Spool, clock: Clock,
                 dns: dns.resolver.Resolver, deliver_at_acceptance: bool = True,
                 incoming: IncomingRole | None = None, list_commands: ListCommandHandler | None = None,
                 *, list_server: ListServer, filters: Pipeline | None = None, signer: Signer | None = None) -> None:
        self.resolver = resolver
        self.list_commands = list_commands  # what mail to a list command address is handed to
        self.incoming = incoming  # the domains this server is backup MX or incoming gateway for
        self.lists: AddressLists = resolver.lists  # one snapshot per process, read under the same generation
        self.policy = policy
        self.spool = spool
        self.clock = clock
        self.dns = dns
        self.deliver_at_acceptance = deliver_at_acceptance  # [smtp] deliver_at_acceptance
        self.list_server = list_server  # what mail to a list's own addresses is handed to
        self.filters = filters or Pipeline()  # mail hygiene (mailsrv.mta.filtering), at every stage
        self.signer = signer  # DKIM signing of authenticated senders' mail, after the filters
        self._generation: int | None = None  # the directory generation `begin` last brought everything to
        # (client IP, sender, HELO) -> SPF result: pyspf's is a function of them and of DNS alone.
        self._spf_results: Memo[tuple[str, str, str], str] = Memo()

    def client(self, ip: str, login: str | None) -> Client:
        """Who is sending, as the relay policy sees it (with the address lists `begin` last read, under
        the server's `relay` setting)."""
        return self.policy.client(ip, login, self.lists.snapshot(), self.settings.authenticated_relay)

    @property
    def settings(self) -> SmtpSettings:
        """The server settings as of the last `begin`."""
        return self.resolver.settings

    async def connect_refusal(self, ip: str) -> Reply | None:
        """Start a session (`begin`): the answer instead of the greeting for a client the SMTP IP
        blacklist or a check (abuse detection) refuses, else None."""
        await self.begin(ip)
        if self.lists.snapshot().refused(SMTP, ip):
            events.emit("blocked", protocol="smtp", ip=ip)
            return BLACKLISTED
        return await self.filters.connect(self.client(ip, None))

    async def begin(self, client_ip: str | None = None) -> None:
        """Start a session (of `client_ip`) or a mail transaction: the directory lookups, address lists
        and `settings` answer for the store as it is now (mailsrv.mta.recipients): one prepared read
        of the directory generation (at a session's start with the client's abuse block), on the
        event loop's thread (Store.run_read); what it keys is read again, in a worker thread, only
        when it moved."""
        resolver = self.resolver
        if await resolver.store.run_read(resolver.stored_generation, client_ip) != self._generation:
            await asyncio.to_thread(self._refresh)

    def _refresh(self) -> None:
        generation = self.resolver.refresh()
        self.lists.at(generation)
        if self.incoming is not None:
            self.incoming.gateways.at(generation)
        self._generation = generation

    async def _lookup(self, kind: str, *args: str) -> Any:
        # A cached answer costs no thread hop: most RCPTs, and every MAIL of a known sender domain.
        hit = self.resolver.cached(kind, *args)
        return hit if hit is not MISS else await asyncio.to_thread(self.resolver.lookup, kind, *args)

    async def domain(self, name: str) -> DomainInfo | None:
        """One of our domains' limits, None for a name that is not ours."""
        return await self._lookup("domain", name)  # type: ignore[no-any-return]

    async def check_sender(self, client: Client, actor: Actor | None, own_domain: DomainInfo | None, sender: str,
                           declared_size: int) -> Reply | None:
        """The refusal of an envelope sender (relay policy, an address the user does not own, no room for the
        declared size, a size over the sender's domain limit); None when the transaction may go ahead."""
        sender_domain = await self.domain(sender.rpartition("@")[2]) if "@" in sender else None
        blocked = self.lists.snapshot().sender_blocked(sender)
        refusal = self.policy.check_sender(SenderCheck(client, sender, sender_domain, blocked))
        refusal = refusal or await self._not_owned(actor, [sender] if sender else [])
        refusal = refusal or await self.filters.mail(client, sender)
        if refusal:
            return refusal
        if not self.spool.has_room(declared_size):  # one statvfs: no thread hop
            return INSUFFICIENT_STORAGE
        if own_domain and own_domain.max_message_bytes and declared_size > own_domain.max_message_bytes:
            return TOO_BIG
        # At least one byte: a domain at its bandwidth cap has no room left for any message.
        sent = _sent_charge(actor, own_domain, max(declared_size, 1))
        return await self._hourly_refusal(451, sent) if sent else None

    async def _hourly_refusal(self, code: int, charge: Charge) -> Reply | None:
        """The refusal of a message whose `charge` would cross a cap as the hour stands now. Only a
        forecast, to spare the client its upload: the spool's commit decides (domain_limits.charge)."""
        used = await asyncio.to_thread(self._usage, charge.domain_id)
        limit = charge.crossed(used)
        return None if limit is None else limit_reply(code, LimitReached(charge, limit))

    def _usage(self, domain_id: int) -> Usage:
        with self.resolver.store.read_connection() as conn:
            return usage(conn, domain_id, hour_of(self.clock.now()))

    async def _not_owned(self, actor: Actor | None, addresses: Iterable[str]) -> Reply | None:
        if actor is None:  # unauthenticated mail is the relay policy's business (mailsrv.mta.policy)
            return None
        for address in dict.fromkeys(a.lower() for a in addresses):  # once each: one lookup per address
            if not await self._lookup("owned_by", actor.domain, actor.user, address):
                return Reply(553, "5.7.1", f"<{address}>: {actor.login} may not send as this address")
        return None

    async def check_recipient(self, client: Client, sender: str, own_domain: DomainInfo | None,
                              accepted: Sequence[tuple[str, Deliver]], address: str,
                              declared_size: int) -> Deliver | Reply:
        """The resolution of one more recipient, or the refusal to answer for it.

        Recipient limits count what a message fans out to: each RCPT counts as one, or as the number
        of remote addresses its aliases and forwarding send it on to, so one unauthenticated message
        to an alias cannot become more outbound copies than the alias's domain allows. The RCPT that
        crosses a limit gets 452 (the client may send it in another transaction); one that alone
        exceeds it 550, since it can never fit. The filters see every RCPT, an unknown one too."""
        result = await self._check_recipient(client, sender, own_domain, accepted, address, declared_size)
        if isinstance(result, Reply):
            return result
        return await self.filters.rcpt(client, sender, address, result) or result

    async def _check_recipient(self, client: Client, sender: str, own_domain: DomainInfo | None,
                               accepted: Sequence[tuple[str, Deliver]], address: str,
                               declared_size: int) -> Deliver | Reply:
        result = await self._lookup("resolve", address)
        if isinstance(result, Unknown):
            return await self.filters.rcpt(client, sender, address, None) \
                or Reply(550, "5.1.1", f"<{address}>: no such user here")
        if isinstance(result, Disabled):
            return Reply(550, "5.2.1", f"<{address}>: {result.what} disabled")
        # The gateways as `begin` read them: no thread hop on a server that has none.
        incoming = self.incoming
        gateway = None if result.domain is not None or incoming is None or not incoming.gateways.snapshot() \
            else await asyncio.to_thread(incoming.gateway_for, address.rpartition("@")[2])
        refusal = self.policy.check_recipient(RecipientCheck(
            client, sender, address, local=result.domain is not None, relay_domain=gateway is not None,
            from_primary=gateway is not None and gateway.from_primary(client.ip)))
        if refusal:
            return refusal
        if gateway is not None and incoming is not None \
                and not await asyncio.to_thread(incoming.recipient_known, gateway, address):
            return Reply(550, "5.1.1", f"<{address}>: no such user at the primary server")
        route = _list_route(result)
        if route is not None:  # the list's own rules (mailsrv.mta.list_server), not a mailbox's
            verdict = await asyncio.to_thread(self.list_server.check, route, sender, declared_size, len(accepted) + 1)
            return verdict if isinstance(verdict, Reply) else result
        domain = result.domain
        everyone = [r for _, r in accepted]
        limits = [(self.settings.max_recipients, everyone)]
        if own_domain:
            limits.append((own_domain.max_recipients, everyone))
        if domain is not None:
            same_domain = [r for r in everyone if r.domain is not None and r.domain.id == domain.id]
            limits.append((domain.max_recipients, same_domain))
        weight = _fan_out(result)
        for limit, counted in limits:
            if limit and sum(map(_fan_out, counted)) + weight > limit:
                return TOO_MANY_RECIPIENTS if weight <= limit else \
                    Reply(550, "5.5.3", f"<{address}>: expands to more recipients than allowed ({limit})")
        if domain is not None and domain.max_message_bytes and declared_size > domain.max_message_bytes:
            return TOO_BIG
        boxes = mailboxes([result])
        full = await _over_quota(boxes, declared_size)
        if full is not None:
            return Reply(452, "4.2.2", f"<{address}>: mailbox full")
        refusal = await _domain_full(boxes, declared_size)
        if refusal:
            return refusal
        if not sender and domain is not None and domain.hourly.bounces \
                and not any(r.domain is not None and r.domain.id == domain.id for r in everyone):
            return await self._hourly_refusal(450, Charge(domain.name, domain.id, domain.hourly,
                                                          bounces_received=1)) or result
        return result

    async def submit(self, message: Submission) -> str | Reply:
        """The message's id once it is durably spooled, or delivered when all its recipients are local
        mailboxes (mailsrv.mta.spool, direct delivery); or the refusal (line ends, header senders, size,
        mailbox and domain quota, a domain's hourly limit as the spool's commit charges it, full storage)."""
        if _bare_line_end(message.content):
            return BARE_LINE_END
        findings = await self.filters.data(message)
        if isinstance(findings, Reply):
            return findings
        if findings.discard:  # a "delete" action: taken from the client, delivered to nobody
            return Spool.new_id()
        content = findings.apply(message.content, self.settings.hostname)
        if message.actor is not None and self.signer is not None:
            # Signed here, once: the spool keeps the signed bytes (mailsrv.mta.filtering.dkim).
            from_domains = [address.rpartition("@")[2] for address in _header_senders(content)[:1]]
            content = await self.signer.sign(content, [*from_domains, message.actor.domain])
        return await self._submit(dataclasses.replace(message, content=content, folder=findings.folder))

    async def _submit(self, message: Submission) -> str | Reply:
        if any(_list_route(r) for _, r in message.accepted):
            return await self._submit_with_lists(message)
        return await self._accept(message)

    async def _accept(self, message: Submission, companions: Sequence[Companion] = ()) -> str | Reply:
        """`submit` of the message to its recipients, none of them a list; with `companions`, what lists
        take of it, accepted in the same commit (all or nothing)."""
        content = message.content
        # Parsed only for a login: unauthenticated mail has no header sender to check.
        refusal = await self._not_owned(message.actor, _header_senders(content)) if message.actor else None
        if refusal:
            return refusal
        limits = [d.max_message_bytes for d in [message.own_domain, *(r.domain for _, r in message.accepted)]
                  if d is not None and d.max_message_bytes]
        if limits and len(content) > min(limits):
            return TOO_BIG
        boxes = mailboxes(r for _, r in message.accepted)
        full = await _over_quota(boxes, len(content))
        if full is not None:
            return Reply(552, "5.2.2", f"<{full.address}>: mailbox full")
        refusal = await _domain_full(boxes, len(content))
        if refusal:
            return refusal
        actor = message.actor
        message_id, now = Spool.new_id(), self.clock.now()
        commands = [route for _, r in message.accepted for route in r.routes if isinstance(route, ListCommandAddress)]
        if commands and self.list_commands is not None:
            # Answered (the replies spooled) before the 250: a failure is a 451 and the client retries.
            await self.list_commands.handle(message.sender, content, commands)
        recipients = spool_recipients(message.accepted)
        if not recipients and not companions:
            return message_id
        try:
            await self.spool.enqueue(IncomingMessage(
                id=message_id, sender=message.sender, content=content, received_at=now,
                client_ip=message.client_ip, helo=message.helo, trace_header=message.trace(message_id, now),
                recipients=recipients,
                auth_login=actor.login if actor else "",
                sent_by=(actor.domain, actor.user) if actor else None,
                spf_result=message.spf_result, folder=message.folder,
                copies=direct_copies(message_id, now, [r for _, r in message.accepted], message.folder)
                if self.deliver_at_acceptance else (),
                charges=hourly_charges(message), companions=companions))
        except LimitReached as exc:
            return limit_reply(451, exc)
        except Exception as exc:
            if storage_full(exc):  # a sender retries a 452 later; any other failure stays 451
                return INSUFFICIENT_STORAGE
            raise
        return message_id

    async def _submit_with_lists(self, message: Submission) -> str | Reply:
        """`submit` of a message some of whose recipients are lists: every list judges it first (one
        refusal refuses it all), each list prepares what it takes of it (mailsrv.mta.list_server), then
        one commit accepts it for the other recipients and every list together: a failure anywhere is a
        451 with nothing taken, so the client's retry doubles nothing."""
        lists = [(route, original) for original, r in message.accepted if (route := _list_route(r)) is not None]
        verdicts = []
        for route, _ in lists:
            verdict = await asyncio.to_thread(self.list_server.check, route, message.sender, len(message.content),
                                              len(message.accepted), message.content)
            if isinstance(verdict, Reply):
                return verdict
            verdicts.append(verdict)
        taken: list[Companion] = []
        try:
            for (route, _), verdict in zip(lists, verdicts):
                taken.append(await self.list_server.take(route, verdict, message.sender, message.content,
                                                         message.client_ip, message.helo, message.trace))
            others = [(original, r) for original, r in message.accepted if _list_route(r) is None]
            outcome = await self._accept(dataclasses.replace(message, accepted=others), taken)
        except BaseException:
            for companion in taken:
                companion.discard()
            raise
        if isinstance(outcome, Reply):  # refused before the commit: the lists take nothing either
            for companion in taken:
                companion.discard()
        return outcome

    async def spf_result(self, actor: Actor | None, client_ip: str, sender: str, helo: str,
                         trusted: bool = False) -> str:
        """The sender's SPF result (for the null sender, the HELO name's: RFC 7208 §2.4) when a policy
        asks for it, or `spfcheck` for an untrusted client; else "". Authenticated clients are never checked."""
        if actor or not (self.settings.spf_check and not trusted or self.settings.spf_needed):
            return ""
        key = (client_ip, sender or f"postmaster@{helo}", helo)
        kept: str | None = self._spf_results.get(key)
        if kept is not None:
            return kept
        result, view = await cache_first(self.dns, lambda resolver: self._spf_check(resolver, *key))
        self._spf_results.put(key, result, view)
        return result

    @staticmethod
    def _spf_check(resolver: dns.resolver.Resolver, client_ip: str, sender: str, helo: str) -> str:
        try:
            return spf_check.check(resolver, client_ip, sender, helo)
        except NotCached:  # the caller asks again with the resolver itself
            return ""
        except Exception:  # the result only decides whether we answer: never refuse mail over it
            log.exception("SPF check of %s failed", sender)
            return "temperror"
