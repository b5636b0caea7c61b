"""svcAliasAdmin: address aliases and the catch-all."""
from __future__ import annotations

from typing import Any

from services.asmx.call import Call

SERVICE = "svcAliasAdmin"


def AddAlias(call: Call, AuthUserName: str | None, AuthPassword: str | None, DomainName: str | None,
             AliasName: str | None, Addresses: list[str | None]) -> None:
    actor = call.server.login(AuthUserName, AuthPassword, call.client_ip)
    call.server.aliases.add(actor, DomainName, AliasName, Addresses)


def UpdateAlias(call: Call, AuthUserName: str | None, AuthPassword: str | None, DomainName: str | None,
                AliasName: str | None, Addresses: list[str | None]) -> None:
    actor = call.server.login(AuthUserName, AuthPassword, call.client_ip)
    call.server.aliases.update(actor, DomainName, AliasName, Addresses)


def DeleteAlias(call: Call, AuthUserName: str | None, AuthPassword: str | None, DomainName: str | None,
                AliasName: str | None) -> None:
    call.server.aliases.delete(call.server.login(AuthUserName, AuthPassword, call.client_ip), DomainName, AliasName)


def GetAlias(call: Call, AuthUserName: str | None, AuthPassword: str | None, DomainName: str | None,
             AliasName: str | None) -> dict[str, Any]:
    alias = call.server.aliases.get(call.server.login(AuthUserName, AuthPassword, call.client_ip),
                                    DomainName, AliasName)
    return {"AliasInfo": {"Name": alias.name, "Addresses": alias.addresses}}


def GetAliases(call: Call, AuthUserName: str | None, AuthPassword: str | None,
               DomainName: str | None) -> dict[str, Any]:
    aliases = call.server.aliases.list(call.server.login(AuthUserName, AuthPassword, call.client_ip), DomainName)
    return {"AliasInfos": [{"Name": a.name, "Addresses": a.addresses} for a in aliases]}


def SetCatchAll(call: Call, AuthUserName: str | None, AuthPassword: str | None, DomainName: str | None,
                AliasName: str | None) -> None:
    actor = call.server.login(AuthUserName, AuthPassword, call.client_ip)
    call.server.aliases.set_catch_all(actor, DomainName, AliasName)
