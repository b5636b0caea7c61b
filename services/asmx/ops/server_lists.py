"""svcServerAdmin: the server's address lists — IP whitelist and blacklist, SMTP authentication bypass,
SMTP blocked senders, global trusted senders, forwarding blacklist, reserved domain names
(mailsrv.directory.address_lists). Add/Delete/GetReservedDomainNames and DeleteSMTPBlockedSender
are defined by mailsrv (docs/address-lists.md): the contract names the first only, without a signature.
"""
from __future__ import annotations

from typing import Any

from mailsrv.core.actor import Actor
from mailsrv.directory import address_lists as lists
from mailsrv.directory.address_lists import IpEntryView
from services.asmx.access import authenticated
from services.asmx.call import Call

SERVICE = "svcServerAdmin"
_CREDENTIALS = ("authUsername", "authPassword")


def _ip_entries(entries: list[IpEntryView], flag: str | None = None) -> dict[str, Any]:
    def item(e: IpEntryView) -> dict[str, Any]:
        fields: dict[str, Any] = {"IPAddress": e.ip_address, "IPRangeStart": e.range_start,
                                  "IPRangeEnd": e.range_end, "Description": e.description}
        if flag:
            fields.update({f"POP{flag}": e.pop, f"IMAP{flag}": e.imap, f"SMTP{flag}": e.smtp})
        return fields
    return {"Entries": [item(e) for e in entries]}


@authenticated(*_CREDENTIALS)
def SetWhitelistEntry(call: Call, actor: Actor, ipAddress: str | None, ipRangeStart: str | None,
                      ipRangeEnd: str | None, whitelistSMTP: bool, whitelistPOP: bool, whitelistIMAP: bool,
                      description: str | None) -> None:
    call.engine.address_lists.set_ip_entry(actor, lists.WHITELIST, ipAddress, ipRangeStart, ipRangeEnd,
                                           {lists.SMTP: whitelistSMTP, lists.POP: whitelistPOP,
                                            lists.IMAP: whitelistIMAP}, description)


@authenticated(*_CREDENTIALS)
def SetWhitelistEntry2(call: Call, actor: Actor, ipAddress: str | None, ipRangeStart: str | None,
                       ipRangeEnd: str | None, whitelistSMTP: bool, whitelistPOP: bool, whitelistIMAP: bool,
                       whitelistXMPP: bool, disableGreylisting: bool, description: str | None) -> None:
    call.engine.address_lists.set_ip_entry(actor, lists.WHITELIST, ipAddress, ipRangeStart, ipRangeEnd,
                                           {lists.SMTP: whitelistSMTP, lists.POP: whitelistPOP,
                                            lists.IMAP: whitelistIMAP}, description,
                                           xmpp=whitelistXMPP, disable_greylisting=disableGreylisting)


@authenticated(*_CREDENTIALS)
def GetWhitelistEntries(call: Call, actor: Actor) -> dict[str, Any]:
    return _ip_entries(call.engine.address_lists.ip_entries(actor, lists.WHITELIST), "Whitelisted")


@authenticated(*_CREDENTIALS)
def SetBlacklistEntry(call: Call, actor: Actor, ipAddress: str | None, ipRangeStart: str | None,
                      ipRangeEnd: str | None, blacklistSMTP: bool, blacklistPOP: bool, blacklistIMAP: bool,
                      description: str | None) -> None:
    call.engine.address_lists.set_ip_entry(actor, lists.BLACKLIST, ipAddress, ipRangeStart, ipRangeEnd,
                                           {lists.SMTP: blacklistSMTP, lists.POP: blacklistPOP,
                                            lists.IMAP: blacklistIMAP}, description)


@authenticated(*_CREDENTIALS)
def GetBlacklistEntries(call: Call, actor: Actor) -> dict[str, Any]:
    return _ip_entries(call.engine.address_lists.ip_entries(actor, lists.BLACKLIST), "Blacklisted")


@authenticated(*_CREDENTIALS)
def AddSmtpAuthenticationBypass(call: Call, actor: Actor, ipAddress: str | None, ipRangeStart: str | None,
                                ipRangeEnd: str | None, description: str | None) -> None:
    call.engine.address_lists.add_bypass(actor, ipAddress, ipRangeStart, ipRangeEnd, description)


@authenticated(*_CREDENTIALS)
def DeleteSmtpAuthenticationBypass(call: Call, actor: Actor, ipAddress: str | None, ipRangeStart: str | None,
                                   ipRangeEnd: str | None) -> None:
    call.engine.address_lists.delete_bypass(actor, ipAddress, ipRangeStart, ipRangeEnd)


@authenticated(*_CREDENTIALS)
def GetSmtpAuthenticationBypasses(call: Call, actor: Actor) -> dict[str, Any]:
    return _ip_entries(call.engine.address_lists.ip_entries(actor, lists.SMTP_BYPASS))


@authenticated(*_CREDENTIALS)
def AddSMTPBlockedSender(call: Call, actor: Actor, blockedSender: str | None, description: str | None) -> None:
    call.engine.address_lists.add_name(actor, lists.BLOCKED_SENDERS, blockedSender, description)


@authenticated(*_CREDENTIALS)
def GetSMTPBlockedSenders(call: Call, actor: Actor) -> dict[str, Any]:
    entries = call.engine.address_lists.name_entries(actor, lists.BLOCKED_SENDERS)
    return {"SMTPBlockedSenders": [{"BlockedSender": e.name, "Description": e.description} for e in entries]}


@authenticated(*_CREDENTIALS)
def AddGlobalTrustedSender(call: Call, actor: Actor, addressOrDomain: str | None) -> None:
    call.engine.address_lists.add_name(actor, lists.TRUSTED_SENDERS, addressOrDomain)


@authenticated(*_CREDENTIALS)
def DeleteGlobalTrustedSender(call: Call, actor: Actor, addressOrDomain: str | None) -> None:
    call.engine.address_lists.delete_name(actor, lists.TRUSTED_SENDERS, addressOrDomain)


@authenticated(*_CREDENTIALS)
def GetGlobalTrustedSenders(call: Call, actor: Actor) -> dict[str, Any]:
    entries = call.engine.address_lists.name_entries(actor, lists.TRUSTED_SENDERS)
    return {"TrustedSenders": [e.name for e in entries]}


@authenticated(*_CREDENTIALS)
def AddForwardingBlacklistEntry(call: Call, actor: Actor, domainName: str | None) -> None:
    call.engine.address_lists.add_name(actor, lists.FORWARDING_BLACKLIST, domainName)


@authenticated(*_CREDENTIALS)
def DeleteForwardingBlacklistEntry(call: Call, actor: Actor, domainName: str | None) -> None:
    call.engine.address_lists.delete_name(actor, lists.FORWARDING_BLACKLIST, domainName)


@authenticated(*_CREDENTIALS)
def ListForwardingBlacklistEntries(call: Call, actor: Actor) -> dict[str, Any]:
    entries = call.engine.address_lists.name_entries(actor, lists.FORWARDING_BLACKLIST)
    return {"BlacklistedDomains": [e.name for e in entries]}


@authenticated(*_CREDENTIALS)
def DeleteSMTPBlockedSender(call: Call, actor: Actor, blockedSender: str | None) -> None:
    call.engine.address_lists.delete_name(actor, lists.BLOCKED_SENDERS, blockedSender)


@authenticated(*_CREDENTIALS)
def AddReservedDomainNames(call: Call, actor: Actor, domainNames: list[str]) -> None:
    call.engine.address_lists.add_names(actor, lists.RESERVED_DOMAINS, domainNames)


@authenticated(*_CREDENTIALS)
def DeleteReservedDomainNames(call: Call, actor: Actor, domainNames: list[str]) -> None:
    call.engine.address_lists.delete_names(actor, lists.RESERVED_DOMAINS, domainNames)


@authenticated(*_CREDENTIALS)
def GetReservedDomainNames(call: Call, actor: Actor) -> dict[str, Any]:
    return {"DomainNames": [e.name for e in call.engine.address_lists.name_entries(actor, lists.RESERVED_DOMAINS)]}
