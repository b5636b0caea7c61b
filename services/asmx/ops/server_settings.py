"""svcServerAdmin: General Settings as key=value strings (settings-keys.md, "Server")."""
from __future__ import annotations

from typing import Any

from mailsrv.core.actor import Actor
from services.asmx.access import authenticated
from services.asmx.call import Call

SERVICE = "svcServerAdmin"


@authenticated()
def GetRequestedSystemSettings(call: Call, actor: Actor, reqSettings: list[str | None]) -> dict[str, Any]:
    return {"KeyValuePairs": call.engine.system_settings.read_requested(actor, reqSettings)}


@authenticated()
def SetRequestedSystemSettings(call: Call, actor: Actor, newSettings: list[str | None]) -> None:
    call.engine.system_settings.set_requested(actor, newSettings)
