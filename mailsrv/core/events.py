"""The server's event log: one line per event, in one vocabulary, and the metrics each event counts.

A call site is one line: `events.emit("auth_failed", protocol="smtp", ip=ip, login=name)`, or with
the message's spool id first for what concerns a message (`events.emit("delivery", message_id,
to=..., status="sent", ...)`). The names and the fields each event carries are listed below; the
formats (Postfix-like text or JSON) are mailsrv.core.logs'. Never pass a password or a secret:
fields are written as given.

Text lines look like Postfix's:
    2026-12-05T12:00:00.123Z mailsrv[4242]: 6f1c...: to=<bob@example.com>, relay=mx.example.com,
        delay=0.31, dsn=2.0.0, status=sent (250 2.0.0 Ok)
    2026-12-05T12:00:01.456Z mailsrv[4242]: auth_failed: protocol=imap, ip=[192.0.2.7], login=<bob@example.com>
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mailsrv.core import metrics

log = logging.getLogger("mailsrv.events")

Fields = dict[str, Any]


@dataclass(frozen=True)
class Event:
    level: int
    # What the event counts in the metrics, from its fields; counted whatever the log level.
    measure: Callable[[Fields], None] | None = None


def _session_opened(fields: Fields) -> None:
    metrics.child(metrics.SESSIONS, fields["protocol"]).inc()
    metrics.child(metrics.SESSIONS_OPEN, fields["protocol"]).inc()


def _delivery(fields: Fields) -> None:
    metrics.child(metrics.DELIVERIES, fields["kind"], fields["status"]).inc()
    if fields["status"] == SENT:
        metrics.child(metrics.DELIVERED_BYTES, fields["kind"]).inc(fields["size"])


def _received(fields: Fields) -> None:
    metrics.child(metrics.RECEIVED, fields["path"]).inc()
    metrics.child(metrics.RECEIVED_BYTES, fields["path"]).inc(fields["size"])


# A delivery's status (Postfix's words).
SENT, DEFERRED, BOUNCED = "sent", "deferred", "bounced"

INFO, WARNING, DEBUG = logging.INFO, logging.WARNING, logging.DEBUG

VOCABULARY: dict[str, Event] = {
    # protocol (smtp, submission, pop3, imap), ip
    "connect": Event(INFO, _session_opened),
    "disconnect": Event(INFO, lambda f: metrics.child(metrics.SESSIONS_OPEN, f["protocol"]).dec()),
    # protocol, ip, version, cipher
    "tls": Event(INFO),
    # protocol (smtp, pop3, imap, webmail, soap), ip, login
    "auth_ok": Event(INFO),
    "auth_failed": Event(WARNING, lambda f: metrics.child(metrics.AUTH_FAILURES, f["protocol"]).inc()),
    # protocol, ip, login: refused without a try, past the brute-force limits (mailsrv.directory.auth)
    "auth_locked": Event(WARNING, lambda f: metrics.child(metrics.BLOCKED, f["protocol"], "lockout").inc()),
    # protocol, ip: on the server's blacklist for that protocol
    "blocked": Event(WARNING, lambda f: metrics.child(metrics.BLOCKED, f["protocol"], "blacklist").inc()),
    # [id] from, size, nrcpt, path (direct: written into the mailboxes at acceptance; spool), ip, login
    "queued": Event(INFO, _received),
    # [id] to, kind (local, remote), relay, delay, dsn, status (sent, deferred, bounced), reply, size
    "delivery": Event(INFO, _delivery),
    # [id] action (hold, release, delete, reset), by
    "spool": Event(INFO),
    # by, ip, service, operation, and the objects it names (domain, user, ...): over SOAP or the web
    "admin": Event(INFO),
    # the same, for an operation that only reads
    "admin_read": Event(DEBUG),
}


def emit(name: str, queue_id: str = "", /, **fields: Any) -> None:
    """Log event `name` (of VOCABULARY) with `fields`, and count it."""
    event = VOCABULARY[name]
    if event.measure is not None:
        event.measure(fields)
    if log.isEnabledFor(event.level):
        log.log(event.level, name, extra={"event": name, "queue_id": queue_id, "fields": fields})


def tls_established(protocol: str, ip: str, ssl_object: Any) -> None:
    """The `tls` event of a connection whose handshake is done (`ssl_object`: its ssl.SSLObject;
    None, not encrypted: nothing)."""
    if ssl_object is not None and is_enabled("tls"):
        cipher = ssl_object.cipher()
        emit("tls", protocol=protocol, ip=ip, version=ssl_object.version(), cipher=cipher[0] if cipher else None)


def is_enabled(name: str) -> bool:
    """Whether `name` is logged at the configured level: a call site that must gather its fields
    first (a query, a loop) asks before."""
    return log.isEnabledFor(VOCABULARY[name].level)
