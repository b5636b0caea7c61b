"""svcServerAdmin: the outgoing gateways (mailsrv.directory.gateways; routed by mailsrv.mta.outgoing_gateways)."""
from __future__ import annotations

from typing import Any

from mailsrv.core.actor import Actor
from mailsrv.directory.gateways import Gateway
from services.asmx.access import authenticated
from services.asmx.call import Call

SERVICE = "svcServerAdmin"


def _gateway(g: Gateway) -> dict[str, Any]:
    return {"guid": g.guid, "gatewayAddress": g.address, "enabled": g.enabled, "isSmarterMailServer": g.sm is not None,
            "smUrl": g.sm.url if g.sm else "", "smUserName": g.sm.username if g.sm else "",
            "smPassword": g.sm.password if g.sm else ""}


@authenticated()
def AddGateway(call: Call, actor: Actor, address: str | None, enabled: bool) -> None:
    call.engine.gateways.add(actor, address, enabled)


@authenticated()
def AddSmarterMailGateway(call: Call, actor: Actor, address: str | None, enabled: bool, smUrl: str | None,
                          smUserName: str | None, smPassword: str | None) -> None:
    call.engine.gateways.add(actor, address, enabled, (smUrl, smUserName, smPassword))


@authenticated()
def UpdateGateway(call: Call, actor: Actor, guid: str | None, address: str | None, enabled: bool,
                  isSmarterMailServer: bool, smUrl: str | None, smUserName: str | None, smPassword: str | None) -> None:
    call.engine.gateways.update(actor, guid, address, enabled,
                                (smUrl, smUserName, smPassword) if isSmarterMailServer else None)


@authenticated()
def RemoveGateway(call: Call, actor: Actor, guid: str | None) -> None:
    call.engine.gateways.remove(actor, guid)


@authenticated()
def GetGateway(call: Call, actor: Actor, guid: str | None) -> dict[str, Any]:
    return _gateway(call.engine.gateways.get(actor, guid))


@authenticated()
def ListGateways(call: Call, actor: Actor) -> dict[str, Any]:
    return {"gateways": [_gateway(g) for g in call.engine.gateways.list(actor)]}
