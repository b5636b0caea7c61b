"""Remote delivery: the Target for recipients of kind "remote" — MX lookup and SMTP out.

For one claimed message, its remote recipients are grouped by domain and each domain gets one
SMTP transaction carrying all of them (one DATA, per-recipient outcomes from the RCPT replies);
recipients with a copy of their own (a list post's: its own envelope sender and header lines,
mailsrv.mta.spool.NewRecipient) get one transaction each, one after the other on the same connection:
- route: what mailsrv.mta.routing decides (an incoming gateway's primary, the outgoing gateways),
  else the domain's MX hosts in preference order (equal preferences in random order, RFC 5321
  §5.1), each host's A then AAAA addresses; no MX at all means the implicit MX, the domain's own
  addresses; a null MX (`0 .`, RFC 7505) or a domain that does not exist fails at once;
- the first address that greets with 220 is used; EHLO (HELO if refused) as the `smtphostname`
  server setting, read at each connection, from the next `outboundips` address (the source, in
  turn; none set, the system's choice); a hop that refuses or does not answer is reported to
  its route's `unreachable` (the outgoing gateways' cool-down);
- STARTTLS whenever the peer offers it, naming the MX host (SNI) though we dial its address,
  without verifying its certificate: opportunistic TLS (RFC 7435) protects against passive
  listening, and refusing an unverifiable certificate would only push the mail to plaintext. A
  handshake that fails is retried once on the same address in plaintext, as MTAs do, so one
  broken TLS stack cannot hold mail forever;
- replies: 2xx delivered, 4xx and any connection trouble deferred, 5xx failed.

smtplib is used in worker threads (the queue manager is asyncio): it is the standard library's
client, and a connection is only ever used by one thread at a time (the pool hands it over).
The threads are this target's own, `[delivery] max_connections` of them: peers that answer
slowly (up to TIMEOUT_SECONDS a step) must not take the process's default pool, which SMTP
acceptance and local delivery wait on. At most `[delivery] max_connections` transactions run at
once, and at most `[delivery] max_connections_per_domain` to one destination (a domain's MX hosts,
or a gateway: the route's `destination`; when none of a destination's hosts answered, the deliveries
that were already waiting for its connection slots are deferred at once instead of dialling it
again; those claimed afterwards — an admin's ResetRetryCounts, new mail — dial it); a
connection that ended its transaction cleanly is kept for the next message to the same destination
within the same queue run and closed (QUIT) when the run ends (`end_run`).

Nothing is counted here: MessagesSent/BytesSent are the sender's submission, counted at
acceptance (mailsrv.mta.spool), so relaying it onwards must not count it again.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import re
import smtplib
import socket
import ssl
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import dns.exception
import dns.resolver

from mailsrv.mta.routing import Hop, Route, Routes
from mailsrv.mta.spool import ClaimedRecipient, Deferred, Delivered, Failed, Job, Outcome, SpooledMessage

log = logging.getLogger(__name__)

# One number for every wait on the peer: long enough for a busy server's DATA answer (RFC 5321
# §4.5.3.2 allows minutes), short enough that a hung peer frees its connection slot.
TIMEOUT_SECONDS = 120
UNREACHABLE = "4.4.1"  # RFC 3463: no answer from any host of the destination
_STATUS = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")


class RouteError(Exception):
    """Delivery to a whole domain cannot happen now; `permanent` decides failed or deferred."""

    def __init__(self, status: str, text: str, remote_mta: str = "", reply: str = "") -> None:
        super().__init__(f"{status} {text}")
        self.status, self.remote_mta, self.reply = status, remote_mta, reply

    @property
    def permanent(self) -> bool:
        return self.status.startswith("5")

    def outcome(self) -> Deferred | Failed:
        if self.permanent:
            return Failed(str(self), self.remote_mta, self.reply)
        # 4.4.1, no host answered: the domain is dead for now (mailsrv.mta.destinations.pause).
        return Deferred(str(self), self.remote_mta, self.reply, unreachable=self.status == UNREACHABLE)


def mx_hosts(resolver: dns.resolver.Resolver, domain: str) -> list[str]:
    """The hosts to try for `domain`, best first (blocking)."""
    try:
        answer = resolver.resolve(domain, "MX", search=False)
    except dns.resolver.NoAnswer:
        return [domain]  # the implicit MX (RFC 5321 §5.1)
    except dns.resolver.NXDOMAIN:
        raise RouteError("5.1.2", f"the domain {domain} does not exist") from None
    except dns.exception.DNSException as exc:
        raise RouteError("4.4.3", f"the MX lookup of {domain} failed: {exc}") from None
    records = [(r.preference, r.exchange.to_text(omit_final_dot=True)) for r in answer]
    if any(host in ("", ".") for _, host in records):
        raise RouteError("5.1.10", f"the domain {domain} accepts no mail (null MX)")
    random.shuffle(records)  # then a stable sort: equal preferences stay shuffled
    return [host for _, host in sorted(records, key=lambda record: record[0])]


def host_addresses(resolver: dns.resolver.Resolver, host: str) -> list[str]:
    """A then AAAA addresses of `host`; [] when it has none; RouteError (temporary) when none
    were found and a lookup failed, so a DNS outage is never mistaken for "no such host"."""
    found: list[str] = []
    failed = ""
    for rdtype in ("A", "AAAA"):
        try:
            found += [r.to_text() for r in resolver.resolve(host, rdtype, search=False)]
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            continue
        except dns.exception.DNSException as exc:
            failed = f"the {rdtype} lookup of {host} failed: {exc}"
    if not found and failed:
        raise RouteError("4.4.3", failed)
    return found


def _opportunistic_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _reply_text(code: int, message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    return f"{code} {' '.join(text.split())}"


def _classify(code: int, message: bytes | str, host: str) -> Delivered | Deferred | Failed:
    reply = _reply_text(code, message)
    if 200 <= code < 300:
        return Delivered(relay=host, reply=reply)
    found = _STATUS.match(reply[4:])
    # The reply code decides; an enhanced code of another class (a "450 5.1.1") keeps its detail only.
    status = str(code)[0] + found.group(0)[1:] if found else ("5.0.0" if 500 <= code < 600 else "4.0.0")
    kind = Failed if 500 <= code < 600 else Deferred
    return kind(f"{status} {host} said: {reply}", host, reply)


class _MXClient(smtplib.SMTP):
    """smtplib's client for MX host `host`, dialled at `address`, which we looked up ourselves.

    The host name goes to smtplib's constructor, which keeps it as the name STARTTLS sends (SNI)
    and then calls `connect` (documented); ours dials the address instead of having the system
    resolver look the name up again."""

    def __init__(self, host: str, address: str, port: int, helo: str, source: str | None = None) -> None:
        self.address = address
        super().__init__(host, port, local_hostname=helo, timeout=TIMEOUT_SECONDS,
                         source_address=(source, 0) if source else None)

    def connect(self, host: str = "localhost", port: int = 0,
                source_address: tuple[str, int] | None = None) -> tuple[int, bytes]:
        return super().connect(self.address, port, source_address)


@dataclass
class Connection:
    smtp: smtplib.SMTP
    host: str  # the MX host name: the DSN's Remote-MTA
    tls: bool

    def close(self) -> None:
        try:
            self.smtp.quit()
        except (smtplib.SMTPException, OSError):
            self.smtp.close()


class Dialer:
    """Opens an SMTP session to the first reachable host of a domain (blocking)."""

    def __init__(self, resolver: dns.resolver.Resolver, helo: Callable[[], str], port: int,
                 source: Callable[[], str | None] = lambda: None) -> None:
        self.resolver = resolver
        self.helo = helo  # our name as it is now (blocking: a store read)
        self.port = port
        # The local address of a connection whose hop names none: `outboundips` in turn (blocking).
        self.source = source
        self.tls_context = _opportunistic_tls()

    def open(self, domain: str, route: Route) -> Connection:
        """A session with the first hop of `route` that answers; the domain's MX hosts when the
        route names no hops."""
        hops = route.hops if route.hops is not None else [Hop(host, self.port) for host in mx_hosts(self.resolver, domain)]
        helo = self.helo()
        source = self.source()
        problems: list[str] = []
        for hop in hops:
            try:
                addresses = [hop.address] if hop.address else host_addresses(self.resolver, hop.host)
            except RouteError as exc:
                problems.append(f"{hop.host}: {exc}")
                continue
            if not addresses:
                problems.append(f"{hop.host}: no address")
            dialled = hop if hop.source is not None or source is None else dataclasses.replace(hop, source=source)
            for address in addresses:
                try:
                    return self._session(dialled, address, helo, tls=True)
                except ssl.SSLError as exc:
                    log.warning("STARTTLS with %s [%s] failed (%s); retrying without TLS", hop.host, address, exc)
                    try:
                        return self._session(dialled, address, helo, tls=False)
                    except (OSError, smtplib.SMTPException) as plain_exc:
                        problems.append(f"{hop.host} [{address}]: {plain_exc}")
                except (OSError, smtplib.SMTPException) as exc:
                    problems.append(f"{hop.host} [{address}]: {exc or type(exc).__name__}")
            if route.unreachable is not None:
                route.unreachable(hop)
        if route.hops is None and [hop.host for hop in hops] == [domain] \
                and all(p.endswith(": no address") for p in problems):
            raise RouteError("5.1.2", f"the domain {domain} has neither MX nor address records")
        raise RouteError(UNREACHABLE, f"no mail server of {domain} could be reached ({'; '.join(problems)})")

    def _session(self, hop: Hop, address: str, helo: str, tls: bool) -> Connection:
        smtp = _MXClient(hop.host, address, hop.port, helo, hop.source)  # raises SMTPConnectError unless 220
        try:
            smtp.ehlo_or_helo_if_needed()
            if tls and smtp.has_extn("starttls"):
                try:
                    smtp.starttls(context=self.tls_context)
                    smtp.ehlo()  # RFC 3207: forget what was said before TLS, ask again
                except smtplib.SMTPResponseException:  # e.g. 454: the session goes on in plaintext
                    tls = False
            else:
                tls = False
            return Connection(smtp, hop.host, tls)
        except BaseException:
            smtp.close()
            raise


def _mail_options(smtp: smtplib.SMTP, sender: str, recipients: Sequence[ClaimedRecipient],
                  content: bytes) -> list[str]:
    options = []
    if smtp.has_extn("size"):
        options.append(f"SIZE={len(content)}")
    if smtp.has_extn("8bitmime") and not content.isascii():
        options.append("BODY=8BITMIME")
    if not sender.isascii() or not all(r.address.isascii() for r in recipients):
        if not smtp.has_extn("smtputf8"):
            raise RouteError("5.6.7", "the destination does not support internationalised addresses (SMTPUTF8)")
        options.append("SMTPUTF8")
    return options


def transact(conn: Connection, sender: str, recipients: Sequence[ClaimedRecipient],
             content: bytes, proceed: Callable[[], bool]) -> tuple[list[Outcome], bool]:
    """One MAIL/RCPT…/DATA transaction: one outcome per recipient, and whether the connection may
    carry another. Raises on a connection that broke before the outcomes were known.

    `proceed` is asked just before DATA, the step that cannot be taken back: False (this node may
    have been declared dead, its recipients taken over: mailsrv.mta.nodes) sends nothing."""
    smtp = conn.smtp
    code, reply = smtp.mail(sender, _mail_options(smtp, sender, recipients, content))
    refused = _classify(code, reply, conn.host)
    if not isinstance(refused, Delivered):
        return [refused] * len(recipients), _reset(smtp)
    outcomes: list[Outcome] = []
    for recipient in recipients:
        code, reply = smtp.rcpt(recipient.address)
        outcomes.append(_classify(code, reply, conn.host))
    accepted = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, Delivered)]
    if not accepted:
        return outcomes, _reset(smtp)
    if not proceed():
        return [Deferred("4.3.0 held back: this node lost touch with the store")] * len(recipients), _reset(smtp)
    try:
        code, reply = smtp.data(content)
    except smtplib.SMTPDataError as exc:  # DATA itself refused (not 354)
        code, reply = exc.smtp_code, exc.smtp_error
    result = _classify(code, reply, conn.host)
    for i in accepted:
        outcomes[i] = result
    return outcomes, isinstance(result, Delivered) or _reset(smtp)


def _reset(smtp: smtplib.SMTP) -> bool:
    """RSET after a refusal; False when the peer is gone (the outcomes stand all the same)."""
    try:
        return smtp.rset()[0] == 250
    except (OSError, smtplib.SMTPException):
        return False


class RemoteDelivery:
    """The delivery target for recipients of kind "remote" (mailsrv.mta.queue.Target, RunAware)."""

    def __init__(self, dialer: Dialer, routes: Routes, max_connections: int, max_connections_per_domain: int,
                 holds: Callable[[str], bool]) -> None:
        self.dialer = dialer
        self.routes = routes  # where each domain's mail goes (mailsrv.mta.routing)
        # Whether a delivery claimed by the node named may still send its message (Heartbeat.holds).
        self.holds = holds
        self._threads = ThreadPoolExecutor(max(1, max_connections), thread_name_prefix="smtp-out")
        # The sessions in a transaction right now, which `abort` breaks off when the node stops.
        self._transacting: set[smtplib.SMTP] = set()
        self._transacting_lock = threading.Lock()
        self._stopping = False
        self.max_connections = max(1, max_connections_per_domain)
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._idle: dict[str, list[Connection]] = defaultdict(list)
        self._busy: Counter[str] = Counter()  # transactions under way per destination
        # Destinations none of whose hosts answered: (monotonic time that was found, the error). What
        # was waiting for their slots then is deferred at once rather than each waiting for its own
        # timeouts; the spool defers their other due recipients (mailsrv.mta.destinations.pause).
        self._dead: dict[str, tuple[float, str]] = {}

    async def deliver(self, job: Job) -> list[Outcome]:
        by_domain: dict[str, list[ClaimedRecipient]] = defaultdict(list)
        for recipient in job.recipients:
            by_domain[recipient.address.rpartition("@")[2].lower()].append(recipient)
        body = await asyncio.to_thread(_body, job.message)
        plans = {domain: _transactions(job.message, recipients, body) for domain, recipients in by_domain.items()}
        results = await asyncio.gather(*(self._deliver_domain(domain, job.node, transactions)
                                         for domain, transactions in plans.items()))
        outcomes: dict[int, Outcome] = {}
        for transactions, domain_outcomes in zip(plans.values(), results, strict=True):
            outcomes.update(zip((r.id for t in transactions for r in t.recipients), domain_outcomes, strict=True))
        return [outcomes.get(r.id, Deferred("4.3.0 not attempted")) for r in job.recipients]

    async def _deliver_domain(self, domain: str, node: str, transactions: list[Transaction]) -> list[Outcome]:
        """The outcomes of the domain's recipients, in the order of `transactions`."""
        recipients = [r for t in transactions for r in t.recipients]
        try:
            route = await asyncio.get_running_loop().run_in_executor(self._threads, self.routes.route, domain)
        except Exception as exc:  # e.g. the store is out of reach: try again later
            log.exception("routing %s failed", domain)
            return [Deferred(f"4.4.3 no route to {domain} now: {exc or type(exc).__name__}")] * len(recipients)
        limit = self._limits.setdefault(route.destination, asyncio.Semaphore(self.max_connections))
        waiting_since = time.monotonic()
        async with limit:
            if (dead := self._dead.get(route.destination)) is not None and dead[0] >= waiting_since:
                return [Deferred(dead[1], unreachable=True)] * len(recipients)
            idle = self._idle[route.destination]
            reused = idle.pop() if idle else None
            self._busy[route.destination] += 1
            try:
                outcomes, conn = await asyncio.get_running_loop().run_in_executor(
                    self._threads, self._send_all, domain, route, node, reused, transactions)
            finally:
                self._busy[route.destination] -= 1
                if not self._busy[route.destination]:
                    del self._busy[route.destination]
            if conn is not None:
                self._idle[route.destination].append(conn)
            return outcomes

    def _send_all(self, domain: str, route: Route, node: str, conn: Connection | None,
                  transactions: list[Transaction]) -> tuple[list[Outcome], Connection | None]:
        """The outcomes of `transactions`, one after the other on one connection, and the connection
        if it may be used again (blocking). A hop that cannot be reached is not dialled again for the
        transactions after the first."""
        outcomes: list[Outcome] = []
        for n, t in enumerate(transactions):
            done, conn, unreachable = self._send(domain, route, node, conn, t.sender, t.recipients, t.content)
            outcomes += done
            if unreachable:
                outcomes += [done[0]] * sum(len(rest.recipients) for rest in transactions[n + 1:])
                break
        return outcomes, conn

    def _send(self, domain: str, route: Route, node: str, conn: Connection | None, sender: str,
              recipients: list[ClaimedRecipient], content: bytes) -> tuple[list[Outcome], Connection | None, bool]:
        """The outcomes, the connection if it may be used again, and whether no session could be opened
        (blocking)."""
        reused = conn is not None
        if self._stopping:
            return [Deferred("4.3.2 the server is stopping")] * len(recipients), conn, True
        if conn is None:
            try:
                conn = self.dialer.open(domain, route)
            except RouteError as exc:
                if exc.status == UNREACHABLE:
                    self._dead[route.destination] = (time.monotonic(), str(exc))
                return [exc.outcome()] * len(recipients), None, True
        try:
            with self._transacting_lock:
                self._transacting.add(conn.smtp)
            try:
                outcomes, reusable = transact(conn, sender, recipients, content, lambda: self.holds(node))
            finally:
                with self._transacting_lock:
                    self._transacting.discard(conn.smtp)
        except RouteError as exc:
            conn.close()
            return [exc.outcome()] * len(recipients), None, False
        except (OSError, smtplib.SMTPException) as exc:
            conn.smtp.close()
            if reused:  # the peer closed a connection kept from an earlier transaction: dial afresh
                return self._send(domain, route, node, None, sender, recipients, content)
            error = f"4.4.2 the connection to {conn.host} broke: {exc or type(exc).__name__}"
            return [Deferred(error, conn.host)] * len(recipients), None, False
        if reusable:
            return outcomes, conn, False
        conn.close()
        return outcomes, None, False

    def in_flight(self, destination: str) -> int:
        """Transactions under way to `destination` now (LeastQueued's length of a plain gateway)."""
        return self._busy.get(destination, 0)

    async def end_run(self) -> None:
        idle = [conn for conns in self._idle.values() for conn in conns]
        self._idle.clear()
        self._limits.clear()  # nothing holds one between runs; do not keep one per domain ever seen
        self._dead.clear()  # the spool's pause decides when they are tried again
        if idle:
            await asyncio.get_running_loop().run_in_executor(self._threads, lambda: [conn.close() for conn in idle])

    def abort(self) -> None:
        """Break off the transactions under way and start no more (the node is stopping and has
        stopped waiting for them): their threads end at once instead of holding the process up
        to TIMEOUT_SECONDS a step. Their outcomes are not recorded, so they are attempted again."""
        self._stopping = True
        with self._transacting_lock:
            sessions = list(self._transacting)
        for smtp in sessions:
            if smtp.sock is not None:
                try:
                    smtp.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        """Stop the threads once their current transactions end."""
        self._threads.shutdown(wait=False, cancel_futures=True)


def _body(message: SpooledMessage) -> bytes:
    with open(message.path, "rb") as body:
        return body.read()


@dataclass(frozen=True)
class Transaction:
    sender: str
    recipients: list[ClaimedRecipient]
    content: bytes


def _transactions(message: SpooledMessage, recipients: list[ClaimedRecipient], body: bytes) -> list[Transaction]:
    """One transaction for the recipients sharing an envelope sender and header lines (all of them,
    but for a list post's copies), in the order of `recipients`. The content: our Received header first
    (RFC 5321 §4.4: every relay adds one), the copy's own header lines, then the bytes as received."""
    groups: dict[tuple[str, str], list[ClaimedRecipient]] = {}
    for r in recipients:
        groups.setdefault((r.sender or message.sender, r.headers), []).append(r)
    return [Transaction(sender, group, (message.trace_header + headers).encode("utf-8", "surrogateescape") + body)
            for (sender, headers), group in groups.items()]


def make_remote_delivery(resolver: dns.resolver.Resolver, hostname: Callable[[], str], port: int, max_connections: int,
                         max_connections_per_domain: int, holds: Callable[[str], bool],
                         routes: Routes | None = None,
                         source: Callable[[], str | None] = lambda: None) -> RemoteDelivery:
    return RemoteDelivery(Dialer(resolver, hostname, port, source), routes or Routes(), max_connections,
                          max_connections_per_domain, holds)


__all__ = ["Connection", "Dialer", "RemoteDelivery", "RouteError", "host_addresses", "make_remote_delivery",
           "mx_hosts", "transact"]
