"""svcMailListAdmin: mailing lists, their settings and address lists, the domain's list command
address (mailsrv.directory.mailing_lists). `ListName` is the bare name or the list's full address.

SetSubscriberList2 has SetSubscriberList's signature and the contract describes it only as a
"second form of subscriber-list replacement"; neither the contract nor SmarterMail's documentation
names a difference, so both replace the subscribers the same way.

The Set…List operations carry a whole list (a panel saving a 100,000-line text box): their requests
may be up to `[web] max_list_request_bytes` (services.asmx.access, `address_list`).
"""
from __future__ import annotations

from typing import Any

from mailsrv.core.actor import Actor
from mailsrv.store.models import DIGEST, KILLLIST, SUBSCRIBER, WHITELIST
from services.asmx.access import authenticated
from services.asmx.call import Call

SERVICE = "svcMailListAdmin"


@authenticated()
def AddList(call: Call, actor: Actor, DomainName: str | None, ListName: str | None, Moderator: str | None,
            Description: str | None) -> None:
    call.engine.mailing_lists.add(actor, DomainName, ListName, Moderator, Description)


@authenticated()
def DeleteList(call: Call, actor: Actor, DomainName: str | None, ListName: str | None) -> None:
    call.engine.mailing_lists.delete(actor, DomainName, ListName)


@authenticated()
def DeleteAllLists(call: Call, actor: Actor, DomainName: str | None) -> None:
    call.engine.mailing_lists.delete_all(actor, DomainName)


@authenticated()
def GetMailingListsByDomain(call: Call, actor: Actor, DomainName: str | None) -> dict[str, Any]:
    return {"listNames": call.engine.mailing_lists.names(actor, DomainName)}


@authenticated()
def GetRequestedListSettings(call: Call, actor: Actor, DomainName: str | None, ListName: str | None,
                             requestedSettings: list[str]) -> dict[str, Any]:
    return {"settingValues": call.engine.mailing_lists.get_settings(actor, DomainName, ListName,
                                                                    requestedSettings)}


@authenticated()
def SetRequestedListSettings(call: Call, actor: Actor, DomainName: str | None, ListName: str | None,
                             newSettings: list[str]) -> None:
    call.engine.mailing_lists.set_settings(actor, DomainName, ListName, newSettings)


@authenticated()
def GetListCommandAddress(call: Call, actor: Actor, DomainName: str | None) -> dict[str, Any]:
    return {"commandAddress": call.engine.mailing_lists.command_address(actor, DomainName)}


@authenticated()
def SetListCommandAddress(call: Call, actor: Actor, DomainName: str | None, commandAddress: str | None) -> None:
    call.engine.mailing_lists.set_command_address(actor, DomainName, commandAddress)


def _members(call: Call, actor: Actor, domain: str | None, name: str | None, kind: str) -> dict[str, Any]:
    return {"Subscribers": call.engine.mailing_lists.members(actor, domain, name, kind)}


@authenticated()
def GetSubscriberList(call: Call, actor: Actor, DomainName: str | None, ListName: str | None) -> dict[str, Any]:
    return _members(call, actor, DomainName, ListName, SUBSCRIBER)


@authenticated()
def GetDigestSubscriberList(call: Call, actor: Actor, DomainName: str | None,
                            ListName: str | None) -> dict[str, Any]:
    return _members(call, actor, DomainName, ListName, DIGEST)


@authenticated()
def GetPosterWhiteList(call: Call, actor: Actor, DomainName: str | None, ListName: str | None) -> dict[str, Any]:
    return _members(call, actor, DomainName, ListName, WHITELIST)


@authenticated()
def GetPosterKillList(call: Call, actor: Actor, DomainName: str | None, ListName: str | None) -> dict[str, Any]:
    return _members(call, actor, DomainName, ListName, KILLLIST)


@authenticated()
def AddSubscriber(call: Call, actor: Actor, DomainName: str | None, ListName: str | None,
                  Subscriber: str | None) -> None:
    call.engine.mailing_lists.add_members(actor, DomainName, ListName, SUBSCRIBER, [Subscriber])


@authenticated()
def AddSubscriber2(call: Call, actor: Actor, DomainName: str | None, ListName: str | None,
                   Subscribers: list[str]) -> None:
    call.engine.mailing_lists.add_members(actor, DomainName, ListName, SUBSCRIBER, Subscribers)


@authenticated()
def AddDigestSubscriber(call: Call, actor: Actor, DomainName: str | None, ListName: str | None,
                        Subscriber: str | None) -> None:
    call.engine.mailing_lists.add_members(actor, DomainName, ListName, DIGEST, [Subscriber])


@authenticated()
def RemoveSubscriber(call: Call, actor: Actor, DomainName: str | None, ListName: str | None,
                     Subscriber: str | None) -> None:
    call.engine.mailing_lists.remove_member(actor, DomainName, ListName, SUBSCRIBER, Subscriber)


@authenticated()
def RemoveDigestSubscriber(call: Call, actor: Actor, DomainName: str | None, ListName: str | None,
                           Subscriber: str | None) -> None:
    call.engine.mailing_lists.remove_member(actor, DomainName, ListName, DIGEST, Subscriber)


@authenticated(address_list=True)
def SetSubscriberList(call: Call, actor: Actor, DomainName: str | None, ListName: str | None,
                      Subscribers: list[str]) -> None:
    call.engine.mailing_lists.set_members(actor, DomainName, ListName, SUBSCRIBER, Subscribers)


@authenticated(address_list=True)
def SetSubscriberList2(call: Call, actor: Actor, DomainName: str | None, ListName: str | None,
                       Subscribers: list[str]) -> None:
    call.engine.mailing_lists.set_members(actor, DomainName, ListName, SUBSCRIBER, Subscribers)


@authenticated(address_list=True)
def SetDigestSubscriberList(call: Call, actor: Actor, DomainName: str | None, ListName: str | None,
                            Subscribers: list[str]) -> None:
    call.engine.mailing_lists.set_members(actor, DomainName, ListName, DIGEST, Subscribers)


@authenticated(address_list=True)
def SetPosterWhiteList(call: Call, actor: Actor, DomainName: str | None, ListName: str | None,
                       Subscribers: list[str]) -> None:
    call.engine.mailing_lists.set_members(actor, DomainName, ListName, WHITELIST, Subscribers)


@authenticated(address_list=True)
def SetPosterKillList(call: Call, actor: Actor, DomainName: str | None, ListName: str | None,
                      Subscribers: list[str]) -> None:
    call.engine.mailing_lists.set_members(actor, DomainName, ListName, KILLLIST, Subscribers)
