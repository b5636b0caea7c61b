"""Sessions open now in this process, per protocol: published with the node's heartbeat
(mailsrv.mta.nodes) and summed over the live nodes by RequestStatus (mailsrv.mta.status)."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

SMTP, POP, IMAP = "smtp", "pop", "imap"


class OpenSessions:
    def __init__(self) -> None:
        self._open: Counter[str] = Counter()

    def opened(self, protocol: str) -> None:
        self._open[protocol] += 1

    def closed(self, protocol: str) -> None:
        self._open[protocol] -= 1

    @contextmanager
    def session(self, protocol: str) -> Iterator[None]:
        self.opened(protocol)
        try:
            yield
        finally:
            self.closed(protocol)

    def count(self, protocol: str) -> int:
        return self._open[protocol]
