"""Whether a domain's mail is routed to this machine (AddDomainAlias's MX check), or whoever runs
its DNS has published our token for it (a domain alias's proof of control)."""
from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import math
import socket
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import dns.exception
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver

from mailsrv.core.errors import MailsrvError, ResultCode


def nameserver(entry: str) -> tuple[str, int]:
    """("ip", port) from "ip", "ip:port" or "[ipv6]:port"."""
    if entry.startswith("["):
        host, _, port = entry[1:].partition("]:")
    elif entry.count(":") == 1:
        host, _, port = entry.partition(":")
    else:
        host, port = entry, ""
    return host, int(port or 53)


def make_resolver(nameservers: list[str], cached: bool = False) -> dns.resolver.Resolver:
    """A resolver on the configured nameservers, or the system's when none are configured; `cached`:
    answers are kept for their TTL (the sender checks at acceptance ask the same few names for
    every message of a sender's domain)."""
    if not nameservers:
        resolver = dns.resolver.Resolver()
    else:
        resolver = dns.resolver.Resolver(configure=False)
        servers = [nameserver(entry) for entry in nameservers]
        resolver.nameservers = [host for host, _ in servers]
        resolver.nameserver_ports = dict(servers)
        resolver.lifetime = 5.0
    if cached:
        resolver.cache = dns.resolver.LRUCache(10_000)
    return resolver


class NotCached(Exception):
    """A question `CacheView` cannot answer from the cache: not a DNSException, so that no check
    takes it for a DNS failure (which would be a result of its own)."""


_name = functools.lru_cache(maxsize=4096)(dns.name.from_text)  # a sender domain's names, every message


class CacheView(dns.resolver.Resolver):
    """A cached resolver's answers without any query: what its cache holds (negative answers too,
    under their TTL), and NotCached for anything else, with `missed` set, which stays set even when
    the check that asked swallowed the exception. The sender checks at acceptance run with one on
    the event loop (no thread hop: a sender domain's names are asked for every message), and again
    in a worker thread with the resolver itself when it `missed`. `expires`: when the first of the
    answers it gave expires (time.time(), as the cache's), until which a result worked out from
    them holds (`Memo`)."""

    def __init__(self, resolver: dns.resolver.Resolver) -> None:  # pylint: disable=super-init-not-called
        self.__dict__.update(vars(resolver))  # the same settings and the same cache object
        self.missed = False
        self.expires = math.inf

    def resolve(self, qname: Any, rdtype: Any = dns.rdatatype.A, rdclass: Any = dns.rdataclass.IN,
                tcp: bool = False, source: str | None = None, raise_on_no_answer: bool = True,
                source_port: int = 0, lifetime: float | None = None,
                search: bool | None = None) -> dns.resolver.Answer:
        # The cache walk of Resolver.resolve (dnspython's _Resolution.next_request) for the one name
        # of a query without a search list, as the sender checks ask: the same answers, NoAnswer
        # and NXDOMAIN as the resolver would give from its cache.
        if self.cache is not None and search is False:
            name = _name(qname) if isinstance(qname, str) else qname.derelativize(dns.name.root)
            rdtype, rdclass = dns.rdatatype.RdataType.make(rdtype), dns.rdataclass.RdataClass.make(rdclass)
            answer = self.cache.get((name, rdtype, rdclass))
            if answer is not None:
                self.expires = min(self.expires, answer.expiration)
                if answer.rrset is None and raise_on_no_answer:
                    raise dns.resolver.NoAnswer(response=answer.response)
                return answer
            answer = self.cache.get((name, dns.rdatatype.ANY, rdclass))
            if answer is not None and answer.response.rcode() == dns.rcode.NXDOMAIN:
                self.expires = min(self.expires, answer.expiration)
                raise dns.resolver.NXDOMAIN(qnames=[name], responses={name: answer.response})
        self.missed = True
        raise NotCached(f"{qname} {rdtype}")


T = TypeVar("T")


async def cache_first(resolver: dns.resolver.Resolver, work: Callable[[dns.resolver.Resolver], T]) -> tuple[T, CacheView]:
    """`work(resolver)`: on the event loop with a CacheView of `resolver` when every DNS answer it
    asks for is cached (no thread hop), else again from scratch in a worker thread with the resolver
    itself, where DNS may block. The view tells a Memo whether, and until when, the result holds."""
    view = CacheView(resolver)
    try:
        result = work(view)
    except NotCached:
        pass
    if view.missed:  # also when `work` swallowed the NotCached
        return await asyncio.to_thread(work, resolver), view
    return result, view


K = TypeVar("K")
V = TypeVar("V")


class Memo(Generic[K, V]):
    """Results worked out from a CacheView's answers alone, each kept until the first of those
    answers expires: the same inputs and the same DNS make the same result, without the work."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._results: dict[K, tuple[V, float]] = {}

    def get(self, key: K, default: Any = None) -> Any:
        """The result kept for `key`, `default` when there is none (or it has expired)."""
        found = self._results.get(key)
        return found[0] if found is not None and found[1] > time.time() else default

    def put(self, key: K, value: V, view: CacheView) -> None:
        if view.missed or view.expires <= time.time():
            return
        if len(self._results) >= self._size:  # senders churn: start over rather than track age
            self._results.clear()
        self._results[key] = (value, view.expires)


def is_local(address: str) -> bool:
    # An address this machine can bind to is one of its own: no list of interfaces to keep in sync.
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((address, 0))
        except OSError:
            return False
    return True


def _addresses(resolver: dns.resolver.Resolver, host: str) -> list[str]:
    found = []
    for rdtype in ("A", "AAAA"):
        try:
            found += [r.to_text() for r in resolver.resolve(host, rdtype)]
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            continue
    return found


def mx_points_here(domain: str, nameservers: list[str]) -> None:
    """Refuse unless an MX host of `domain` (or, without MX, the domain itself) is this machine."""
    resolver = make_resolver(nameservers)
    try:
        try:
            hosts = [r.exchange.to_text().rstrip(".") for r in sorted(resolver.resolve(domain, "MX"),
                                                                      key=lambda r: r.preference)]
        except dns.resolver.NoAnswer:
            hosts = [domain]
        checked = {host: _addresses(resolver, host) for host in hosts}
    except dns.resolver.NXDOMAIN:
        raise MailsrvError(ResultCode.DNS_CHECK_FAILED, f"The domain {domain} does not exist in DNS.") from None
    except dns.exception.DNSException as exc:
        raise MailsrvError(ResultCode.DNS_CHECK_FAILED, f"The MX records of {domain} could not be looked up: {exc}.") from None
    if not any(is_local(addr) for addrs in checked.values() for addr in addrs):
        seen = "; ".join(f"{h} -> {', '.join(a) or 'no address'}" for h, a in checked.items())
        raise MailsrvError(ResultCode.DNS_CHECK_FAILED,
                           f"The MX records of {domain} do not point at this server ({seen}).")


VERIFY_LABEL = "_mailsrv-verify"


def verification_token(secret: str, domain: str, alias: str) -> str:
    """The TXT value proving that `alias`'s DNS owner wants it to be an alias of `domain`: bound to
    both names, so a token published for one domain proves nothing for another."""
    digest = hmac.new(secret.encode(), f"{domain}\n{alias}".encode(), hashlib.sha256).hexdigest()
    return f"mailsrv-verify={digest[:32]}"


def _txt_values(resolver: dns.resolver.Resolver, name: str) -> list[bytes]:
    try:
        return [b"".join(r.strings) for r in resolver.resolve(name, "TXT")]
    except dns.exception.DNSException:
        return []


def prove_control(domain: str, alias: str, secret: str, nameservers: list[str]) -> None:
    """Refuse unless `alias`'s MX points here or its `_mailsrv-verify` TXT record carries the token
    for `domain`; the refusal says which record to publish."""
    try:
        mx_points_here(alias, nameservers)
        return
    except MailsrvError as refusal:
        mx_message = refusal.message
    token = verification_token(secret, domain, alias)
    record = f"{VERIFY_LABEL}.{alias}"
    if any(hmac.compare_digest(value, token.encode()) for value in _txt_values(make_resolver(nameservers), record)):
        return
    raise MailsrvError(ResultCode.DNS_CHECK_FAILED,
                       f"{mx_message} To prove control of {alias} otherwise, publish the TXT record {record} "
                       f'with the value "{token}" and try again.')
