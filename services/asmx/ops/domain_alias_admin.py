"""svcDomainAliasAdmin: alternate names of a domain."""
from __future__ import annotations

from typing import Any

from services.asmx.call import Call

SERVICE = "svcDomainAliasAdmin"


def AddDomainAlias(call: Call, AuthUserName: str | None, AuthPassword: str | None, DomainName: str | None,
                   DomainAliasName: str | None) -> None:
    actor = call.engine.auth.login(AuthUserName, AuthPassword, call.client_ip)
    call.engine.domain_aliases.add(actor, DomainName, DomainAliasName, check_mx=True)


def AddDomainAliasWithoutMxCheck(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                                 DomainName: str | None, DomainAliasName: str | None) -> None:
    actor = call.engine.auth.login(AuthUserName, AuthPassword, call.client_ip)
    call.engine.domain_aliases.add(actor, DomainName, DomainAliasName, check_mx=False)


def DeleteDomainAlias(call: Call, AuthUserName: str | None, AuthPassword: str | None, DomainName: str | None,
                      DomainAliasName: str | None) -> None:
    actor = call.engine.auth.login(AuthUserName, AuthPassword, call.client_ip)
    call.engine.domain_aliases.delete(actor, DomainName, DomainAliasName)


def GetAliases(call: Call, AuthUserName: str | None, AuthPassword: str | None,
               DomainName: str | None) -> dict[str, Any]:
    actor = call.engine.auth.login(AuthUserName, AuthPassword, call.client_ip)
    return {"DomainAliasNames": call.engine.domain_aliases.list(actor, DomainName)}
