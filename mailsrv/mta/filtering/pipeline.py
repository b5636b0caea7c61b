"""The filtering pipeline: one `Check` per concern, each with a hook per SMTP stage.

Stages and what a hook answers:
- `connect(client)`: before the greeting (after the IP blacklist); a Reply refuses the connection.
- `mail(client, sender)`: after the relay policy accepted the sender; a Reply refuses MAIL.
- `rcpt(client, sender, recipient, resolution)`: for every RCPT, `resolution` None for an address
  that is not ours to take (the session then gets 550 unless a check answers first, so a check can
  count unknown recipients); a Reply refuses the RCPT (a 4xx defers it: greylisting).
- `data(message, findings)`: the whole message before it is spooled; a Reply refuses it, otherwise
  the check adds what it found to `findings` (an Authentication-Results method result, headers, a
  spam score, the folder to deliver into).

The first Reply wins and later checks of that stage do not run. A check that raises never costs
mail: the pipeline logs it and goes on as if the check had found nothing; a check that wants a
failure to defer (a virus scanner configured so) answers its own 4xx Reply. Hooks run on the event
loop: a check that blocks (DNS, a daemon, the store) does its work in a thread or with asyncio I/O.

`Findings.apply` writes the verdicts into the message: one `Authentication-Results` header (RFC 8601)
naming this server, then the checks' headers, above the message as received, and the subject
prefix; the spool stores the result, so every copy carries them and a signature over the original
headers stays valid (they are added above, never rewritten).
"""
from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mailsrv.mta.policy import Client, Reply

if TYPE_CHECKING:  # the intake imports this module; its types only annotate here
    from mailsrv.mta.intake import Submission
    from mailsrv.mta.recipients import Deliver

log = logging.getLogger(__name__)

INBOX = ""  # Findings.folder for the mailbox's inbox
JUNK = "Junk"


@dataclass
class Findings:
    """What the DATA-stage checks found about one message, in the pipeline's order."""
    auth_results: list[str] = field(default_factory=list)  # RFC 8601 resinfo, e.g. "spf=pass smtp.mailfrom=a@b"
    headers: list[tuple[str, str]] = field(default_factory=list)  # (name, value), added above the message
    spam_score: float = 0.0  # summed over the checks that score (DNS blocklists, SpamAssassin)
    folder: str = INBOX  # where local mailboxes file it: INBOX, or JUNK (quarantine)
    discard: bool = False  # accepted (250) and delivered to nobody: a "delete" action
    subject_prefix: str = ""  # put before the Subject, e.g. "[SPAM] "

    def apply(self, content: bytes, authserv_id: str) -> bytes:
        """`content` with the findings written in (see the module docstring)."""
        if not (self.auth_results or self.headers or self.subject_prefix):
            return content  # nothing found: spare a large message a copy
        lines = []
        if self.auth_results:
            lines.append(_header("Authentication-Results", "; ".join([authserv_id, *self.auth_results])))
        lines += [_header(name, value) for name, value in self.headers]
        if self.subject_prefix:
            content = _prefix_subject(content, self.subject_prefix)
        return b"".join(lines) + content


def _header(name: str, value: str) -> bytes:
    # Folded at the separators so that a long verdict stays within RFC 5322's line length.
    folded = value.replace("; ", ";\r\n\t")
    return f"{name}: {folded}\r\n".encode("utf-8", "surrogateescape")


_SUBJECT = re.compile(rb"^Subject:[ \t]?", re.IGNORECASE | re.MULTILINE)


def _prefix_subject(content: bytes, prefix: str) -> bytes:
    end = content.find(b"\r\n\r\n")
    head, body = (content, b"") if end < 0 else (content[:end + 2], content[end + 2:])
    encoded = prefix.encode("utf-8", "surrogateescape")
    match = _SUBJECT.search(head)
    if match is None:
        return b"Subject: " + encoded.rstrip() + b"\r\n" + head + body
    if head[match.end():].startswith(encoded):  # already marked (a message passing two of our servers)
        return content
    return head[:match.end()] + (b" " if not match.group().endswith((b" ", b"\t")) else b"") + encoded \
        + head[match.end():] + body


class Check:
    """One concern of the pipeline; a subclass overrides the hooks of the stages it acts at."""
    name = "check"

    async def connect(self, client: Client) -> Reply | None:
        return None

    async def mail(self, client: Client, sender: str) -> Reply | None:
        return None

    async def rcpt(self, client: Client, sender: str, recipient: str, resolution: Deliver | None) -> Reply | None:
        return None

    async def data(self, message: Submission, findings: Findings) -> Reply | None:
        return None


class Pipeline:
    """The checks, in order; built once by the wiring (an empty pipeline checks nothing)."""

    def __init__(self, checks: Sequence[Check] = ()) -> None:
        # Per stage, only the checks that act there: every RCPT of every session walks this list,
        # and a check's no-op hook would still cost a coroutine.
        self._acting = {stage: tuple(c for c in checks if getattr(type(c), stage) is not getattr(Check, stage))
                        for stage in ("connect", "mail", "rcpt", "data")}

    async def connect(self, client: Client) -> Reply | None:
        return await self._first_refusal("connect", client)

    async def mail(self, client: Client, sender: str) -> Reply | None:
        return await self._first_refusal("mail", client, sender)

    async def rcpt(self, client: Client, sender: str, recipient: str, resolution: Deliver | None) -> Reply | None:
        return await self._first_refusal("rcpt", client, sender, recipient, resolution)

    async def data(self, message: Submission) -> Reply | Findings:
        findings = Findings()
        return await self._first_refusal("data", message, findings) or findings

    async def _first_refusal(self, stage: str, *args: object) -> Reply | None:
        """Run the stage's hooks in order until one refuses. A hook that raises is logged and
        passed over: a failing check never costs mail."""
        for check in self._acting[stage]:
            try:
                reply = await getattr(check, stage)(*args)
            except Exception:
                log.exception("the %s check failed; going on without it", check.name)
                continue
            if reply is not None:
                return reply  # type: ignore[no-any-return]
        return None
