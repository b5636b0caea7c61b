"""svcServerAdmin: abuse detection rules and the blocks they set (mailsrv.directory.abuse), and
greylisting filters (mailsrv.directory.greylisting). GetBlockedAddresses and UnblockAddress are
defined by mailsrv (README, "Operations defined by mailsrv").

Time frames and times to block are minutes. The contract adds brute-force and bounce rules only
through the generic AddAbuseDetectionRule (abuseDetectionType BruteForce / Bounces)."""
from __future__ import annotations

from typing import Any

from mailsrv.core.actor import Actor
from mailsrv.directory import abuse
from mailsrv.directory.abuse import Rule
from services.asmx.access import authenticated
from services.asmx.call import Call

SERVICE = "svcServerAdmin"
_CREDENTIALS = ("authUsername", "authPassword")
_KIND_NAMES = {abuse.DOS: "DOS", abuse.HARVESTING: "Harvesting", abuse.BRUTE_FORCE: "BruteForce",
               abuse.BOUNCES: "Bounces", abuse.INTERNAL_SPAMMER: "InternalSpammer"}
_SERVICE_NAMES = {abuse.SMTP: "SMTP", abuse.POP: "POP", abuse.IMAP: "IMAP", abuse.HTTP: "HTTP", abuse.ALL: "All"}
_ACTION_NAMES = {abuse.BLOCK: "Block", abuse.NOTIFY: "Notify", abuse.NOTIFY_AND_BLOCK: "NotifyAndBlock"}


def _minutes(rule: Rule) -> tuple[int, int]:
    return int(rule.window.total_seconds() // 60), int(rule.block.total_seconds() // 60)


def _rules(call: Call, actor: Actor, kind: str | None) -> list[Rule]:
    return call.engine.abuse_rules.listed(actor, kind)


@authenticated(*_CREDENTIALS)
def AddAbuseDetectionRule(call: Call, actor: Actor, abuseDetectionType: str | None, service: str | None,
                          action: str | None, timeFrame: int, occurencesBeforeTrigger: int, timeToBlock: int,
                          emailAddressToNotify: str | None, description: str | None) -> None:
    call.engine.abuse_rules.add(actor, abuseDetectionType, service, action, timeFrame, occurencesBeforeTrigger,
                                timeToBlock, emailAddressToNotify, description)


@authenticated(*_CREDENTIALS)
def AddDOSAbuseDetectionRule(call: Call, actor: Actor, service: str | None, timeframe: int,
                             connectionsBeforeBlock: int, timeToBlock: int, description: str | None) -> None:
    call.engine.abuse_rules.add(actor, abuse.DOS, service, abuse.BLOCK, timeframe, connectionsBeforeBlock,
                                timeToBlock, "", description)


@authenticated(*_CREDENTIALS)
def AddHarvestingAbuseDetectionRule(call: Call, actor: Actor, timeframe: int, badSessionsBeforeBlock: int,
                                    timeToBlock: int, description: str | None) -> None:
    call.engine.abuse_rules.add(actor, abuse.HARVESTING, abuse.SMTP, abuse.BLOCK, timeframe, badSessionsBeforeBlock,
                                timeToBlock, "", description)


@authenticated(*_CREDENTIALS)
def AddInternalSpammerNotificationAbuseDetectionRule(call: Call, actor: Actor, timeframe: int,
                                                     messagesBeforeNotify: int, emailAddressToNotify: str | None,
                                                     description: str | None) -> None:
    call.engine.abuse_rules.add(actor, abuse.INTERNAL_SPAMMER, abuse.SMTP, abuse.NOTIFY, timeframe,
                                messagesBeforeNotify, 0, emailAddressToNotify, description)


@authenticated(*_CREDENTIALS)
def DeleteAbuseDetectionRule(call: Call, actor: Actor, id: str | None) -> None:  # noqa: A002 - the contract's name
    call.engine.abuse_rules.delete(actor, id)


@authenticated(*_CREDENTIALS)
def GetAbuseDetectionRules(call: Call, actor: Actor, filter: str | None) -> dict[str, Any]:  # noqa: A002
    """Every rule; `filter`, when given, keeps the rules of that kind (DOS, Harvesting, …)."""
    kind = None
    if (filter or "").strip():
        kind = abuse.kind_of(filter)
    return {"Rules": [{"UniqueID": r.uid, "Service": _SERVICE_NAMES[r.service], "Action": _ACTION_NAMES[r.action],
                       "TimeFrame": _minutes(r)[0], "OccurencesBeforeTrigger": r.threshold,
                       "TimeToBlock": _minutes(r)[1], "EmailAddressToNotify": r.notify,
                       "Description": f"{_KIND_NAMES[r.kind]}: {r.description}" if r.description
                       else _KIND_NAMES[r.kind]}
                      for r in _rules(call, actor, kind)]}


@authenticated(*_CREDENTIALS)
def GetBouncesAbuseDetectionRules(call: Call, actor: Actor) -> dict[str, Any]:
    return {"Rules": [{"UniqueID": r.uid, "Action": _ACTION_NAMES[r.action], "Timeframe": _minutes(r)[0],
                       "BounceThreshold": r.threshold, "EmailAddressToNotify": r.notify, "Description": r.description}
                      for r in _rules(call, actor, abuse.BOUNCES)]}


@authenticated(*_CREDENTIALS)
def GetBruteForceAbuseDetectionRules(call: Call, actor: Actor) -> dict[str, Any]:
    return {"Rules": [{"UniqueID": r.uid, "Service": _SERVICE_NAMES[r.service], "Timeframe": _minutes(r)[0],
                       "FailuresBeforeBlock": r.threshold, "TimeToBlock": _minutes(r)[1], "Description": r.description}
                      for r in _rules(call, actor, abuse.BRUTE_FORCE)]}


@authenticated(*_CREDENTIALS)
def GetDOSAbuseDetectionRules(call: Call, actor: Actor) -> dict[str, Any]:
    return {"Rules": [{"Service": _SERVICE_NAMES[r.service], "Timeframe": _minutes(r)[0],
                       "ConnectionsBeforeBlock": r.threshold, "TimeToBlock": _minutes(r)[1],
                       "Description": r.description}
                      for r in _rules(call, actor, abuse.DOS)]}


@authenticated(*_CREDENTIALS)
def GetHarvestingAbuseDetectionRules(call: Call, actor: Actor) -> dict[str, Any]:
    return {"Rules": [{"Timeframe": _minutes(r)[0], "BadSessionsBeforeBlock": r.threshold,
                       "TimeToBlock": _minutes(r)[1], "Description": r.description}
                      for r in _rules(call, actor, abuse.HARVESTING)]}


@authenticated(*_CREDENTIALS)
def GetInternalSpammerNotificationAbuseDetectionRules(call: Call, actor: Actor) -> dict[str, Any]:
    return {"Rules": [{"Timeframe": _minutes(r)[0], "MessagesBeforeNotify": r.threshold,
                       "EmailAddressToNotify": r.notify, "Description": r.description}
                      for r in _rules(call, actor, abuse.INTERNAL_SPAMMER)]}


@authenticated(*_CREDENTIALS)
def GetBlockedAddresses(call: Call, actor: Actor) -> dict[str, Any]:
    return {"Addresses": [{"Address": b.address, "Service": _SERVICE_NAMES.get(b.service, b.service),
                           "Kind": _KIND_NAMES.get(b.kind, b.kind), "BlockedAt": b.blocked_at,
                           "BlockedUntil": b.until, "Reason": b.reason}
                          for b in call.engine.abuse_rules.blocked(actor, call.engine.clock.now())]}


@authenticated(*_CREDENTIALS)
def UnblockAddress(call: Call, actor: Actor, address: str | None) -> None:
    call.engine.abuse_rules.unblock(actor, address, call.engine.clock.now())


@authenticated(*_CREDENTIALS)
def AddGreylistingFilter(call: Call, actor: Actor, filterType: str | None, ipRangeStart: str | None,
                         ipRangeEnd: str | None, ipAddress: str | None, description: str | None,
                         countryCode: str | None) -> None:
    call.engine.greylisting.add_filter(actor, filterType, ipRangeStart, ipRangeEnd, ipAddress, description,
                                       countryCode)


@authenticated(*_CREDENTIALS)
def DeleteGreylistingFilter(call: Call, actor: Actor, filterType: str | None, ipRangeStart: str | None,
                            ipRangeEnd: str | None, ipAddress: str | None, countryCode: str | None) -> None:
    call.engine.greylisting.delete_filter(actor, filterType, ipRangeStart, ipRangeEnd, ipAddress, countryCode)


@authenticated(*_CREDENTIALS)
def ListGreylistingFilters(call: Call, actor: Actor) -> dict[str, Any]:
    return {"Filters": [{"Result": True, "ResultCode": 0, "Message": "", "FilterType": f.filter_type,
                         "IPRangeStart": f.range_start, "IPRangeEnd": f.range_end, "IPAddress": f.ip_address,
                         "Description": f.description, "CountryCode": ""}
                        for f in call.engine.greylisting.filters(actor)]}
