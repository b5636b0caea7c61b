"""The DNS check of a domain: the records the seed's "Proper DNS Settings for Email" asks for (MX,
A or CNAME for mail.<domain>, reverse DNS of the sending addresses, SPF), plus DKIM and DMARC,
each as the exact record to create beside the live answer from DNS and a mark.

Marks: `pass`; `fail` (a record is there but says something else); `missing` (no such record);
`error` (DNS did not answer: a timeout, SERVFAIL — the check says so and never raises).

The comparisons are the small pure functions `*_mark` (tests/unit/test_dns_rules.py); `check_domain`
asks DNS and applies them; `DnsCheck` gathers from the store what the domain should publish (the
caller's rights checked) and runs it. Which addresses are "this server":
- sending (PTR, SPF): the `outboundips` server setting, else `[dns] public_addresses`, else the
  addresses the server's host name (`smtphostname`) has in DNS;
- the webmail interface (mail.<domain>): the domain's ServerIP, else those same addresses.
"""
from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import dns.exception
import dns.resolver
import dns.reversename

from mailsrv.core.actor import Actor
from mailsrv.core.dns import is_local, make_resolver
from mailsrv.directory.domains import domain_for
from mailsrv.directory.system_settings import SystemSettings
from mailsrv.mta import spf_check
from mailsrv.store.db import Store
from mailsrv.store.models import DomainKey

PASS, FAIL, MISSING, ERROR = "pass", "fail", "missing", "error"
DEFAULT_TIMEOUT = 5.0
# The mark of an SPF evaluation (RFC 7208 §2.6) for one of our sending addresses.
_SPF_MARKS = {"pass": PASS, "none": MISSING, "temperror": ERROR}
_DMARC_POLICIES = ("none", "quarantine", "reject")

Mark = tuple[str, str]  # (status, why)


@dataclass(frozen=True)
class RecordCheck:
    """One record: what to publish (`expected`: zone-file lines), what DNS answers (`found`)."""
    kind: str        # MX, A, PTR, SPF, DKIM, DMARC
    label: str       # what the seed calls it, for people
    name: str        # the owner name looked up
    expected: list[str]
    found: list[str]
    status: str      # pass | fail | missing | error
    detail: str


@dataclass(frozen=True)
class DnsReport:
    domain: str
    checks: list[RecordCheck]

    @property
    def passed(self) -> bool:
        return all(check.status == PASS for check in self.checks)

    def as_dict(self) -> dict[str, object]:
        """For JSON and for templates alike: the checks, and how many have each mark."""
        counts = {status: sum(c.status == status for c in self.checks) for status in (PASS, FAIL, MISSING, ERROR)}
        return {"domain": self.domain, "passed": self.passed, "counts": counts,
                "checks": [dataclasses.asdict(check) for check in self.checks]}


@dataclass(frozen=True)
class DomainFacts:
    """What the domain should publish, from the store and the configuration."""
    domain: str                          # ASCII form
    hostname: str                        # the server's host name (smtphostname)
    sending_addresses: list[str] = field(default_factory=list)
    web_addresses: list[str] = field(default_factory=list)
    dkim_selector: str = ""
    dkim_public_key: str = ""            # base64 SubjectPublicKeyInfo: the p= value


@dataclass(frozen=True)
class Answer:
    records: list[str]   # the rdata as text (TXT: the strings joined)
    error: str = ""      # why DNS gave no answer ("" when it answered, even with nothing)
    canonical: str = ""  # the name a CNAME chain led to, when not the name asked


# --- the pure rules --------------------------------------------------------------------------------

def zone_line(name: str, rtype: str, data: str) -> str:
    return f"{name.rstrip('.')}. IN {rtype} {data}"


def txt_data(text: str) -> str:
    """A TXT value in zone-file form: quoted strings of at most 255 characters (RFC 1035 §3.3.14),
    which a 2048-bit DKIM key needs."""
    return " ".join(f'"{text[i:i + 255]}"' for i in range(0, len(text), 255)) or '""'


def tags(text: str) -> dict[str, str]:
    """DKIM/DMARC tag=value lists (RFC 6376 §3.2): names lower-cased, whitespace dropped from values."""
    out = {}
    for part in text.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            out[name.strip().lower()] = "".join(value.split())
    return out


def starts_with_version(text: str, version: str) -> bool:
    head = text.strip().lower()
    return head == version or head.startswith(version + " ") or head.startswith(version + ";")


def mx_mark(exchanges: Mapping[str, Sequence[str]], accepted: Iterable[str], addresses: Iterable[str]) -> Mark:
    """Pass when an MX host is one of `accepted` (mail.<domain>, the server's name) or has one of
    this server's `addresses`. `exchanges`: MX host -> its addresses."""
    if not exchanges:
        return MISSING, "The domain has no MX record: other servers cannot find its mail server."
    names, ours = {n.rstrip(".").lower() for n in accepted}, set(addresses)
    for host, found in exchanges.items():
        if host.rstrip(".").lower() in names or ours & set(found):
            return PASS, f"{host} receives the domain's mail."
    return FAIL, f"No MX host is this server ({', '.join(host or '. (no mail)' for host in exchanges)})."


def address_mark(found: Sequence[str], expected: Sequence[str], local: Callable[[str], bool]) -> Mark:
    """mail.<domain>: pass when it has one of the `expected` addresses (with none known, an address
    of this machine: `local`)."""
    if not found:
        return MISSING, "The name does not resolve to an address."
    if set(found) & set(expected) or (not expected and any(local(a) for a in found)):
        return PASS, "The name points to this server."
    return FAIL, f"The name points to {', '.join(found)}, not to this server ({', '.join(expected) or 'this machine'})."


def ptr_mark(address: str, targets: Mapping[str, Sequence[str]]) -> Mark:
    """Reverse DNS of a sending address: pass when a PTR name leads back to the address
    (forward-confirmed, as receivers check). `targets`: PTR name -> its addresses."""
    if not targets:
        return MISSING, f"{address} has no reverse DNS (PTR) record; its provider sets it."
    for name, found in targets.items():
        if address in found:
            return PASS, f"{address} is {name}, which resolves back to it."
    return FAIL, f"{address} is {', '.join(targets)}, which does not resolve back to {address}."


def spf_records(texts: Iterable[str]) -> list[str]:
    return [text for text in texts if starts_with_version(text, "v=spf1")]


def spf_mark(records: Sequence[str], results: Mapping[str, str]) -> Mark:
    """`results`: each sending address -> pyspf's result for the domain."""
    if not records:
        return MISSING, "The domain publishes no SPF record."
    if len(records) > 1:
        return FAIL, "The domain publishes more than one SPF record (a permanent error to receivers)."
    if not results:
        return ERROR, ("This server's sending addresses are unknown, so the record cannot be evaluated: "
                       "set the outboundips server setting or [dns] public_addresses.")
    marks = {address: _SPF_MARKS.get(result, FAIL) for address, result in results.items()}
    if all(mark == PASS for mark in marks.values()):
        return PASS, f"The SPF record authorises {', '.join(results)}."
    if ERROR in marks.values():
        return ERROR, "DNS did not answer while the SPF record was evaluated."
    refused = [f"{address} ({results[address]})" for address, mark in marks.items() if mark != PASS]
    return FAIL, f"The SPF record does not authorise {', '.join(refused)}."


def dkim_mark(texts: Iterable[str], public_key: str) -> Mark:
    keys = [found for found in map(tags, texts) if "p" in found]
    if not keys:
        return MISSING, "No DKIM key record is published under the selector."
    want = "".join(public_key.split())
    for found in keys:
        if found["p"] == want and found.get("k", "rsa").lower() == "rsa" and found.get("v", "DKIM1") == "DKIM1":
            return PASS, "The published key is the domain's signing key."
    return FAIL, "The published key is not the domain's signing key: receivers will reject its signatures."


def dmarc_mark(texts: Iterable[str]) -> Mark:
    records = [text for text in texts if starts_with_version(text, "v=dmarc1")]
    if not records:
        return MISSING, "The domain publishes no DMARC record."
    if len(records) > 1:
        return FAIL, "The domain publishes more than one DMARC record (receivers ignore them all)."
    policy = tags(records[0]).get("p", "").lower()
    if policy not in _DMARC_POLICIES:
        return FAIL, f"The DMARC record's policy p= must be one of {', '.join(_DMARC_POLICIES)}."
    return PASS, f"The DMARC policy is {policy}."


def spf_expected(addresses: Sequence[str], hostname: str) -> str:
    mechanisms = [f"ip{ipaddress.ip_address(a).version}:{a}" for a in addresses] or [f"a:{hostname}"]
    return " ".join(["v=spf1", "mx", *mechanisms, "~all"])


def first_of(*candidates: Sequence[str]) -> list[str]:
    return next((list(c) for c in candidates if c), [])


# --- asking DNS ------------------------------------------------------------------------------------

def lookup(resolver: dns.resolver.Resolver, name: str, rtype: str, timeout: float) -> Answer:
    try:
        answer = resolver.resolve(name, rtype, lifetime=timeout, search=False)
    except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
        return Answer([])
    except dns.resolver.LifetimeTimeout:
        return Answer([], f"DNS did not answer within {timeout:g} s.")
    except dns.exception.DNSException as exc:
        return Answer([], f"DNS failed: {exc}")
    if rtype == "TXT":
        records = [b"".join(r.strings).decode("utf-8", "replace") for r in answer]
    else:
        records = [r.to_text() for r in answer]
    canonical = answer.canonical_name.to_text().rstrip(".")
    return Answer(records, canonical=canonical if canonical.lower() != name.lower().rstrip(".") else "")


def _addresses(resolver: dns.resolver.Resolver, name: str, timeout: float) -> Answer:
    """A and AAAA of `name` together (a DNS that failed the first is not asked the second: one
    timeout, not two)."""
    v4 = lookup(resolver, name, "A", timeout)
    if v4.error:
        return v4
    v6 = lookup(resolver, name, "AAAA", timeout)
    return Answer(v4.records + v6.records, v6.error, v4.canonical or v6.canonical)


def _host(text: str) -> str:
    return text.rstrip(".").lower()


class _DnsFailed(Exception):
    """DNS gave no answer during a check: the record is marked `error` with this reason."""


Judgement = tuple[list[str], Mark]  # the live records as zone lines, and the mark


class _Checker:
    def __init__(self, facts: DomainFacts, resolver: dns.resolver.Resolver, timeout: float) -> None:
        self.facts, self.resolver, self.timeout = facts, resolver, timeout
        self.domain = facts.domain
        self.mail_host = f"mail.{facts.domain}"

    def _ask(self, name: str, rtype: str) -> list[str]:
        answer = lookup(self.resolver, name, rtype, self.timeout)
        if answer.error:
            raise _DnsFailed(answer.error)
        return answer.records

    def _addresses(self, name: str) -> Answer:
        answer = _addresses(self.resolver, name, self.timeout)
        if answer.error:
            raise _DnsFailed(answer.error)
        return answer

    def _txt(self, name: str) -> tuple[list[str], list[str]]:
        """The TXT values at `name`, and the same as zone lines."""
        values = self._ask(name, "TXT")
        return values, [zone_line(name, "TXT", txt_data(value)) for value in values]

    @staticmethod
    def _record(kind: str, label: str, name: str, expected: list[str], judge: Callable[[], Judgement]) -> RecordCheck:
        try:
            found, (status, detail) = judge()
        except _DnsFailed as exc:
            return RecordCheck(kind, label, name, expected, [], ERROR, str(exc))
        return RecordCheck(kind, label, name, expected, found, status, detail)

    def mx(self) -> RecordCheck:
        def judge() -> Judgement:
            records = self._ask(self.domain, "MX")
            hosts = [_host(record.split()[1]) for record in records]
            # "0 ." (RFC 7505: the domain takes no mail) names no host to resolve.
            exchanges = {host: self._addresses(host).records if host else [] for host in hosts}
            return ([zone_line(self.domain, "MX", r) for r in records],
                    mx_mark(exchanges, [self.mail_host, self.facts.hostname],
                            self.facts.sending_addresses + self.facts.web_addresses))
        return self._record("MX", "Mail pointer (MX)", self.domain,
                            [zone_line(self.domain, "MX", f"10 {self.mail_host}.")], judge)

    def mail_address(self) -> RecordCheck:
        want = self.facts.web_addresses

        def judge() -> Judgement:
            answer = self._addresses(self.mail_host)
            found = [zone_line(self.mail_host, "CNAME", f"{answer.canonical}.")] if answer.canonical else []
            owner = answer.canonical or self.mail_host
            found += [zone_line(owner, _address_type(a), a) for a in answer.records]
            return found, address_mark(answer.records, want, is_local)
        expected = ([zone_line(self.mail_host, _address_type(a), a) for a in want]
                    or [zone_line(self.mail_host, "CNAME", f"{self.facts.hostname}.")])
        return self._record("A", "WebMail URL (A or CNAME)", self.mail_host, expected, judge)

    def ptr(self, address: str) -> RecordCheck:
        name = dns.reversename.from_address(address).to_text().rstrip(".")

        def judge() -> Judgement:
            records = self._ask(name, "PTR")
            targets = {_host(record): self._addresses(_host(record)).records for record in records}
            return [zone_line(name, "PTR", r) for r in records], ptr_mark(address, targets)
        return self._record("PTR", "Reverse DNS (PTR)", name, [zone_line(name, "PTR", f"{self.facts.hostname}.")],
                            judge)

    def ptr_unknown(self) -> RecordCheck:
        return RecordCheck("PTR", "Reverse DNS (PTR)", "", [], [], ERROR,
                           "This server's sending addresses are unknown: set the outboundips server setting "
                           "or [dns] public_addresses.")

    def spf(self) -> RecordCheck:
        def judge() -> Judgement:
            records = spf_records(self._txt(self.domain)[0])
            results = {}
            if len(records) == 1:
                results = {address: spf_check.check(self.resolver, address, f"postmaster@{self.domain}",
                                                    self.facts.hostname, self.timeout)
                           for address in self.facts.sending_addresses}
            return [zone_line(self.domain, "TXT", txt_data(r)) for r in records], spf_mark(records, results)
        record = spf_expected(self.facts.sending_addresses, self.facts.hostname)
        return self._record("SPF", "Sender Policy Framework (SPF)", self.domain,
                            [zone_line(self.domain, "TXT", txt_data(record))], judge)

    def dkim(self) -> RecordCheck:
        name, key = f"{self.facts.dkim_selector}._domainkey.{self.domain}", self.facts.dkim_public_key

        def judge() -> Judgement:
            values, found = self._txt(name)
            return found, dkim_mark(values, key)
        return self._record("DKIM", "DomainKeys Identified Mail (DKIM)", name,
                            [zone_line(name, "TXT", txt_data(f"v=DKIM1; k=rsa; p={key}"))], judge)

    def dmarc(self) -> RecordCheck:
        name = f"_dmarc.{self.domain}"

        def judge() -> Judgement:
            values, found = self._txt(name)
            return found, dmarc_mark(values)
        policy = f"v=DMARC1; p=quarantine; rua=mailto:postmaster@{self.domain}"
        return self._record("DMARC", "DMARC policy", name, [zone_line(name, "TXT", txt_data(policy))], judge)


def _address_type(address: str) -> str:
    return "AAAA" if ":" in address else "A"


def check_domain(facts: DomainFacts, resolver: dns.resolver.Resolver, timeout: float = DEFAULT_TIMEOUT) -> DnsReport:
    """Ask DNS for every record `facts.domain` should publish (blocking; the lookups run side by
    side, so a DNS that does not answer costs about one `timeout`, not one per record)."""
    checker = _Checker(facts, resolver, timeout)
    steps: list[Callable[[], RecordCheck]] = [checker.mx, checker.mail_address]
    steps += [lambda a=a: checker.ptr(a) for a in facts.sending_addresses] or [checker.ptr_unknown]
    steps.append(checker.spf)
    if facts.dkim_public_key:
        steps.append(checker.dkim)
    steps.append(checker.dmarc)
    with ThreadPoolExecutor(max_workers=len(steps)) as pool:
        return DnsReport(facts.domain, list(pool.map(lambda step: step(), steps)))


class DnsCheck:
    """The DNS check as the admin interfaces call it: one domain, the caller's rights checked."""

    def __init__(self, store: Store, system_settings: SystemSettings, nameservers: list[str],
                 public_addresses: list[str]) -> None:
        self.store = store
        self.system_settings = system_settings
        self.nameservers = nameservers
        # In normal form, as DNS answers are compared with them.
        self.public_addresses = [str(ipaddress.ip_address(a)) for a in public_addresses]

    def _facts(self, actor: Actor, raw_domain: str | None, resolver: dns.resolver.Resolver,
               timeout: float) -> DomainFacts:
        with self.store.reading() as s:
            domain = domain_for(s, actor, raw_domain)
            name, server_ip = domain.name, domain.settings.get("serverip", "")
            web = [str(ipaddress.ip_address(server_ip))] if server_ip else []
            key = s.get(DomainKey, domain.id)
            selector, public_key = (key.selector, key.public_key) if key else ("", "")
        values = self.system_settings.values()
        hostname = values["smtphostname"]
        outbound = [a for a in values["outboundips"].split(",") if a]
        sending = first_of(outbound, self.public_addresses)
        if not sending:
            sending = _addresses(resolver, hostname, timeout).records
        return DomainFacts(name, hostname, sending, first_of(web, sending), selector, public_key)

    def check(self, actor: Actor, raw_domain: str | None, timeout: float = DEFAULT_TIMEOUT) -> DnsReport:
        """The report for a domain the actor manages (blocking: run it in a worker thread)."""
        resolver = make_resolver(self.nameservers)
        return check_domain(self._facts(actor, raw_domain, resolver, timeout), resolver, timeout)
