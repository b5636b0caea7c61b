"""Translations shared by several services' handlers (this module serves no service itself)."""
from __future__ import annotations

from mailsrv.auth import Actor
from mailsrv.stats import Traffic
from services.asmx.call import Call


def login(call: Call, user: str | None, password: str | None) -> Actor:
    return call.engine.auth.login(user, password, call.client_ip)


def traffic_fields(t: Traffic) -> dict[str, int]:
    """The counters of StatInfoResult and DomainStatInfo."""
    return {"MessagesReceived": t.messages_received, "MessagesSent": t.messages_sent,
            "BytesReceived": t.bytes_received, "BytesSent": t.bytes_sent, "BytesSize": t.bytes_size}
