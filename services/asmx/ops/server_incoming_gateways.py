"""svcServerAdmin: incoming gateways and backup MX (mailsrv.directory.incoming_gateways)."""
from __future__ import annotations

from typing import Any

from mailsrv.core.actor import Actor
from mailsrv.directory.incoming_gateways import IncomingGateway
from services.asmx.access import authenticated
from services.asmx.call import Call

SERVICE = "svcServerAdmin"


def _attributes(g: IncomingGateway) -> dict[str, Any]:
    return {"guid": g.guid, "gatewayMode": g.mode, "IPAddress": g.address, "IPStartRange": g.range_start,
            "IPEndRange": g.range_end, "userVerifyType": g.user_verify, "webserviceURL": g.webservice_url,
            "domainVerifyType": g.domain_verify, "domainsToForward": list(g.domains),
            "enableSpamActions": g.spam.get("enableSpamActions", False),
            **{name: g.spam.get(name, "") for name in ("spamLowAction", "spamLowArgs", "spamMedAction",
                                                       "spamMedArgs", "spamHighAction", "spamHighArgs")},
            "smarterMailMode": g.smartermail_mode, "smarterMailURL": g.smartermail_url,
            "authSmarterMailUserName": g.api_user, "authSmarterMailPassword": g.api_password}


@authenticated("AuthUserName", "AuthPassword")
def AddIncomingGateway(call: Call, actor: Actor, newIncomingGateway: dict[str, Any] | None) -> None:
    call.engine.incoming_gateways.add(actor, newIncomingGateway)


@authenticated("AuthUserName", "AuthPassword")
def UpdateIncomingGateway(call: Call, actor: Actor, guid: str | None,
                          updatedIncomingGateway: dict[str, Any] | None) -> None:
    call.engine.incoming_gateways.update(actor, guid, updatedIncomingGateway)


@authenticated("AuthUserName", "AuthPassword")
def RemoveIncomingGateway(call: Call, actor: Actor, guid: str | None) -> None:
    call.engine.incoming_gateways.remove(actor, guid)


@authenticated("AuthUserName", "AuthPassword")
def GetIncomingGateway(call: Call, actor: Actor, guid: str | None) -> dict[str, Any]:
    return {"gateway": _attributes(call.engine.incoming_gateways.get(actor, guid))}


@authenticated("AuthUserName", "AuthPassword")
def ListIncomingGateways(call: Call, actor: Actor) -> dict[str, Any]:
    return {"incGateways": [_attributes(g) for g in call.engine.incoming_gateways.list(actor)]}
