"""Who sent it, at acceptance: SPF, DKIM and DMARC (RFC 7489) for every unauthenticated message.

Clients the relay policy trusts (relay networks, SMTP whitelist, authentication bypass) are not
judged, as OpenDKIM's InternalHosts and OpenDMARC's IgnoreHosts are not. One check
(`SenderAuthentication`), because DMARC is the verdict of the other two: the SPF result
(worked out by the intake for every unauthenticated MAIL FROM, or the HELO name for the null sender:
mailsrv.mta.spf_check), each DKIM signature's (mailsrv.mta.filtering.dkim), then whether one of
them passed for a domain aligned with the From header's, under the policy the From domain publishes
at `_dmarc.<domain>` (or its organizational domain's, with `sp=`). All three go into the one
Authentication-Results header; what a failure does is the server's `dmarcaction`
(mailsrv.directory.system_settings): nothing, a mark, Junk, or a 550 for p=reject. `pct` samples
the failing messages the policy applies to; the others get the next milder policy (RFC 7489 §6.6.4).

The organizational domain is taken as the last two labels of a name (no public suffix list):
relaxed alignment of names under a two-label public suffix (example.co.uk) is looser than RFC
7489's. A DMARC record that does not parse is `permerror`, a DNS failure `temperror`: the message
is accepted, never refused or lost over either.
"""
from __future__ import annotations

import email.utils
import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import TYPE_CHECKING

import dns.exception
import dns.resolver

from mailsrv.core.dns import CacheView, Memo, cache_first
from mailsrv.directory.system_settings import (
    DMARC_MARK,
    DMARC_OFF,
    DMARC_QUARANTINE,
    DMARC_REJECT,
    SmtpSettings,
)
from mailsrv.mta.filtering import dkim
from mailsrv.mta.filtering.pipeline import JUNK, Check, Findings
from mailsrv.mta.policy import Reply

if TYPE_CHECKING:
    from mailsrv.mta.intake import Submission

log = logging.getLogger(__name__)

NONE, QUARANTINE, REJECT = "none", "quarantine", "reject"
_POLICIES = (NONE, QUARANTINE, REJECT)
_MILDER = {REJECT: QUARANTINE, QUARANTINE: NONE, NONE: NONE}
_UNKNOWN = object()


class DmarcTempError(Exception):
    """The record could not be looked up (a DNS failure): try again later."""


class DmarcPermError(Exception):
    """The published record does not parse."""


@dataclass(frozen=True)
class Record:
    policy: str  # p=, or sp= for a subdomain found through its organizational domain's record
    pct: int = 100
    strict_dkim: bool = False  # adkim=s
    strict_spf: bool = False  # aspf=s


@dataclass(frozen=True)
class Verdict:
    result: str  # pass, fail, none, permerror, temperror
    from_domain: str = ""
    policy: str = ""  # the published policy ("" when there is none)
    disposition: str = NONE  # what the policy asks for this message, after pct
    reason: str = ""

    def resinfo(self) -> str:
        if self.result in ("pass", "fail"):
            return f"dmarc={self.result} (p={self.policy} dis={self.disposition}) header.from={self.from_domain}"
        reason = f" ({self.reason})" if self.reason else ""
        return f"dmarc={self.result}{reason}" + (f" header.from={self.from_domain}" if self.from_domain else "")


def organizational(domain: str) -> str:
    return ".".join(domain.split(".")[-2:])


def aligned(a: str, b: str, strict: bool) -> bool:
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    return a == b if strict else organizational(a) == organizational(b)


def parse_record(text: str, subdomain: bool) -> Record:
    """A `v=DMARC1` record's policy for the From domain (`subdomain`: found at its organizational
    domain, so `sp=` applies when given)."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            tags.setdefault(name.strip().lower(), value.strip())
    policy = tags.get("p", "").lower()
    if policy not in _POLICIES:
        raise DmarcPermError(f"p={tags.get('p', '')!r} is not a policy")
    if subdomain and tags.get("sp", "").lower() in _POLICIES:
        policy = tags["sp"].lower()
    pct = tags.get("pct", "100")
    if not (pct.isascii() and pct.isdigit() and 0 <= int(pct) <= 100):
        raise DmarcPermError(f"pct={pct!r} is not 0-100")
    modes = {name: tags.get(name, "r").lower() for name in ("adkim", "aspf")}
    if any(mode not in ("r", "s") for mode in modes.values()):
        raise DmarcPermError("adkim/aspf must be r or s")
    return Record(policy, int(pct), modes["adkim"] == "s", modes["aspf"] == "s")


def _dmarc_texts(resolver: dns.resolver.Resolver, domain: str) -> list[str]:
    try:
        answer = resolver.resolve(f"_dmarc.{domain}", "TXT", search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except (dns.exception.DNSException, ValueError) as exc:  # ValueError: a name too long or empty label
        raise DmarcTempError(type(exc).__name__) from None
    texts = [b"".join(r.strings).decode("utf-8", "replace") for r in answer]
    return [t for t in texts if t.replace(" ", "").upper().startswith("V=DMARC1")]


def lookup(resolver: dns.resolver.Resolver, domain: str) -> Record | None:
    """The policy for mail From `domain`, None when neither it nor its organizational domain publishes one."""
    for name, subdomain in [(domain, False)] + ([(organizational(domain), True)]
                                               if organizational(domain) != domain else []):
        texts = _dmarc_texts(resolver, name)
        if len(texts) == 1:
            return parse_record(texts[0], subdomain)
        if texts:  # several records: RFC 7489 §6.6.3, as if none
            return None
    return None


_FIELD = re.compile(rb"[\041-\071\073-\176]+:")  # a field name and its colon, as email.feedparser's headerRE


def _plain_from_values(head: bytes) -> list[str] | None:
    """The values of the From fields in `head` (a header block, each line ending CRLF) as
    email.parser's compat32 parse gives them, for a plain block: ASCII, CRLF line ends only, each
    line a field or the continuation of one (no mbox "From " line). None for any other: the parser
    itself decides, with its rules for the malformed."""
    if not head.isascii() or not head.count(b"\r") == head.count(b"\n") == head.count(b"\r\n"):
        return None
    fields: list[list[bytes]] = []
    for line in head.split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t"):
            if not fields:
                return None
            fields[-1].append(line)
        elif _FIELD.match(line) and not line.startswith(b"From "):
            fields.append([line])
        else:
            return None
    values = []
    for first, *more in fields:
        name, _, value = first.partition(b":")
        if name.lower() == b"from":  # compat32's header_source_parse
            values.append(b"\r\n".join([value.lstrip(b" \t"), *more]).rstrip(b"\r\n").decode("ascii"))
    return values


def from_domain(content: bytes) -> str | None:
    """The one domain of the From header, None when there is none or several."""
    end = content.find(b"\r\n\r\n")
    values = _plain_from_values(content[:end + 2]) if end >= 0 else None
    if values is None:  # spare the common header the parser, which costs more than the rest of DMARC
        header = BytesHeaderParser(policy=compat32).parsebytes(content if end < 0 else content[:end + 2])
        values = [str(v) for v in header.get_all("From", [])]
    addresses = email.utils.getaddresses(values)
    domains = {address.rpartition("@")[2].lower().rstrip(".") for _, address in addresses if "@" in address}
    return domains.pop() if len(domains) == 1 else None


def evaluate(policy: Callable[[str], Record | None], content: bytes, spf_result: str, spf_domain: str,
             dkim_results: list[dkim.DkimResult], sample: float) -> Verdict:
    """The DMARC verdict, with `policy` the From domain's published policy (`lookup`; blocking: DNS).
    `sample` in [0, 1) decides `pct`."""
    domain = from_domain(content)
    if not domain:
        return Verdict("permerror", reason="no single From domain")
    try:
        record = policy(domain)
    except DmarcTempError as exc:
        return Verdict("temperror", domain, reason=f"DNS {exc}")
    except DmarcPermError as exc:
        return Verdict("permerror", domain, reason=dkim.comment(str(exc)))
    if record is None:
        return Verdict("none", domain)
    spf_ok = spf_result == "pass" and aligned(spf_domain, domain, record.strict_spf)
    dkim_ok = any(r.result == "pass" and aligned(r.domain, domain, record.strict_dkim) for r in dkim_results)
    if spf_ok or dkim_ok:
        return Verdict("pass", domain, record.policy)
    disposition = record.policy if sample * 100 < record.pct else _MILDER[record.policy]
    return Verdict("fail", domain, record.policy, disposition)


def _pvalue(text: str) -> str:
    return "".join(ch for ch in text if ch.isprintable() and ch not in " ;()\\\"") or "unknown"


class SenderAuthentication(Check):
    """SPF, DKIM and DMARC of an unauthenticated message, under the server's settings."""
    name = "sender-authentication"

    def __init__(self, resolver: dns.resolver.Resolver, settings: Callable[[], SmtpSettings],
                 sample: Callable[[], float] = random.random) -> None:
        self.resolver = resolver
        self.settings = settings
        self.sample = sample
        self._policies: Memo[str, Record | None] = Memo()  # From domain -> its published policy

    async def data(self, message: Submission, findings: Findings) -> Reply | None:
        if message.actor is not None or message.trusted:  # our own user, our own network: not judged
            return None
        settings = self.settings()
        if not (settings.spf_check or settings.dkim_verify or settings.dmarc_action != DMARC_OFF):
            return None
        sample = self.sample() if settings.dmarc_action != DMARC_OFF else 0.0
        # On the loop when every DNS answer it needs is cached: a sender domain's mail after its first.
        (results, verdict), _ = await cache_first(
            self.resolver, lambda resolver: self._authenticate(resolver, message, settings, sample))
        findings.auth_results += results
        # The verdicts are the message's Authentication-Results header: a line a message of its own,
        # beside the event log's (mailsrv.core.events), only when debugging.
        log.debug("sender authentication of %s from %s: %s", message.sender or "<>", message.client_ip,
                  "; ".join(results) or "not checked")
        if verdict is None or verdict.result != "fail" or verdict.disposition == NONE:
            return None
        action = settings.dmarc_action
        if action == DMARC_MARK:
            findings.headers.append(("X-DMARC", f"fail; policy={verdict.policy}; disposition={verdict.disposition}"))
        elif action == DMARC_REJECT and verdict.disposition == REJECT:
            return Reply(550, "5.7.1", f"Message refused: the DMARC policy of {verdict.from_domain} rejects "
                                       "mail that does not authenticate as it")
        elif action in (DMARC_QUARANTINE, DMARC_REJECT):
            findings.folder = JUNK
        return None

    def _authenticate(self, resolver: dns.resolver.Resolver, message: Submission, settings: SmtpSettings,
                      sample: float) -> tuple[list[str], Verdict | None]:
        """The Authentication-Results method results (SPF, DKIM, DMARC) and the DMARC verdict, None
        when DMARC is off (blocking: DNS, unless `resolver` is a CacheView)."""
        results = []
        if message.spf_result:
            identity = f"smtp.mailfrom={_pvalue(message.sender)}" if message.sender else f"smtp.helo={_pvalue(message.helo)}"
            results.append(f"spf={message.spf_result} {identity}")
        dkim_results = dkim.verify(resolver, message.content) if settings.dkim_verify else []
        results += [r.resinfo() for r in dkim_results]
        if settings.dmarc_action == DMARC_OFF:
            return results, None
        spf_domain = (message.sender.rpartition("@")[2] if message.sender else message.helo).lower()

        def policy(domain: str) -> Record | None:
            found = self._policies.get(domain, _UNKNOWN)
            if found is _UNKNOWN:
                found = lookup(resolver, domain)
                if isinstance(resolver, CacheView):
                    self._policies.put(domain, found, resolver)
            return found  # type: ignore[no-any-return]
        verdict = evaluate(policy, message.content, message.spf_result, spf_domain, dkim_results, sample)
        return [*results, verdict.resinfo()], verdict
