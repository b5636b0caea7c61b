"""svcAliasAdmin: address aliases and the catch-all."""
from __future__ import annotations

from typing import Any

from mailsrv.core.actor import Actor
from services.asmx.access import authenticated
from services.asmx.call import Call

SERVICE = "svcAliasAdmin"


@authenticated()
def AddAlias(call: Call, actor: Actor, DomainName: str | None, AliasName: str | None,
             Addresses: list[str | None]) -> None:
    call.engine.aliases.add(actor, DomainName, AliasName, Addresses)


@authenticated()
def UpdateAlias(call: Call, actor: Actor, DomainName: str | None, AliasName: str | None,
                Addresses: list[str | None]) -> None:
    call.engine.aliases.update(actor, DomainName, AliasName, Addresses)


@authenticated()
def DeleteAlias(call: Call, actor: Actor, DomainName: str | None, AliasName: str | None) -> None:
    call.engine.aliases.delete(actor, DomainName, AliasName)


@authenticated()
def GetAlias(call: Call, actor: Actor, DomainName: str | None, AliasName: str | None) -> dict[str, Any]:
    alias = call.engine.aliases.get(actor, DomainName, AliasName)
    return {"AliasInfo": {"Name": alias.name, "Addresses": alias.addresses}}


@authenticated()
def GetAliases(call: Call, actor: Actor, DomainName: str | None) -> dict[str, Any]:
    aliases = call.engine.aliases.list(actor, DomainName)
    return {"AliasInfos": [{"Name": a.name, "Addresses": a.addresses} for a in aliases]}


@authenticated()
def SetCatchAll(call: Call, actor: Actor, DomainName: str | None, AliasName: str | None) -> None:
    call.engine.aliases.set_catch_all(actor, DomainName, AliasName)
