"""svcDomainAliasAdmin: alternate names of a domain."""
from __future__ import annotations

from typing import Any

from mailsrv.core.actor import Actor
from services.asmx.access import authenticated
from services.asmx.call import Call

SERVICE = "svcDomainAliasAdmin"


@authenticated()
def AddDomainAlias(call: Call, actor: Actor, DomainName: str | None, DomainAliasName: str | None) -> None:
    call.engine.domain_aliases.add(actor, DomainName, DomainAliasName, check_mx=True)


@authenticated()
def AddDomainAliasWithoutMxCheck(call: Call, actor: Actor, DomainName: str | None,
                                 DomainAliasName: str | None) -> None:
    call.engine.domain_aliases.add(actor, DomainName, DomainAliasName, check_mx=False)


@authenticated()
def DeleteDomainAlias(call: Call, actor: Actor, DomainName: str | None, DomainAliasName: str | None) -> None:
    call.engine.domain_aliases.delete(actor, DomainName, DomainAliasName)


@authenticated()
def GetAliases(call: Call, actor: Actor, DomainName: str | None) -> dict[str, Any]:
    return {"DomainAliasNames": call.engine.domain_aliases.list(actor, DomainName)}
