"""Where remote mail goes next: the route of a recipient domain (Postfix's transport maps and
relayhost, as one chain).

The routers are asked in order and the first with an answer decides; a domain none of them claims
goes to its MX hosts (mailsrv.mta.remote_delivery.mx_hosts). The server roles each add a router:
an incoming gateway or backup MX hands the domains it accepts for a primary to that primary only;
with `gatewayenabled`, everything else leaves through the outgoing gateways.

A route names its `destination`: what remote delivery keeps its connection limit and its idle
connections per, and what the queue keeps apart so that one slow or dead destination does not hold
up the others. Two domains sent through one gateway share that gateway's destination.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Hop:
    """One server to try: `host` names it (TLS SNI, logs, DSNs); `address` is dialled when given,
    else the host's A/AAAA addresses; `source` is the local address to connect from (None: the
    system's choice)."""
    host: str
    port: int
    address: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class Route:
    """The hops to try in order, or None for the domain's MX hosts on the delivery port;
    `unreachable` is told of each hop that refused or did not answer (a router's cool-down)."""
    destination: str
    hops: Sequence[Hop] | None = None
    unreachable: Callable[[Hop], None] | None = field(default=None, compare=False)


class Router(Protocol):
    def route(self, domain: str) -> Route | None:
        """The route of `domain` when this router decides it, else None (blocking: may read the store)."""


class Routes:
    def __init__(self, routers: Sequence[Router] = ()) -> None:
        self.routers = list(routers)

    def route(self, domain: str) -> Route:
        """The first router's answer, else the domain's MX hosts (blocking)."""
        for router in self.routers:
            if (route := router.route(domain)) is not None:
                return route
        return Route(domain.lower())
