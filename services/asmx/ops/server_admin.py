"""svcServerAdmin: the operations implemented so far (its WSDL in wsdl/ lists exactly these)."""
from __future__ import annotations

from typing import Any

from mailsrv.core.actor import Actor
from services.asmx.access import authenticated
from services.asmx.call import Call

SERVICE = "svcServerAdmin"


@authenticated(quick=True)
def GetEdition(call: Call, actor: Actor) -> dict[str, str]:
    return {"Edition": call.engine.product.edition(actor)}


@authenticated("authUsername", "authPassword")
def ListSystemAdmins(call: Call, actor: Actor) -> dict[str, Any]:
    admins = call.engine.admins.list(actor)
    return {"Admins": [{"ID": a.id, "Username": a.username, "IsPrimaryAdmin": a.is_primary,
                        "RestrictedByIp": a.restricted_by_ip, "DateCreated": a.created_at,
                        "Description": a.description} for a in admins]}


@authenticated("authUsername", "authPassword")
def AddSystemAdmin(call: Call, actor: Actor, newAdminUsername: str | None, newAdminPassword: str | None,
                   newAdminDescription: str | None) -> None:
    call.engine.admins.add(actor, newAdminUsername, newAdminPassword, newAdminDescription)


@authenticated("authUsername", "authPassword")
def SetSystemAdminPassword(call: Call, actor: Actor, systemAdminUsername: str | None,
                           newPassword: str | None) -> None:
    call.engine.admins.set_password(actor, systemAdminUsername, newPassword)


@authenticated("authUsername", "authPassword")
def DeleteSystemAdmin(call: Call, actor: Actor, systemAdminUsername: str | None) -> None:
    call.engine.admins.delete(actor, systemAdminUsername)


@authenticated("authUsername", "authPassword")
def AddIPRestrictionToSystemAdmin(call: Call, actor: Actor, adminUsername: str | None, ipAddressOrRange: str | None,
                                  restrictionDescription: str | None) -> None:
    call.engine.admins.add_ip_restriction(actor, adminUsername, ipAddressOrRange, restrictionDescription)


@authenticated("authUsername", "authPassword")
def RemoveIPRestrictionFromSystemAdmin(call: Call, actor: Actor, adminUsername: str | None,
                                       ipAddressOrRange: str | None) -> None:
    call.engine.admins.remove_ip_restriction(actor, adminUsername, ipAddressOrRange)


@authenticated()
def GetSpoolMessageCount(call: Call, actor: Actor) -> dict[str, int]:
    return {"messageCount": call.engine.spool.message_count(actor)}
