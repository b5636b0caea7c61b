"""svcAliasAdmin: address aliases and the catch-all."""
from __future__ import annotations

from typing import Any

from services.asmx.call import Call

SERVICE = "svcAliasAdmin"


def AddAlias(call: Call, AuthUserName: str | None, AuthPassword: str | None, DomainName: str | None,
             AliasName: str | None, Addresses: list[str | None]) -> None:
    actor = call.engine.auth.login(AuthUserName, AuthPassword, call.client_ip)
    call.engine.aliases.add(actor, DomainName, AliasName, Addresses)


def UpdateAlias(call: Call, AuthUserName: str | None, AuthPassword: str | None, DomainName: str | None,
                AliasName: str | None, Addresses: list[str | None]) -> None:
    actor = call.engine.auth.login(AuthUserName, AuthPassword, call.client_ip)
    call.engine.aliases.update(actor, DomainName, AliasName, Addresses)


def DeleteAlias(call: Call, AuthUserName: str | None, AuthPassword: str | None, DomainName: str | None,
                AliasName: str | None) -> None:
    actor = call.engine.auth.login(AuthUserName, AuthPassword, call.client_ip)
    call.engine.aliases.delete(actor, DomainName, AliasName)


def GetAlias(call: Call, AuthUserName: str | None, AuthPassword: str | None, DomainName: str | None,
             AliasName: str | None) -> dict[str, Any]:
    alias = call.engine.aliases.get(call.engine.auth.login(AuthUserName, AuthPassword, call.client_ip),
                                    DomainName, AliasName)
    return {"AliasInfo": {"Name": alias.name, "Addresses": alias.addresses}}


def GetAliases(call: Call, AuthUserName: str | None, AuthPassword: str | None,
               DomainName: str | None) -> dict[str, Any]:
    aliases = call.engine.aliases.list(call.engine.auth.login(AuthUserName, AuthPassword, call.client_ip), DomainName)
    return {"AliasInfos": [{"Name": a.name, "Addresses": a.addresses} for a in aliases]}


def SetCatchAll(call: Call, AuthUserName: str | None, AuthPassword: str | None, DomainName: str | None,
                AliasName: str | None) -> None:
    actor = call.engine.auth.login(AuthUserName, AuthPassword, call.client_ip)
    call.engine.aliases.set_catch_all(actor, DomainName, AliasName)
