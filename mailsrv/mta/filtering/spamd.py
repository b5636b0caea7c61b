"""SpamAssassin scoring over spamd's protocol (SPAMC/1.5 `SYMBOLS`), balanced over the servers of
svcServerAdmin `AddSpamAssassinServer`, and the spam decision: the score (spamd's plus what earlier
checks added, the DNS blocklists) against the low/medium/high thresholds of `SetAntispamOptions`,
each level with its action: `AddHeader` (args: "Name: value"), `PrefixSubject` (args: the prefix),
`MoveToJunk`, `Delete` or `None`. Mail for an incoming gateway's domains follows the gateway's own
actions when it enables them (extensions.md, `enableSpamActions`).

The client is ours, on asyncio streams: the protocol is a request line, a Content-length and the
message, answered by a status line, a `Spam: True ; 7.5 / 5.0` header and the rule names; the
Python spamd clients on PyPI are blocking, unmaintained or pull in a framework for this much.

Servers are taken in turn; one that fails (refused, timed out, answered garbage) is skipped for a
cool-down (`spamassassincooldownseconds`) and the next is tried. When none answers, or the message is
over `spamassassinmaxkb`, the message is accepted unscored (logged, `X-Spam-Status: Unknown`):
spamd trouble never costs mail. With a filter configured, every message gets `X-Spam-Status` and `X-Spam-Score`.
Authenticated senders' and trusted or whitelisted clients' mail is not scored.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mailsrv.directory.content_filters import ContentFilters, SpamAssassinServerInfo
from mailsrv.directory.incoming_gateways import IncomingGateway
from mailsrv.mta.filtering.pipeline import JUNK, Check, Findings
from mailsrv.mta.policy import Reply

if TYPE_CHECKING:  # the intake imports the filters; its types only annotate here
    from mailsrv.mta.intake import Submission

log = logging.getLogger(__name__)

_MAX_ANSWER = 1 << 20  # the answer to SYMBOLS is a status, two headers and a list of rule names


class SpamdError(Exception):
    """spamd could not be reached, timed out, or answered something that is not its protocol."""


@dataclass(frozen=True)
class Score:
    score: float
    required: float
    symbols: tuple[str, ...]


_STATUS = re.compile(rb"^SPAMD/\d+\.\d+ (\d+) (\S+)")
_SPAM = re.compile(rb"^Spam: *(True|False|Yes|No) *; *(-?\d+(?:\.\d+)?) */ *(-?\d+(?:\.\d+)?) *$", re.IGNORECASE)


def parse_answer(answer: bytes) -> Score:
    """spamd's answer to SYMBOLS; SpamdError for anything else."""
    head, sep, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = _STATUS.match(lines[0])
    if not sep or status is None:
        raise SpamdError(f"not a spamd answer: {answer[:60]!r}")
    if status.group(1) != b"0":
        raise SpamdError(f"spamd refused the message: {lines[0][:80]!r}")
    for line in lines[1:]:
        spam = _SPAM.match(line)
        if spam:
            symbols = tuple(s for s in body.decode("ascii", "replace").strip().split(",") if s)
            return Score(float(spam.group(2)), float(spam.group(3)), symbols)
    raise SpamdError("spamd's answer has no Spam header")


async def ask_spamd(host: str, port: int, content: bytes, timeout: float) -> Score:
    """One SYMBOLS request to one spamd."""
    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(b"SYMBOLS SPAMC/1.5\r\nContent-length: %d\r\n\r\n" % len(content) + content)
            await writer.drain()
            writer.write_eof()
            answer = await reader.read(_MAX_ANSWER)
            while chunk := await reader.read(_MAX_ANSWER):
                answer += chunk
                if len(answer) > _MAX_ANSWER:
                    raise SpamdError("spamd's answer is too long")
            return answer
        finally:
            writer.close()
    try:
        return parse_answer(await asyncio.wait_for(exchange(), timeout))
    except (OSError, asyncio.TimeoutError) as exc:
        raise SpamdError(f"{exc.__class__.__name__}: {exc}") from None


LEVELS = ("high", "medium", "low")
_GATEWAY_LEVEL = {"high": "High", "medium": "Med", "low": "Low"}


def level_of(score: float, options: Mapping[str, Any]) -> str | None:
    """The highest level whose threshold (non-zero) the score reaches."""
    for level in LEVELS:
        threshold = options[f"spam{level}score"]
        if threshold and score >= threshold:
            return level
    return None


def take_action(findings: Findings, action: str, args: str) -> None:
    if action == "AddHeader":
        name, sep, value = (args or "X-Spam-Flag: YES").partition(":")
        findings.headers.append((name.strip(), value.strip()) if sep and name.strip() else ("X-Spam-Flag", "YES"))
    elif action == "PrefixSubject":
        findings.subject_prefix = (args or "[SPAM]").strip() + " "
    elif action == "MoveToJunk":
        findings.folder = JUNK
    elif action == "Delete":
        findings.discard = True


class SpamAssassinCheck(Check):
    name = "spamassassin"

    def __init__(self, options: Callable[[], Awaitable[Mapping[str, Any]]], filters: ContentFilters,
                 gateway_for: Callable[[str], IncomingGateway | None] = lambda domain: None) -> None:
        self.options = options  # the antispam options (FilterOptions.antispam)
        self.filters = filters  # the SpamAssassin servers and their counters
        self.gateway_for = gateway_for  # the incoming gateway forwarding a domain (its spam actions)
        self._turn = itertools.count()
        self._resting: dict[str, float] = {}  # server name -> monotonic time its cool-down ends

    async def score(self, content: bytes, options: Mapping[str, Any],
                    servers: Sequence[SpamAssassinServerInfo]) -> Score | None:
        """spamd's score from the first server that answers, in turn; None when none does."""
        now = time.monotonic()
        ready = [s for s in servers if s.enabled and self._resting.get(s.name, 0) <= now]
        if not ready:
            return None
        start = next(self._turn) % len(ready)
        for server in ready[start:] + ready[:start]:
            try:
                result = await ask_spamd(server.address, server.port, content, options["spamassassintimeoutms"] / 1000)
            except SpamdError as exc:
                log.warning("spamassassin: %s (%s:%d) failed: %s; resting it", server.name, server.address,
                            server.port, exc)
                self._resting[server.name] = time.monotonic() + options["spamassassincooldownseconds"]
                await asyncio.to_thread(self.filters.record_scan, server.name, False)
                continue
            self._resting.pop(server.name, None)
            await asyncio.to_thread(self.filters.record_scan, server.name, True)
            return result
        return None

    async def data(self, message: Submission, findings: Findings) -> Reply | None:
        if not message.filtered:
            return None
        options = await self.options()
        servers = await asyncio.to_thread(self.filters.spamassassin_servers) if options["spamassassinenabled"] else []
        if not servers and not options["rbls"]:
            return None  # no spam filtering configured: the message is left as it came
        total = findings.spam_score  # without servers, the DNS blocklists' score alone decides
        scored = None
        if servers and len(message.content) > options["spamassassinmaxkb"] * 1024:
            log.info("spamassassin: %d bytes from %s not scored (over the size limit)", len(message.content),
                     message.client_ip)
        elif servers:
            scored = await self.score(message.content, options, servers)
            if scored is None:
                log.warning("spamassassin: no server answered; message from %s accepted unscored", message.client_ip)
        if scored is not None:
            total += scored.score
        findings.spam_score = total
        level = level_of(total, options)
        if servers and scored is None:
            findings.headers.append(("X-Spam-Status", f"Unknown, score={total:.1f} (not scored by SpamAssassin)"))
        else:
            tests = f" tests={','.join(scored.symbols)}" if scored and scored.symbols else ""
            findings.headers.append(("X-Spam-Status", f"{'Yes' if level else 'No'}, score={total:.1f}"
                                                      f"{f' level={level}' if level else ''}{tests}"))
        findings.headers.append(("X-Spam-Score", f"{total:.1f}"))
        if level is None:
            log.info("spamassassin: message from %s scored %.1f: not spam", message.client_ip, total)
            return None
        action, args = self._action(message, options, level)
        log.info("spamassassin: message from %s scored %.1f (%s): %s", message.client_ip, total, level, action)
        take_action(findings, action, args)
        return None

    def _action(self, message: Submission, options: Mapping[str, Any], level: str) -> tuple[str, str]:
        """The gateway's action when every recipient is an incoming gateway's with spam actions on,
        else the server's."""
        gateways = [self.gateway_for(address.rpartition("@")[2]) if r.domain is None else None
                    for address, r in message.accepted]
        gateway = gateways[0] if gateways else None
        if gateway is not None and all(g is gateway for g in gateways) and gateway.spam.get("enableSpamActions"):
            key = _GATEWAY_LEVEL[level]
            return gateway.spam.get(f"spam{key}Action", "None"), gateway.spam.get(f"spam{key}Args", "")
        return options[f"spam{level}action"], options[f"spam{level}args"]
