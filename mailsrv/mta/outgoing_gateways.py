"""Outgoing gateways (the seed's Outgoing Gateway and SmartGateway): with the General Setting
`gatewayenabled`, mail for non-local domains leaves through the enabled gateways
(mailsrv.directory.gateways) instead of the recipients' MX hosts; with none enabled, MX as before.

`GatewayRouter` is a router of mailsrv.mta.routing's chain. Its route's hops are every enabled
gateway in the order `gatewaybalance` chooses, so a gateway that does not answer passes the
message to the next within the same attempt:
- RoundRobin: each route starts one further along the list (per message and domain);
- Failover: the order they were added in; the first that answers takes the mail;
- LeastQueued: the shortest spool first — a SmarterMail/mailsrv gateway's own
  GetSpoolMessageCount over its smUrl (cached SPOOL_COUNT_SECONDS, failures too, so a dead URL
  costs one timeout per period), other gateways by our own transactions in flight to them; a
  gateway whose count cannot be read goes after those whose count is known.
A gateway that refuses (connection refused, a 4xx/5xx greeting, no answer within the timeout) is
put at the end of the order for the cool-down (`[delivery] gateway_cooldown_seconds`); it is still
tried last, so mail is only deferred (never bounced) when no gateway answers. A 5xx to one
recipient from a gateway that answered is that recipient's answer, as from any MX.

The route's destination is the first hop's gateway (`gateway:<guid>`): remote delivery keeps
connection limits and idle connections per destination, so each gateway has its own
`max_connections_per_domain` slots and a hung one takes only its own; once it is cooling down it
is no longer first, and new mail goes to the others' slots.

Cool-downs, the rotation and the spool counts are this process's: each node finds a dead gateway
itself with one refused connection. The gateways and the settings are read from the store at
each route (the gateways kept under the directory generation), so a change on any node applies to
the next message everywhere.
"""
from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from mailsrv.core import soap_client
from mailsrv.core.names import ServerAddress
from mailsrv.directory import gateways as gateway_store
from mailsrv.directory.gateways import Gateway, SmLogin
from mailsrv.directory.system_settings import SystemSettings
from mailsrv.mta.routing import Hop, Route
from mailsrv.store.db import Store
from mailsrv.store.models import directory_generation

log = logging.getLogger(__name__)

ROUND_ROBIN, FAILOVER, LEAST_QUEUED = "RoundRobin", "Failover", "LeastQueued"
SPOOL_COUNT_SECONDS = 5.0
SOAP_TIMEOUT_SECONDS = 5.0


def destination(gateway: Gateway) -> str:
    return f"gateway:{gateway.guid}"


class SpoolCounts:
    """The spool length of SmarterMail/mailsrv gateways, read over their svcServerAdmin and cached."""

    def __init__(self, seconds: float = SPOOL_COUNT_SECONDS, timeout: float = SOAP_TIMEOUT_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds, self.timeout, self.clock = seconds, timeout, clock
        self._read: dict[SmLogin, tuple[float, int | None]] = {}
        self._lock = threading.Lock()

    def count(self, login: SmLogin) -> int | None:
        """The gateway's GetSpoolMessageCount, or None when it cannot be read (blocking)."""
        now = self.clock()
        with self._lock:
            cached = self._read.get(login)
        if cached is not None and now - cached[0] < self.seconds:
            return cached[1]
        try:
            reply = soap_client.call(login.url, "svcServerAdmin", "GetSpoolMessageCount",
                                     {"AuthUserName": login.username, "AuthPassword": login.password}, self.timeout)
            if not reply.result:
                raise soap_client.SoapError(f"GetSpoolMessageCount failed: {reply.message}")
            value: int | None = int(reply.fields.get("messageCount", ""))
        except (soap_client.SoapError, ValueError) as exc:
            log.warning("the spool count of gateway %s could not be read: %s", login.url, exc)
            value = None
        with self._lock:
            self._read[login] = (now, value)
        return value


class GatewayRouter:
    """mailsrv.mta.routing.Router for `gatewayenabled` (blocking: reads the store)."""

    def __init__(self, store: Store, settings: SystemSettings, cooldown_seconds: float,
                 in_flight: Callable[[str], int], spool_counts: SpoolCounts | None = None,
                 clock: Callable[[], float] = time.monotonic, default_port: int = 25) -> None:
        self.store = store
        self.default_port = default_port  # a gateway's port when its address names none ([delivery] remote_port)
        self.settings = settings
        self.cooldown_seconds = cooldown_seconds
        self.in_flight = in_flight  # our transactions under way to a destination (RemoteDelivery.in_flight)
        self.spool_counts = spool_counts or SpoolCounts()
        self.clock = clock
        self._turn = itertools.count()
        self._cooling: dict[str, float] = {}  # guid -> monotonic time the cool-down ends
        self._lock = threading.Lock()
        self._generation: int | None = None
        self._gateways: list[Gateway] = []

    def route(self, domain: str) -> Route | None:
        with self.store.read_connection() as conn:
            values = self.settings.read(conn)
            if not values["gatewayenabled"]:
                return None
            generation = directory_generation(conn)
            if generation != self._generation:
                loaded = gateway_store.load(conn)
                with self._lock:
                    self._generation, self._gateways = generation, loaded
            enabled = [g for g in self._gateways if g.enabled]
        if not enabled:
            return None
        ordered = self.order(enabled, values)
        by_hop = {_hop(g, self.default_port): g for g in ordered}
        return Route(destination(ordered[0]), list(by_hop), lambda hop: self.cool_down(by_hop.get(hop)))

    def order(self, gateways: list[Gateway], values: Mapping[str, Any]) -> list[Gateway]:
        """`gateways` (in the order they were added) as this route tries them."""
        now = self.clock()
        with self._lock:
            cooling = {guid: until for guid, until in self._cooling.items() if until > now}
            self._cooling = cooling
        ready = [g for g in gateways if g.guid not in cooling]
        resting = sorted((g for g in gateways if g.guid in cooling), key=lambda g: cooling[g.guid])
        balance = values["gatewaybalance"]
        if balance == ROUND_ROBIN and ready:
            start = next(self._turn) % len(ready)
            ready = ready[start:] + ready[:start]
        elif balance == LEAST_QUEUED:
            ready = sorted(ready, key=self._queued)  # stable: equal lengths keep the added order
        return ready + resting

    def _queued(self, gateway: Gateway) -> float:
        if gateway.sm is None:
            return self.in_flight(destination(gateway))
        count = self.spool_counts.count(gateway.sm)
        return math.inf if count is None else count

    def cool_down(self, gateway: Gateway | None) -> None:
        """`gateway` refused or did not answer: tried last for the cool-down."""
        if gateway is None:
            return
        log.warning("outgoing gateway %s did not answer: skipped for %s s", gateway.address, self.cooldown_seconds)
        with self._lock:
            self._cooling[gateway.guid] = self.clock() + self.cooldown_seconds


def _hop(gateway: Gateway, default_port: int) -> Hop:
    """Dialled at its IP when it is one, else at its host name's addresses; on `default_port` when
    its address names no port."""
    address = ServerAddress(gateway.host, gateway.port)
    return Hop(gateway.host, gateway.port or default_port, address.ip)


class OutboundAddresses:
    """The `outboundips` setting as the source of each outgoing connection, in turn (None: empty)."""

    def __init__(self, settings: SystemSettings) -> None:
        self.settings = settings
        self._turn = itertools.count()

    def __call__(self) -> str | None:
        addresses = [a for a in self.settings.values()["outboundips"].split(",") if a]
        return addresses[next(self._turn) % len(addresses)] if addresses else None
