"""svcServerAdmin: the SpamAssassin servers the spam filter balances over
(mailsrv.directory.content_filters, mailsrv.mta.filtering.spamd)."""
from __future__ import annotations

from typing import Any

from mailsrv.core.actor import Actor
from services.asmx.access import authenticated
from services.asmx.call import Call

SERVICE = "svcServerAdmin"


@authenticated("authUsername", "authPassword")
def AddSpamAssassinServer(call: Call, actor: Actor, serverName: str | None, ipAddress: str | None,
                          serverPort: int) -> None:
    call.engine.content_filters.add_spamassassin(actor, serverName, ipAddress, serverPort)


@authenticated("authUsername", "authPassword")
def DeleteSpamAssassinServer(call: Call, actor: Actor, serverName: str | None) -> None:
    call.engine.content_filters.delete_spamassassin(actor, serverName)


@authenticated("authUsername", "authPassword")
def ListSpamAssassinServers(call: Call, actor: Actor) -> dict[str, Any]:
    return {"Servers": [{"Name": s.name, "IPAddress": s.address, "Port": s.port,
                         "ConsecutiveFailures": s.consecutive_failures, "Enabled": s.enabled,
                         "TotalConnections": s.total_connections}
                        for s in call.engine.content_filters.list_spamassassin(actor)]}
