"""svcGlobalUpdate: applying domain settings to every domain (extensions.md), a background job."""
from __future__ import annotations

from mailsrv.core.actor import Actor
from services.asmx.access import authenticated
from services.asmx.call import Call

SERVICE = "svcGlobalUpdate"


@authenticated()
def ListGlobalUpdateFields(call: Call, actor: Actor) -> dict[str, list[str]]:
    return {"KeyValuePairs": call.engine.global_update.fields(actor)}


@authenticated()
def UpdateAllDomainSettings(call: Call, actor: Actor, newSettings: list[str]) -> dict[str, str]:
    return {"Message": call.engine.global_update.start(actor, newSettings)}


@authenticated()
def GetGlobalUpdateStatus(call: Call, actor: Actor) -> dict[str, list[str]]:
    return {"KeyValuePairs": call.engine.global_update.status(actor)}
