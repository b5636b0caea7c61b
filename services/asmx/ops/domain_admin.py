"""svcDomainAdmin: domains, their settings and defaults, statistics, DKIM keys, forwarding blocks."""
from __future__ import annotations

import datetime as dt
from typing import Any

from mailsrv.core import settings
from mailsrv.core.actor import Actor
from services.asmx.access import authenticated
from services.asmx.call import Call
from services.asmx.ops.common import traffic_fields

SERVICE = "svcDomainAdmin"




def _block_fields(block: Any, include_domains: bool = True) -> dict[str, Any]:
    return {"blockID": block.id, "targetAddress": block.target,
            "domains": block.domains if include_domains else None}


def _key_fields(key: Any) -> dict[str, str]:
    return {"privateKey": key.private_key, "publicKey": key.public_key, "selector": key.selector}


@authenticated()
def AddDomain(call: Call, actor: Actor, DomainName: str | None, Path: str | None,
              PrimaryDomainAdminUserName: str | None, PrimaryDomainAdminPassword: str | None,
              PrimaryDomainAdminFirstName: str | None, PrimaryDomainAdminLastName: str | None, IP: str | None,
              ImapPort: int, PopPort: int, SmtpPort: int, MaxAliases: int, MaxDomainSizeInMB: int,
              MaxDomainUsers: int, MaxMailboxSizeInMB: int, MaxMessageSize: int, MaxRecipients: int,
              MaxDomainAliases: int, MaxLists: int, ShowDomainAliasMenu: bool, ShowContentFilteringMenu: bool,
              ShowSpamMenu: bool, ShowStatsMenu: bool, RequireSmtpAuthentication: bool, ShowListMenu: bool,
              ListCommandAddress: str | None) -> None:
    fields = {name: value for name, value in locals().items() if name in settings.DOMAIN_FIELDS}
    fields["ServerIP"] = IP
    call.engine.domains.add(actor, DomainName, Path, PrimaryDomainAdminUserName,
                            PrimaryDomainAdminPassword, PrimaryDomainAdminFirstName, PrimaryDomainAdminLastName,
                            settings.settings_from_fields(fields))


@authenticated()
def AddDomainEx(call: Call, actor: Actor, DomainName: str | None, Path: str | None,
                PrimaryDomainAdminUserName: str | None, PrimaryDomainAdminPassword: str | None,
                PrimaryDomainAdminFirstName: str | None, PrimaryDomainAdminLastName: str | None,
                IP: str | None) -> None:
    overrides = settings.settings_from_fields({"ServerIP": IP}) if (IP or "").strip() else {}
    call.engine.domains.add(actor, DomainName, Path, PrimaryDomainAdminUserName,
                            PrimaryDomainAdminPassword, PrimaryDomainAdminFirstName, PrimaryDomainAdminLastName,
                            overrides)


@authenticated()
def UpdateDomain(call: Call, actor: Actor, DomainName: str | None, ServerIP: str | None, ImapPort: int, PopPort: int,
                 SmtpPort: int, MaxAliases: int, MaxDomainSizeInMB: int, MaxDomainUsers: int, MaxMailboxSizeInMB: int,
                 MaxMessageSize: int, MaxRecipients: int, MaxDomainAliases: int, MaxLists: int,
                 ShowDomainAliasMenu: bool, ShowContentFilteringMenu: bool, ShowSpamMenu: bool, ShowStatsMenu: bool,
                 RequireSmtpAuthentication: bool, ShowListMenu: bool, ListCommandAddress: str | None) -> None:
    fields = {name: value for name, value in locals().items() if name in settings.DOMAIN_FIELDS}
    call.engine.domains.update(actor, DomainName, settings.settings_from_fields(fields), system_only=True)


@authenticated()
def DeleteDomain(call: Call, actor: Actor, DomainName: str | None, DeleteFiles: bool) -> None:
    call.engine.domains.delete(actor, DomainName, DeleteFiles)


@authenticated()
def RenameDomain(call: Call, actor: Actor, OldDomainName: str | None, NewDomainName: str | None) -> None:
    call.engine.domains.rename(actor, OldDomainName, NewDomainName)


@authenticated()
def UpdateDomainNameAndPath(call: Call, actor: Actor, OldDomainName: str | None, NewDomainName: str | None,
                            NewDomainPath: str | None) -> None:
    call.engine.domains.rename(actor, OldDomainName, NewDomainName, NewDomainPath)


@authenticated()
def DisableDomain(call: Call, actor: Actor, domainName: str | None) -> None:
    call.engine.domains.set_enabled(actor, domainName, False)


@authenticated()
def EnableDomain(call: Call, actor: Actor, domainName: str | None) -> None:
    call.engine.domains.set_enabled(actor, domainName, True)


@authenticated()
def GetAllDomains(call: Call, actor: Actor) -> dict[str, Any]:
    return {"DomainNames": call.engine.domains.names(actor)}


@authenticated(quick=True)
def GetDomainSettings(call: Call, actor: Actor, domainName: str | None) -> dict[str, Any]:
    view = call.engine.domains.get(actor, domainName)
    return {**settings.fields_from_settings(view.settings), "Path": view.path}


@authenticated()
def GetDomainDefaults(call: Call, actor: Actor) -> dict[str, Any]:
    return settings.fields_from_settings(call.engine.domains.defaults(actor))


@authenticated(quick=True)
def GetDomainInfo(call: Call, actor: Actor, domainName: str | None) -> dict[str, str]:
    return {"Path": call.engine.domains.get(actor, domainName).path}


@authenticated()
def GetDomainUsers(call: Call, actor: Actor, DomainName: str | None) -> dict[str, Any]:
    members = call.engine.domains.members(actor, DomainName)
    return {"Users": members.users, "DomainAliases": members.domain_aliases, "CatchAll": members.has_catch_all}


@authenticated(quick=True)
def GetPrimaryDomainAdmin(call: Call, actor: Actor, DomainName: str | None) -> dict[str, str]:
    return {"PrimaryAdmin": call.engine.domains.primary_admin(actor, DomainName)}


@authenticated()
def SetPrimaryDomainAdmin(call: Call, actor: Actor, DomainName: str | None, AdminUserName: str | None) -> None:
    call.engine.domains.set_primary_admin(actor, DomainName, AdminUserName)


@authenticated(quick=True)
def GetRequestedDomainSettings(call: Call, actor: Actor, DomainName: str | None,
                               requestedSettings: list[str | None]) -> dict[str, Any]:
    return {"settingValues": call.engine.domains.requested_settings(actor, DomainName, requestedSettings)}


@authenticated()
def SetRequestedDomainSettings(call: Call, actor: Actor, DomainName: str | None,
                               newSettings: list[str | None]) -> None:
    call.engine.domains.set_requested_settings(actor, DomainName, newSettings)


@authenticated()
def GetRequestedDomainDefaults(call: Call, actor: Actor, requestedSettings: list[str | None]) -> dict[str, Any]:
    return {"settingValues": call.engine.domains.requested_defaults(actor, requestedSettings)}


@authenticated()
def SetRequestedDomainDefaults(call: Call, actor: Actor, newSettings: list[str | None]) -> None:
    call.engine.domains.set_requested_defaults(actor, newSettings)


@authenticated()
def ReloadDomain(call: Call, actor: Actor, DomainName: str | None) -> None:
    call.engine.domains.reload(actor, DomainName)


@authenticated()
def GetDomainStatistics(call: Call, actor: Actor, DomainName: str | None, StartDate: dt.datetime,
                        EndDate: dt.datetime) -> dict[str, int]:
    return traffic_fields(call.engine.stats.domain(actor, DomainName, StartDate, EndDate))


@authenticated()
def GetAllDomainStatistics(call: Call, actor: Actor, StartDate: dt.datetime, EndDate: dt.datetime) -> dict[str, Any]:
    rows = call.engine.stats.all_domains(actor, StartDate, EndDate)
    return {"Stats": [{"DomainName": row.domain, **traffic_fields(row.traffic)} for row in rows]}


@authenticated()
def GetDomainCounts(call: Call, actor: Actor, DomainName: str | None) -> dict[str, int]:
    counts = call.engine.stats.counts(actor, DomainName)
    return {"Users": counts.users, "MailingLists": counts.mailing_lists, "Aliases": counts.aliases,
            "Size": counts.size}


@authenticated()
def GetAllDomainAliases(call: Call, actor: Actor) -> dict[str, Any]:
    aliases = call.engine.domain_aliases.list_all(actor)
    return {"DomainAliases": [{"Name": a.name, "DomainName": a.domain} for a in aliases]}


@authenticated()
def GenerateDomainKeysCert(call: Call, actor: Actor, DomainName: str | None, KeySize: int,
                           selector: str | None) -> dict[str, str]:
    return _key_fields(call.engine.dkim_keys.generate(actor, DomainName, KeySize, selector))


@authenticated()
def GetDomainKeysCert(call: Call, actor: Actor, DomainName: str | None) -> dict[str, str]:
    return _key_fields(call.engine.dkim_keys.get(actor, DomainName))


def _dkim_fields(key: Any) -> dict[str, str]:
    return {**_key_fields(key), "keyType": key.algorithm, "dnsRecord": key.dns_record}


@authenticated()
def GenerateDKIMCert(call: Call, actor: Actor, DomainName: str | None, KeyType: str | None, KeySize: int,
                     selector: str | None) -> dict[str, str]:
    return _dkim_fields(call.engine.dkim_keys.generate(actor, DomainName, KeySize, selector, KeyType))


@authenticated()
def GetDKIMCert(call: Call, actor: Actor, DomainName: str | None) -> dict[str, str]:
    return _dkim_fields(call.engine.dkim_keys.get(actor, DomainName))


@authenticated()
def SetDomainArchiveRule(call: Call, actor: Actor, parameters: list[str | None]) -> dict[str, Any]:
    return {"settingValues": call.engine.archive_rules.set(actor, parameters)}


@authenticated()
def AddDomainForwardingBlock(call: Call, actor: Actor, targetAddress: str | None, domains: list[str | None]) -> None:
    call.engine.forwarding_blocks.add(actor, targetAddress, domains)


@authenticated()
def SetDomainForwardingBlock(call: Call, actor: Actor, blockID: int, targetAddress: str | None,
                             domains: list[str | None]) -> None:
    call.engine.forwarding_blocks.set(actor, domains, block_id=blockID, new_target=targetAddress)


@authenticated()
def SetDomainForwardingBlockByTargetAddress(call: Call, actor: Actor, targetAddress: str | None,
                                            domains: list[str | None]) -> None:
    call.engine.forwarding_blocks.set(actor, domains, target=targetAddress)


@authenticated()
def DeleteDomainForwardingBlock(call: Call, actor: Actor, blockID: int) -> None:
    call.engine.forwarding_blocks.delete(actor, block_id=blockID)


@authenticated()
def DeleteDomainForwardBlockByTargetAddress(call: Call, actor: Actor, targetAddress: str | None) -> None:
    call.engine.forwarding_blocks.delete(actor, target=targetAddress)


@authenticated()
def GetDomainForwarding(call: Call, actor: Actor, includeDomains: bool) -> dict[str, Any]:
    blocks = call.engine.forwarding_blocks.list(actor)
    return {"blocks": [_block_fields(b, includeDomains) for b in blocks]}


@authenticated()
def GetDomainForwardingBlock(call: Call, actor: Actor, blockID: int) -> dict[str, Any]:
    block = call.engine.forwarding_blocks.get(actor, block_id=blockID)
    return {"domainForwardBlock": _block_fields(block)}


@authenticated()
def GetDomainForwardingBlockByTargetAddress(call: Call, actor: Actor, targetAddress: str | None) -> dict[str, Any]:
    block = call.engine.forwarding_blocks.get(actor, target=targetAddress)
    return {"domainForwardBlock": _block_fields(block)}
