"""DKIM (RFC 6376, with Ed25519 from RFC 8463): signing our users' mail, verifying everyone else's.

Signing happens once, at acceptance, after the filters (Intake.submit: `Signer.sign` on the bytes
the spool is about to store), for mail of an authenticated sender of one of our domains whose
`enabledomainkeys` or `enablemailsigning` is on. Why there and not at delivery: the spool holds the
signed bytes, so every copy, retry and node delivers the same signature, and a key rotated while the
message waits changes nothing (the old selector's record must stay published until the queue has
drained); why after the filters: a header or subject prefix they write is then signed over, never
left to break the signature. relaxed/relaxed, the header fields dkimpy recommends, From oversigned.

Verification (`verify`) is of every signature of a message, through the server's resolver: one
result per signature (pass, fail, neutral, policy, permerror, temperror), `none` for an unsigned
message. A DNS failure is `temperror`, a malformed signature or key `permerror`: never an exception.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dkim
import dns.exception
import dns.resolver

from mailsrv.directory.dkim_keys import SigningKey

log = logging.getLogger(__name__)

_HEADERS_END = b"\r\n\r\n"


@dataclass(frozen=True)
class DkimResult:
    result: str  # RFC 8601: pass, fail, neutral, permerror, temperror, none
    domain: str = ""  # the signature's d=
    selector: str = ""  # its s=
    algorithm: str = ""  # its a=
    reason: str = ""

    def resinfo(self) -> str:
        if self.result == "none":
            return "dkim=none"
        reason = f" ({self.reason})" if self.reason else ""
        return f"dkim={self.result}{reason} header.d={self.domain} header.s={self.selector} header.a={self.algorithm}"


class Signer:
    """Adds a DKIM-Signature of the first of the message's domains that signs (mailsrv.directory.dkim_keys)."""

    def __init__(self, keys: Callable[[str], SigningKey | None]) -> None:
        self.keys = keys

    async def sign(self, content: bytes, domains: Sequence[str]) -> bytes:
        return await asyncio.to_thread(self.sign_now, content, domains)

    def sign_now(self, content: bytes, domains: Sequence[str]) -> bytes:
        for name in dict.fromkeys(d.lower() for d in domains if d):
            key = self.keys(name)
            if key is None:
                continue
            try:
                signature = dkim.sign(content, key.selector.encode(), key.domain.encode(), key.private_key,
                                      canonicalize=(b"relaxed", b"relaxed"),
                                      signature_algorithm=key.signature_algorithm)
            except dkim.DKIMException as exc:  # a message dkimpy cannot parse goes out unsigned, not lost
                log.warning("DKIM signing for %s failed: %s", key.domain, exc)
                return content
            log.info("DKIM signed d=%s s=%s a=%s", key.domain, key.selector, key.signature_algorithm.decode())
            return signature + content
        return content


def _signature_count(content: bytes) -> int:
    end = content.find(_HEADERS_END)
    head = content if end < 0 else content[:end + 2]
    return sum(1 for line in head.split(b"\r\n") if line[:15].lower() == b"dkim-signature:")


def _tag(signature_fields: dict[bytes, bytes], name: bytes) -> str:
    return signature_fields.get(name, b"").decode("ascii", "replace").strip()


def verify(resolver: dns.resolver.Resolver, content: bytes) -> list[DkimResult]:
    """Every signature's result, top first (blocking: DNS; run it in a worker thread)."""
    count = _signature_count(content)
    if not count:
        return [DkimResult("none")]
    return [_verify_one(resolver, content, index) for index in range(count)]


def _verify_one(resolver: dns.resolver.Resolver, content: bytes, index: int) -> DkimResult:
    trouble: list[str] = []  # what went wrong in DNS: dkimpy turns it into a plain False

    def txt(name: bytes, timeout: float = 5) -> bytes | None:
        try:
            answer = resolver.resolve(name.decode("ascii"), "TXT", lifetime=timeout, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            trouble.append("no key")
            return None
        except (dns.exception.DNSException, UnicodeDecodeError) as exc:
            trouble.append(f"DNS {type(exc).__name__}")
            raise dkim.DnsTimeoutError(str(exc)) from None
        record = b"".join(answer[0].strings)
        try:
            dkim.evaluate_pk(name, record)  # dkimpy's own parse, which it would turn into a plain False
        except Exception:
            trouble.append("key record does not parse")
        return record

    verifier = None
    try:
        verifier = dkim.DKIM(content, logger=_QUIET)
        ok = verifier.verify(idx=index, dnsfunc=txt)
    except Exception as exc:  # dkimpy's DKIMException, and what a hostile signature makes its parsers raise
        fields = verifier.signature_fields if verifier is not None else {}
        if str(exc).startswith("body hash mismatch"):  # a well-formed signature over another body
            return DkimResult("fail", _tag(fields, b"d"), _tag(fields, b"s"), _tag(fields, b"a"), "body hash mismatch")
        return DkimResult("permerror", _tag(fields, b"d"), _tag(fields, b"s"), _tag(fields, b"a"),
                          comment(str(exc)))
    fields = verifier.signature_fields or {}
    d, s, a = _tag(fields, b"d"), _tag(fields, b"s"), _tag(fields, b"a")
    if ok:
        return DkimResult("pass", d, s, a)
    if trouble and trouble[0].startswith("DNS"):
        return DkimResult("temperror", d, s, a, trouble[0])
    if trouble:
        return DkimResult("permerror", d, s, a, "no key for signature" if trouble[0] == "no key" else trouble[0])
    return DkimResult("fail", d, s, a, "signature verification failed")


def comment(text: str) -> str:
    # A comment of the Authentication-Results header: no parentheses, short, printable.
    cleaned = "".join(ch for ch in text if ch.isprintable() and ch not in "()\\")
    return cleaned[:80]


class _Quiet(logging.Logger):
    """dkimpy logs every bad signature it meets at ERROR: the verdict is ours to log, once."""

    def __init__(self) -> None:
        super().__init__("dkimpy", logging.CRITICAL + 1)


_QUIET = _Quiet()
