"""Translations shared by several services' handlers (this module serves no service itself)."""
from __future__ import annotations

from mailsrv.directory.stats import Traffic


def traffic_fields(t: Traffic) -> dict[str, int]:
    """The counters of StatInfoResult and DomainStatInfo."""
    return {"MessagesReceived": t.messages_received, "MessagesSent": t.messages_sent,
            "BytesReceived": t.bytes_received, "BytesSent": t.bytes_sent, "BytesSize": t.bytes_size}
