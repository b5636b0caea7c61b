"""Sessions open now in this process, per protocol: published with the node's heartbeat
(mailsrv.mta.nodes) and summed over the live nodes by RequestStatus (mailsrv.mta.status)."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mailsrv.core import events

SMTP, POP, IMAP = "smtp", "pop", "imap"
# The protocol names of the log and metrics (those of the logins, mailsrv.directory.auth).
_LOGGED = {SMTP: "smtp", POP: "pop3", IMAP: "imap"}


def peer_ip(channel: Any) -> str:
    """The client's IP address of an asyncio transport or stream writer ("" once it is gone)."""
    peer = channel.get_extra_info("peername")
    return str(peer[0]) if peer else ""


class OpenSessions:
    """Also logs each session's connect and disconnect (mailsrv.core.events), and counts them."""

    def __init__(self) -> None:
        self._open: Counter[str] = Counter()

    def opened(self, protocol: str, ip: str = "") -> None:
        self._open[protocol] += 1
        events.emit("connect", protocol=_LOGGED[protocol], ip=ip)

    def closed(self, protocol: str, ip: str = "") -> None:
        self._open[protocol] -= 1
        events.emit("disconnect", protocol=_LOGGED[protocol], ip=ip)

    @contextmanager
    def session(self, protocol: str, ip: str = "") -> Iterator[None]:
        self.opened(protocol, ip)
        try:
            yield
        finally:
            self.closed(protocol, ip)

    def count(self, protocol: str) -> int:
        return self._open[protocol]
