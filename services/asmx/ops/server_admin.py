"""svcServerAdmin: the operations implemented so far (its WSDL in wsdl/ lists exactly these)."""
from __future__ import annotations

from typing import Any

from services.asmx.call import Call

SERVICE = "svcServerAdmin"


def GetEdition(call: Call, AuthUserName: str | None, AuthPassword: str | None) -> dict[str, str]:
    return {"Edition": call.engine.product.edition(call.engine.auth.login(AuthUserName, AuthPassword, call.client_ip))}


def ListSystemAdmins(call: Call, authUsername: str | None, authPassword: str | None) -> dict[str, Any]:
    admins = call.engine.admins.list(call.engine.auth.login(authUsername, authPassword, call.client_ip))
    return {"Admins": [{"ID": a.id, "Username": a.username, "IsPrimaryAdmin": a.is_primary,
                        "RestrictedByIp": a.restricted_by_ip, "DateCreated": a.created_at,
                        "Description": a.description} for a in admins]}


def AddSystemAdmin(call: Call, authUsername: str | None, authPassword: str | None, newAdminUsername: str | None,
                   newAdminPassword: str | None, newAdminDescription: str | None) -> None:
    actor = call.engine.auth.login(authUsername, authPassword, call.client_ip)
    call.engine.admins.add(actor, newAdminUsername, newAdminPassword, newAdminDescription)


def SetSystemAdminPassword(call: Call, authUsername: str | None, authPassword: str | None,
                           systemAdminUsername: str | None, newPassword: str | None) -> None:
    actor = call.engine.auth.login(authUsername, authPassword, call.client_ip)
    call.engine.admins.set_password(actor, systemAdminUsername, newPassword)


def DeleteSystemAdmin(call: Call, authUsername: str | None, authPassword: str | None,
                      systemAdminUsername: str | None) -> None:
    call.engine.admins.delete(call.engine.auth.login(authUsername, authPassword, call.client_ip), systemAdminUsername)


def AddIPRestrictionToSystemAdmin(call: Call, authUsername: str | None, authPassword: str | None,
                                  adminUsername: str | None, ipAddressOrRange: str | None,
                                  restrictionDescription: str | None) -> None:
    actor = call.engine.auth.login(authUsername, authPassword, call.client_ip)
    call.engine.admins.add_ip_restriction(actor, adminUsername, ipAddressOrRange, restrictionDescription)


def RemoveIPRestrictionFromSystemAdmin(call: Call, authUsername: str | None, authPassword: str | None,
                                       adminUsername: str | None, ipAddressOrRange: str | None) -> None:
    actor = call.engine.auth.login(authUsername, authPassword, call.client_ip)
    call.engine.admins.remove_ip_restriction(actor, adminUsername, ipAddressOrRange)


def GetSpoolMessageCount(call: Call, AuthUserName: str | None, AuthPassword: str | None) -> dict[str, int]:
    actor = call.engine.auth.login(AuthUserName, AuthPassword, call.client_ip)
    return {"messageCount": call.engine.spool.message_count(actor)}
