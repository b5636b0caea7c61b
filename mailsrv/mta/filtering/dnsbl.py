"""DNS blocklists (svcSpamAdmin `ListRBLs`, `SetAntispamOptions` key `rbls`): the client's address
looked up in every configured zone at once (RFC 5782: the reversed IPv4 octets or IPv6 nibbles
under the zone; any A record in 127.0.0.0/8 is a listing), each listing adding its zone's weight.

At RCPT, a score at or above `rblrefusescore` (0: never) refuses the recipient with 554 5.7.1
naming the zones; otherwise the score joins the spam decision at DATA (Findings.spam_score), with an
`X-Spam-RBL` header naming the zones. Authenticated, trusted and whitelisted clients are not looked
up. A zone that times out or fails counts as not listing: a broken blocklist must not stop mail.
Scores are kept per address and zone list for a few minutes in this process, so the RCPTs and DATA of one
session (and the sessions of a busy sender) cost one round of queries.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dns.asyncresolver
import dns.exception
import dns.resolver

from mailsrv.mta.filtering.pipeline import Check, Findings
from mailsrv.mta.policy import Client, Reply

if TYPE_CHECKING:  # the intake imports the filters; its types only annotate here
    from mailsrv.mta.intake import Submission
    from mailsrv.mta.recipients import Deliver

log = logging.getLogger(__name__)

_KEEP_SECONDS = 300.0
_KEEP_ADDRESSES = 10_000
_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


@dataclass(frozen=True)
class Listing:
    score: float
    zones: tuple[str, ...]


_UNLISTED = Listing(0.0, ())


def query_name(ip: str, zone: str) -> str:
    """The name to look up for `ip` in `zone`: reversed octets, or reversed nibbles for IPv6."""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv4Address):
        labels = reversed(str(address).split("."))
    else:
        labels = reversed(address.exploded.replace(":", ""))
    return ".".join([*labels, zone])


class DnsblCheck(Check):
    name = "dnsbl"

    def __init__(self, resolver: dns.resolver.Resolver, options: Callable[[], Awaitable[Mapping[str, Any]]]) -> None:
        # The asynchronous resolver on the server's nameservers ([dns] nameservers).
        self.resolver = dns.asyncresolver.Resolver(configure=False)
        self.resolver.nameservers = resolver.nameservers
        self.resolver.nameserver_ports = dict(resolver.nameserver_ports)
        self.options = options  # the antispam options (FilterOptions.antispam)
        self._kept: OrderedDict[tuple[str, tuple[tuple[str, float], ...]], tuple[float, Listing]] = OrderedDict()

    async def listing(self, ip: str, options: Mapping[str, Any] | None = None) -> Listing:
        options = options or await self.options()
        zones: Mapping[str, float] = options["rbls"]
        if not zones:
            return _UNLISTED
        key = (ip, tuple(zones.items()))  # a change of the zones or weights asks again
        kept = self._kept.get(key)
        if kept is not None and time.monotonic() - kept[0] < _KEEP_SECONDS:
            return kept[1]
        timeout = options["rbltimeoutms"] / 1000
        found = await asyncio.gather(*(self._listed(ip, zone, timeout) for zone in zones))
        listed = tuple(zone for zone, hit in zip(zones, found) if hit)
        result = Listing(sum(zones[z] for z in listed), listed)
        if listed:
            log.info("dnsbl: %s listed by %s, score %g", ip, ", ".join(listed), result.score)
        self._kept[key] = (time.monotonic(), result)
        self._kept.move_to_end(key)
        while len(self._kept) > _KEEP_ADDRESSES:
            self._kept.popitem(last=False)
        return result

    async def _listed(self, ip: str, zone: str, timeout: float) -> bool:
        try:
            answer = await self.resolver.resolve(query_name(ip, zone), "A", lifetime=timeout)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return False
        except (dns.exception.DNSException, ValueError) as exc:
            log.info("dnsbl: %s not answered for %s (%s); counted as not listed", zone, ip, exc.__class__.__name__)
            return False
        # RFC 5782 §2.1: listings are 127.0.0.0/8; anything else is a zone answering for its own ends.
        return any(ipaddress.ip_address(r.to_text()) in _LOOPBACK for r in answer)

    async def rcpt(self, client: Client, sender: str, recipient: str, resolution: Deliver | None) -> Reply | None:
        if client.login or client.trusted or client.whitelisted:
            return None
        options = await self.options()
        limit = options["rblrefusescore"]
        if not limit:
            return None
        listing = await self.listing(client.ip, options)
        if listing.zones and listing.score >= limit:
            log.info("dnsbl: refused %s -> %s, score %g", client.ip, recipient, listing.score)
            return Reply(554, "5.7.1", f"{client.ip} is listed by {', '.join(listing.zones)}")
        return None

    async def data(self, message: Submission, findings: Findings) -> Reply | None:
        if not message.filtered:
            return None
        listing = await self.listing(message.client_ip)
        if listing.zones:
            findings.spam_score += listing.score
            findings.headers.append(("X-Spam-RBL", f"{', '.join(listing.zones)} (score {listing.score:g})"))
        return None

