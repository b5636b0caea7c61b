"""The one rule for mail that must never be answered automatically, by an auto-reply
(mailsrv.mta.autoreply) or a DSN (mailsrv.mta.bounces): answering automatic mail is how loops start, and
answering list or bulk mail answers people who never wrote (RFC 3834 section 2, RFC 5230
section 4.6, RFC 3464 section 1).

A message is automatic or bulk when:
- its envelope sender is null (`<>`: DSNs, auto-replies);
- its sender is a daemon or list address by name (MAILER-DAEMON, postmaster, noreply, owner-*,
  *-request, *-bounces, …);
- it is a DSN (`Content-Type: multipart/report; report-type=delivery-status`);
- it has `Auto-Submitted` other than `no` (which includes our own replies and DSNs);
- it has `Precedence: bulk`, `junk` or `list`, or `List-Id` or `List-Unsubscribe`.
"""
from __future__ import annotations

import email.utils
from email.message import Message

_DAEMON_NAMES = frozenset({"mailer-daemon", "postmaster", "listserv", "majordomo", "nobody", "noreply",
                           "no-reply", "donotreply", "do-not-reply", "bounce", "bounces"})


def _first_token(value: object) -> str:
    """The first word of a structured header value, e.g. "auto-replied" of "auto-replied; owner=…"."""
    return str(value or "").split(";")[0].strip().lower()


def _daemon_like(sender: str) -> bool:
    local = sender.rpartition("@")[0].lower()
    return local in _DAEMON_NAMES or local.startswith("owner-") or local.endswith(("-request", "-owner", "-bounces"))


def refusal(sender: str, headers: Message) -> str | None:
    """Why a message from envelope sender `sender` with `headers` must not be answered
    automatically; None when it may be."""
    if not sender:
        return "null sender"
    if _daemon_like(sender):
        return "daemon or list sender"
    if headers.get_content_type() == "multipart/report" \
            and email.utils.collapse_rfc2231_value(headers.get_param("report-type", "")).lower() == "delivery-status":
        return "delivery status notification"
    if _first_token(headers.get("Auto-Submitted")) not in ("", "no"):
        return "automatic message"
    if headers.get("List-Id") is not None or headers.get("List-Unsubscribe") is not None:
        return "mailing list"
    if _first_token(headers.get("Precedence")) in ("bulk", "junk", "list"):
        return "bulk mail"
    return None
