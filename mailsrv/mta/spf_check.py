"""The sender's SPF check at acceptance, and who may be answered (bounces, auto-replies).

pyspf does the RFC 7208 evaluation; its DNS goes through our own dnspython resolver (the
`[dns] nameservers`), not dnspython's module-level default resolver that pyspf would use. pyspf
looks its lookup function up as the module global `spf.DNSLookup` on every query, so we install
one dispatcher once; it reads the resolver of the check in progress from a ContextVar, so two
servers in one process (tests) or two concurrent checks never see each other's resolver.

The result is recorded on the spool message (SpoolMessage.spf_result). It is only worked out when
a policy needs it (bouncing or auto-responders set to RequireSPF): an SPF check costs DNS round
trips, and under Enabled or Disabled its answer changes nothing.
"""
from __future__ import annotations

import contextvars
from typing import Any

import dns.exception
import dns.resolver
import spf

from mailsrv.directory.system_settings import DISABLED, ENABLED

PASS = "pass"

_resolver: contextvars.ContextVar[dns.resolver.Resolver] = contextvars.ContextVar("spf_resolver")
# RFC 7208 §4.6.4: the whole evaluation should be bounded (pyspf's own default is 20 s).
_QUERY_SECONDS = 20


def _lookup(name: str, qtype: str, strict: Any = True, timeout: float = _QUERY_SECONDS) -> list[tuple[Any, Any]]:
    """pyspf's DNSLookup interface: [((name, qtype), value), …], [] when there is no such data."""
    try:
        answer = _resolver.get().resolve(name, qtype, lifetime=timeout, search=False)
    except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
        return []
    except dns.exception.DNSException as exc:
        raise spf.TempError(f"DNS {exc}") from None
    out: list[tuple[Any, Any]] = []
    for rdata in answer:
        if qtype in ("A", "AAAA"):
            value: Any = rdata.address
        elif qtype == "MX":
            value = (rdata.preference, rdata.exchange.to_text())
        elif qtype == "PTR":
            value = rdata.target.to_text(True)
        elif qtype in ("TXT", "SPF"):
            value = rdata.strings
        else:
            continue
        out.append(((name, qtype), value))
    return out


spf.DNSLookup = _lookup


def check(resolver: dns.resolver.Resolver, ip: str, sender: str, helo: str, seconds: float = _QUERY_SECONDS) -> str:
    """pyspf's result for MAIL FROM `sender` from `ip`: pass, fail, softfail, neutral, none,
    permerror or temperror (blocking: run it in a worker thread); the whole evaluation takes at
    most `seconds`."""
    token = _resolver.set(resolver)
    try:
        result, _ = spf.check2(i=ip, s=sender, h=helo, querytime=seconds)
    finally:
        _resolver.reset(token)
    return str(result)


def may_answer(policy: str, spf_result: str, authenticated: bool) -> bool:
    """Whether a policy (bouncing, autoresponders) lets us write to a message's sender.

    Under RequireSPF an authenticated local sender counts as verified: it proved who it is more
    strongly than SPF can. A message accepted while no policy asked for SPF has no result ("")
    and is not answered under RequireSPF: nothing showed the sender was not forged."""
    if policy == ENABLED:
        return True
    if policy == DISABLED:
        return False
    return authenticated or spf_result == PASS
