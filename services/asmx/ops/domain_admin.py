"""svcDomainAdmin: domains, their settings and defaults, statistics, DKIM keys, forwarding blocks."""
from __future__ import annotations

import datetime as dt
from typing import Any

from mailsrv import settings
from services.asmx.call import Call
from services.asmx.ops.common import login, traffic_fields

SERVICE = "svcDomainAdmin"




def _block_fields(block: Any, include_domains: bool = True) -> dict[str, Any]:
    return {"blockID": block.id, "targetAddress": block.target,
            "domains": block.domains if include_domains else None}


def _key_fields(key: Any) -> dict[str, str]:
    return {"privateKey": key.private_key, "publicKey": key.public_key, "selector": key.selector}


def AddDomain(call: Call, AuthUserName: str | None, AuthPassword: str | None, DomainName: str | None,
              Path: str | None, PrimaryDomainAdminUserName: str | None, PrimaryDomainAdminPassword: str | None,
              PrimaryDomainAdminFirstName: str | None, PrimaryDomainAdminLastName: str | None, IP: str | None,
              ImapPort: int, PopPort: int, SmtpPort: int, MaxAliases: int, MaxDomainSizeInMB: int,
              MaxDomainUsers: int, MaxMailboxSizeInMB: int, MaxMessageSize: int, MaxRecipients: int,
              MaxDomainAliases: int, MaxLists: int, ShowDomainAliasMenu: bool, ShowContentFilteringMenu: bool,
              ShowSpamMenu: bool, ShowStatsMenu: bool, RequireSmtpAuthentication: bool, ShowListMenu: bool,
              ListCommandAddress: str | None) -> None:
    fields = {name: value for name, value in locals().items() if name in settings.DOMAIN_FIELDS}
    fields["ServerIP"] = IP
    call.engine.domains.add(login(call, AuthUserName, AuthPassword), DomainName, Path, PrimaryDomainAdminUserName,
                            PrimaryDomainAdminPassword, PrimaryDomainAdminFirstName, PrimaryDomainAdminLastName,
                            settings.settings_from_fields(fields))


def AddDomainEx(call: Call, AuthUserName: str | None, AuthPassword: str | None, DomainName: str | None,
                Path: str | None, PrimaryDomainAdminUserName: str | None, PrimaryDomainAdminPassword: str | None,
                PrimaryDomainAdminFirstName: str | None, PrimaryDomainAdminLastName: str | None,
                IP: str | None) -> None:
    overrides = settings.settings_from_fields({"ServerIP": IP}) if (IP or "").strip() else {}
    call.engine.domains.add(login(call, AuthUserName, AuthPassword), DomainName, Path, PrimaryDomainAdminUserName,
                            PrimaryDomainAdminPassword, PrimaryDomainAdminFirstName, PrimaryDomainAdminLastName,
                            overrides)


def UpdateDomain(call: Call, AuthUserName: str | None, AuthPassword: str | None, DomainName: str | None,
                 ServerIP: str | None, ImapPort: int, PopPort: int, SmtpPort: int, MaxAliases: int,
                 MaxDomainSizeInMB: int, MaxDomainUsers: int, MaxMailboxSizeInMB: int, MaxMessageSize: int,
                 MaxRecipients: int, MaxDomainAliases: int, MaxLists: int, ShowDomainAliasMenu: bool,
                 ShowContentFilteringMenu: bool, ShowSpamMenu: bool, ShowStatsMenu: bool,
                 RequireSmtpAuthentication: bool, ShowListMenu: bool, ListCommandAddress: str | None) -> None:
    fields = {name: value for name, value in locals().items() if name in settings.DOMAIN_FIELDS}
    call.engine.domains.update(login(call, AuthUserName, AuthPassword), DomainName,
                               settings.settings_from_fields(fields), system_only=True)


def DeleteDomain(call: Call, AuthUserName: str | None, AuthPassword: str | None, DomainName: str | None,
                 DeleteFiles: bool) -> None:
    call.engine.domains.delete(login(call, AuthUserName, AuthPassword), DomainName, DeleteFiles)


def RenameDomain(call: Call, AuthUserName: str | None, AuthPassword: str | None, OldDomainName: str | None,
                 NewDomainName: str | None) -> None:
    call.engine.domains.rename(login(call, AuthUserName, AuthPassword), OldDomainName, NewDomainName)


def UpdateDomainNameAndPath(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                            OldDomainName: str | None, NewDomainName: str | None, NewDomainPath: str | None) -> None:
    call.engine.domains.rename(login(call, AuthUserName, AuthPassword), OldDomainName, NewDomainName, NewDomainPath)


def DisableDomain(call: Call, AuthUserName: str | None, AuthPassword: str | None, domainName: str | None) -> None:
    call.engine.domains.set_enabled(login(call, AuthUserName, AuthPassword), domainName, False)


def EnableDomain(call: Call, AuthUserName: str | None, AuthPassword: str | None, domainName: str | None) -> None:
    call.engine.domains.set_enabled(login(call, AuthUserName, AuthPassword), domainName, True)


def GetAllDomains(call: Call, AuthUserName: str | None, AuthPassword: str | None) -> dict[str, Any]:
    return {"DomainNames": call.engine.domains.names(login(call, AuthUserName, AuthPassword))}


def GetDomainSettings(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                      domainName: str | None) -> dict[str, Any]:
    view = call.engine.domains.get(login(call, AuthUserName, AuthPassword), domainName)
    return {**settings.fields_from_settings(view.settings), "Path": view.path}


def GetDomainDefaults(call: Call, AuthUserName: str | None, AuthPassword: str | None) -> dict[str, Any]:
    return settings.fields_from_settings(call.engine.domains.defaults(login(call, AuthUserName, AuthPassword)))


def GetDomainInfo(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                  domainName: str | None) -> dict[str, str]:
    return {"Path": call.engine.domains.get(login(call, AuthUserName, AuthPassword), domainName).path}


def GetDomainUsers(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                   DomainName: str | None) -> dict[str, Any]:
    members = call.engine.domains.members(login(call, AuthUserName, AuthPassword), DomainName)
    return {"Users": members.users, "DomainAliases": members.domain_aliases, "CatchAll": members.has_catch_all}


def GetPrimaryDomainAdmin(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                          DomainName: str | None) -> dict[str, str]:
    return {"PrimaryAdmin": call.engine.domains.primary_admin(login(call, AuthUserName, AuthPassword), DomainName)}


def SetPrimaryDomainAdmin(call: Call, AuthUserName: str | None, AuthPassword: str | None, DomainName: str | None,
                          AdminUserName: str | None) -> None:
    call.engine.domains.set_primary_admin(login(call, AuthUserName, AuthPassword), DomainName, AdminUserName)


def GetRequestedDomainSettings(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                               DomainName: str | None, requestedSettings: list[str | None]) -> dict[str, Any]:
    actor = login(call, AuthUserName, AuthPassword)
    return {"settingValues": call.engine.domains.requested_settings(actor, DomainName, requestedSettings)}


def SetRequestedDomainSettings(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                               DomainName: str | None, newSettings: list[str | None]) -> None:
    call.engine.domains.set_requested_settings(login(call, AuthUserName, AuthPassword), DomainName, newSettings)


def GetRequestedDomainDefaults(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                               requestedSettings: list[str | None]) -> dict[str, Any]:
    actor = login(call, AuthUserName, AuthPassword)
    return {"settingValues": call.engine.domains.requested_defaults(actor, requestedSettings)}


def SetRequestedDomainDefaults(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                               newSettings: list[str | None]) -> None:
    call.engine.domains.set_requested_defaults(login(call, AuthUserName, AuthPassword), newSettings)


def ReloadDomain(call: Call, AuthUserName: str | None, AuthPassword: str | None, DomainName: str | None) -> None:
    call.engine.domains.reload(login(call, AuthUserName, AuthPassword), DomainName)


def GetDomainStatistics(call: Call, AuthUserName: str | None, AuthPassword: str | None, DomainName: str | None,
                        StartDate: dt.datetime, EndDate: dt.datetime) -> dict[str, int]:
    return traffic_fields(call.engine.stats.domain(login(call, AuthUserName, AuthPassword), DomainName,
                                                 StartDate, EndDate))


def GetAllDomainStatistics(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                           StartDate: dt.datetime, EndDate: dt.datetime) -> dict[str, Any]:
    rows = call.engine.stats.all_domains(login(call, AuthUserName, AuthPassword), StartDate, EndDate)
    return {"Stats": [{"DomainName": row.domain, **traffic_fields(row.traffic)} for row in rows]}


def GetDomainCounts(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                    DomainName: str | None) -> dict[str, int]:
    counts = call.engine.stats.counts(login(call, AuthUserName, AuthPassword), DomainName)
    return {"Users": counts.users, "MailingLists": counts.mailing_lists, "Aliases": counts.aliases,
            "Size": counts.size}


def GetAllDomainAliases(call: Call, AuthUserName: str | None, AuthPassword: str | None) -> dict[str, Any]:
    aliases = call.engine.domain_aliases.list_all(login(call, AuthUserName, AuthPassword))
    return {"DomainAliases": [{"Name": a.name, "DomainName": a.domain} for a in aliases]}


def GenerateDomainKeysCert(call: Call, AuthUserName: str | None, AuthPassword: str | None, DomainName: str | None,
                           KeySize: int, selector: str | None) -> dict[str, str]:
    actor = login(call, AuthUserName, AuthPassword)
    return _key_fields(call.engine.dkim_keys.generate(actor, DomainName, KeySize, selector))


def GetDomainKeysCert(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                      DomainName: str | None) -> dict[str, str]:
    return _key_fields(call.engine.dkim_keys.get(login(call, AuthUserName, AuthPassword), DomainName))


def SetDomainArchiveRule(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                         parameters: list[str | None]) -> dict[str, Any]:
    actor = login(call, AuthUserName, AuthPassword)
    return {"settingValues": call.engine.archive_rules.set(actor, parameters)}


def AddDomainForwardingBlock(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                             targetAddress: str | None, domains: list[str | None]) -> None:
    call.engine.forwarding_blocks.add(login(call, AuthUserName, AuthPassword), targetAddress, domains)


def SetDomainForwardingBlock(call: Call, AuthUserName: str | None, AuthPassword: str | None, blockID: int,
                             targetAddress: str | None, domains: list[str | None]) -> None:
    call.engine.forwarding_blocks.set(login(call, AuthUserName, AuthPassword), domains, block_id=blockID,
                                      new_target=targetAddress)


def SetDomainForwardingBlockByTargetAddress(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                                            targetAddress: str | None, domains: list[str | None]) -> None:
    call.engine.forwarding_blocks.set(login(call, AuthUserName, AuthPassword), domains, target=targetAddress)


def DeleteDomainForwardingBlock(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                                blockID: int) -> None:
    call.engine.forwarding_blocks.delete(login(call, AuthUserName, AuthPassword), block_id=blockID)


def DeleteDomainForwardBlockByTargetAddress(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                                            targetAddress: str | None) -> None:
    call.engine.forwarding_blocks.delete(login(call, AuthUserName, AuthPassword), target=targetAddress)


def GetDomainForwarding(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                        includeDomains: bool) -> dict[str, Any]:
    blocks = call.engine.forwarding_blocks.list(login(call, AuthUserName, AuthPassword))
    return {"blocks": [_block_fields(b, includeDomains) for b in blocks]}


def GetDomainForwardingBlock(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                             blockID: int) -> dict[str, Any]:
    block = call.engine.forwarding_blocks.get(login(call, AuthUserName, AuthPassword), block_id=blockID)
    return {"domainForwardBlock": _block_fields(block)}


def GetDomainForwardingBlockByTargetAddress(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                                            targetAddress: str | None) -> dict[str, Any]:
    block = call.engine.forwarding_blocks.get(login(call, AuthUserName, AuthPassword), target=targetAddress)
    return {"domainForwardBlock": _block_fields(block)}
