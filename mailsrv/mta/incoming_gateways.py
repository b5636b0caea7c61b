"""The backup MX and incoming gateway roles at work: which foreign domains SMTP accepts mail for,
which recipients of them, and where remote delivery hands that mail (the gateways themselves:
mailsrv.directory.incoming_gateways).

- A domain is a relay domain when a gateway lists it (`domainVerifyType=List`) or the primary's
  domain list says so (`SmarterMail`: svcDomainAdmin `GetAllDomains` over the primary's API, kept
  per gateway and asked again every DOMAINS_REFRESH; when the primary cannot be asked the list last
  read stays, and it is asked again after RETRY_AFTER). The list read is kept in the store too
  (written when it changed), so every node and a restarted server answer with it while the primary
  is down; only a gateway whose primary was never reached knows none of its domains yet.
- Mail for a relay domain is accepted from anyone (policy rule `relay_domain`) — except from the
  primary itself (its range or its address): handing that back to the primary would loop, so RCPT
  gets `554 5.4.6 routing loop` (policy rule `gateway_loop`, asked before any other rule).
- With `userVerifyType=SmarterMail` a recipient is asked of the primary's API: svcUserAdmin
  `GetUser`, then svcAliasAdmin `GetAlias`, then the domain's catch-all (`GetRequestedDomainSettings`
  `enablecatchalls`, `catchall`). Answers are kept KNOWN_TTL (known) or UNKNOWN_TTL (unknown); an
  unknown one gets `550 5.1.1`. While the primary cannot be asked (refused, timed out, login
  failed, an answer that is not SOAP) the recipient is accepted: a backup must not refuse mail
  because the primary is down; the primary decides when the mail reaches it.
- Remote delivery routes a relay domain to the primary only (`GatewayRouter`): one hop, its IP or
  its host name's A/AAAA addresses, never an MX lookup or a lower-preference MX. A primary that does
  not answer defers the mail (4.4.1), which the queue retries through the whole `retryminutes`
  list before it bounces; both modes hand over at once and keep the mail the same way.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from mailsrv.core import names, soap_client
from mailsrv.core.errors import MailsrvError
from mailsrv.core.soap_client import SoapError, SoapReply
from mailsrv.directory.incoming_gateways import (
    VERIFY_LIST,
    VERIFY_SMARTERMAIL,
    IncomingGateway,
    IncomingGateways,
)
from mailsrv.mta.routing import Hop, Route

log = logging.getLogger(__name__)

API_TIMEOUT = 5.0  # seconds per call: RCPT waits for it
DOMAINS_REFRESH = 300.0
RETRY_AFTER = 30.0  # after a failed ask: how long the last good answer (or acceptance) stands alone
KNOWN_TTL, UNKNOWN_TTL = 600.0, 60.0
CACHE_ENTRIES = 50_000
# Result codes of a primary that refused our login rather than answered (SmarterMail's and ours).
LOGIN_REFUSED = {-1, -3, -5}


class PrimaryUnreachable(Exception):
    """The primary's API could not be asked (connection, timeout, login, not a SOAP answer)."""


class PrimaryApi:
    """The primary's SmarterMail-compatible API, as the roles ask it (blocking, with timeouts)."""

    def __init__(self, url: str, user: str, password: str, timeout: float = API_TIMEOUT) -> None:
        self.base, self.user, self.password, self.timeout = url, user, password, timeout

    def call(self, service: str, operation: str, params: Sequence[tuple[str, str | list[str]]]) -> SoapReply:
        try:
            reply = soap_client.call(self.base, service, operation,
                                     {"AuthUserName": self.user, "AuthPassword": self.password, **dict(params)},
                                     self.timeout)
        except SoapError as exc:
            raise PrimaryUnreachable(f"{self.base}: {exc}") from None
        if not reply.result and reply.code in LOGIN_REFUSED:
            raise PrimaryUnreachable(f"{service}.{operation} at {self.base}: login refused ({reply.code})")
        return reply

    def domains(self) -> frozenset[str]:
        result = self.call("svcDomainAdmin", "GetAllDomains", [])
        if not result.result:
            raise PrimaryUnreachable(f"GetAllDomains at {self.base}: refused ({result.code})")
        return frozenset(_domain(name) for name in result.lists.get("DomainNames", []) if name.strip()) - {""}

    def knows(self, address: str) -> bool:
        """Whether the primary would take mail for `address`: a user, an alias, or its domain's catch-all."""
        local, _, domain = address.rpartition("@")
        if self.call("svcUserAdmin", "GetUser", [("EmailAddress", address)]).result:
            return True
        if self.call("svcAliasAdmin", "GetAlias", [("DomainName", domain), ("AliasName", local)]).result:
            return True
        found = self.call("svcDomainAdmin", "GetRequestedDomainSettings",
                          [("DomainName", domain), ("requestedSettings", ["enablecatchalls", "catchall"])])
        pairs = dict(v.partition("=")[::2] for v in found.lists.get("settingValues", []))
        return found.result and bool(pairs.get("catchall", "").strip()) \
            and pairs.get("enablecatchalls", "Enabled").lower() not in ("disabled", "false")


def _domain(raw: str) -> str:
    try:
        return names.domain_name(raw)
    except MailsrvError:
        return ""


@dataclass
class _Answer:
    value: object
    expires: float


class IncomingRole:
    """Relay domains, recipient verification and routing for the incoming gateways (per process;
    every method may block on the store or on a primary's API, and is called from a thread)."""

    def __init__(self, gateways: IncomingGateways, default_port: int,
                 api: Callable[[IncomingGateway], PrimaryApi] | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.gateways = gateways
        self.default_port = default_port  # the primary's port when IPAddress names none ([delivery] remote_port)
        self.api = api or (lambda g: PrimaryApi(g.api_url, g.api_user, g.api_password))
        self.monotonic = monotonic
        self._domains: dict[tuple[str, str], tuple[frozenset[str], float]] = {}  # (guid, url) -> list, next ask
        self._asking: dict[tuple[str, str], threading.Lock] = {}  # held while that list is being asked for
        self._answers: dict[tuple[str, str, str], _Answer] = {}
        self._lock = threading.Lock()

    def gateway_for(self, domain: str, gateways: Sequence[IncomingGateway] | None = None) -> IncomingGateway | None:
        """The gateway that forwards `domain`, if any (the snapshot last read when not given)."""
        name = _domain(domain)
        if not name:
            return None
        gateways = self.gateways.snapshot() if gateways is None else gateways
        for gateway in gateways:
            if gateway.domain_verify == VERIFY_LIST and name in gateway.domains:
                return gateway
        for gateway in gateways:
            if gateway.domain_verify == VERIFY_SMARTERMAIL and name in self._primary_domains(gateway):
                return gateway
        return None

    def _primary_domains(self, gateway: IncomingGateway) -> frozenset[str]:
        """The primary's domains: as read last by this process while fresh, else asked again; while
        it cannot be asked, the list last read (by any node: the store keeps it)."""
        key = (gateway.guid, gateway.api_url)
        with self._lock:
            known, next_ask = self._domains.get(key, (frozenset(gateway.primary_domains), 0.0))
            asking = self._asking.setdefault(key, threading.Lock())
        if self.monotonic() < next_ask:
            return known
        # Another thread asking: the list read last answers meanwhile; with none, wait for its answer.
        if not asking.acquire(blocking=not known):
            return known
        try:
            with self._lock:
                known, next_ask = self._domains.get(key, (known, 0.0))
            if self.monotonic() < next_ask:
                return known  # answered while this thread waited
            try:
                fresh = self.api(gateway).domains()
            except PrimaryUnreachable as exc:
                log.warning("incoming gateway %s: the primary's domain list could not be read (%s); "
                            "keeping the %d domains read last", gateway.guid, exc, len(known))
                with self._lock:
                    self._domains[key] = (known, self.monotonic() + RETRY_AFTER)
                return known
            with self._lock:
                self._domains[key] = (fresh, self.monotonic() + DOMAINS_REFRESH)
            if fresh != frozenset(gateway.primary_domains):
                try:
                    self.gateways.record_primary_domains(gateway.guid, fresh)
                except SQLAlchemyError:  # this process still answers with it; the next read writes it again
                    log.exception("incoming gateway %s: could not keep the primary's domain list", gateway.guid)
            return fresh
        finally:
            asking.release()

    def recipient_known(self, gateway: IncomingGateway, address: str) -> bool:
        """False only when the primary said it does not know `address` (cached); True when it knows
        it, when verification is off, or when the primary cannot be asked."""
        if gateway.user_verify != VERIFY_SMARTERMAIL:
            return True
        key = (gateway.guid, gateway.api_url, address.lower())
        now = self.monotonic()
        with self._lock:
            answer = self._answers.get(key)
        if answer is not None and now < answer.expires:
            return bool(answer.value)
        try:
            known = self.api(gateway).knows(address)
        except PrimaryUnreachable as exc:
            log.warning("incoming gateway %s: cannot verify %s (%s); accepting it", gateway.guid, address, exc)
            return True
        with self._lock:
            if len(self._answers) >= CACHE_ENTRIES:
                del self._answers[next(iter(self._answers))]
            self._answers[key] = _Answer(known, now + (KNOWN_TTL if known else UNKNOWN_TTL))
        return known

    def route(self, domain: str) -> Route | None:
        """The primary of the gateway forwarding `domain`, as the only hop (a Router)."""
        gateway = self.gateway_for(domain, self.gateways.current())
        if gateway is None:
            return None
        primary = gateway.primary
        return Route(f"incoming-gateway:{primary}", [Hop(primary.host, primary.port or self.default_port,
                                                         primary.ip)])
