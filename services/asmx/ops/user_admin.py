"""svcUserAdmin: mailbox users, forwarding, auto-responders, groups, RSS feeds, ActiveSync,
quotas, statistics, login history and mailbox migrations."""
from __future__ import annotations

import datetime as dt
from typing import Any

from mailsrv.core.actor import Actor
from mailsrv.directory.user_activity import LastLogin
from mailsrv.directory.user_groups import GroupView
from mailsrv.directory.users import UserView
from services.asmx.access import anonymous, authenticated
from services.asmx.call import Call
from services.asmx.ops.common import traffic_fields
from services.asmx.values import format_value

SERVICE = "svcUserAdmin"
# GetUserForwardingInfo's single string lists several addresses like this (UpdateUserForwardingInfo
# reads `,` and `;`).
FORWARD_SEPARATOR = ", "



def _user_info(user: UserView) -> dict[str, Any]:
    # Password stays out: only an argon2 hash is stored.
    return {"UserName": user.name, "Password": None, "FirstName": user.first_name, "LastName": user.last_name,
            "IsSystemAdmin": False, "IsDomainAdmin": user.is_domain_admin}


def _group_info(group: GroupView, include_members: bool = True) -> dict[str, Any]:
    return {"guid": group.id, "name": group.name, "userNames": group.members if include_members else None}


def _userlogin(entry: LastLogin) -> dict[str, Any]:
    return {"UserName": entry.address, "LoginTime": entry.at}


# Accounts

@authenticated()
def AddUser(call: Call, actor: Actor, NewUsername: str | None, NewPassword: str | None, DomainName: str | None,
            FirstName: str | None, LastName: str | None, IsDomainAdmin: bool) -> None:
    call.engine.users.add(actor, NewUsername, NewPassword, DomainName, FirstName, LastName, IsDomainAdmin)


@authenticated()
def AddUser2(call: Call, actor: Actor, NewUsername: str | None, NewPassword: str | None, DomainName: str | None,
             FirstName: str | None, LastName: str | None, IsDomainAdmin: bool, maxMailboxSize: int) -> None:
    call.engine.users.add(actor, NewUsername, NewPassword, DomainName,
                          FirstName, LastName, IsDomainAdmin, maxMailboxSize)


@authenticated()
def DeleteUser(call: Call, actor: Actor, Username: str | None, DomainName: str | None) -> None:
    call.engine.users.delete(actor, Username, DomainName)


@authenticated()
def UpdateUser(call: Call, actor: Actor, EmailAddress: str | None, NewPassword: str | None, NewFirstName: str | None,
               NewLastName: str | None, IsDomainAdmin: bool) -> None:
    call.engine.users.update(actor, EmailAddress, NewPassword, NewFirstName, NewLastName, IsDomainAdmin)


@authenticated()
def UpdateUser2(call: Call, actor: Actor, EmailAddress: str | None, NewPassword: str | None, NewFirstName: str | None,
                NewLastName: str | None, IsDomainAdmin: bool, maxMailboxSize: int) -> None:
    call.engine.users.update(actor, EmailAddress, NewPassword, NewFirstName,
                             NewLastName, IsDomainAdmin, maxMailboxSize)


@authenticated(quick=True)
def GetUser(call: Call, actor: Actor, EmailAddress: str | None) -> dict[str, Any]:
    return {"UserInfo": _user_info(call.engine.users.get(actor, EmailAddress))}


@authenticated(quick=True)
def GetUsers(call: Call, actor: Actor, DomainName: str | None) -> dict[str, Any]:
    users = call.engine.users.list(actor, DomainName)
    return {"Users": [_user_info(u) for u in users]}


@anonymous
def AuthenticateUser(call: Call, UserName: str | None, DomainName: str | None, Password: str | None) -> None:
    call.engine.users.authenticate(UserName, DomainName, Password, call.client_ip)


@anonymous
def LoginValidated(call: Call, Username: str | None, Password: str | None) -> None:
    call.engine.users.authenticate(Username, None, Password, call.client_ip)


# Settings

@authenticated()
def GetRequestedUserSettings(call: Call, actor: Actor, EmailAddress: str | None,
                             requestedSettings: list[str | None]) -> dict[str, Any]:
    return {"settingValues": call.engine.users.requested_settings(actor, EmailAddress, requestedSettings)}


@authenticated()
def SetRequestedUserSettings(call: Call, actor: Actor, EmailAddress: str | None,
                             newSettings: list[str | None]) -> None:
    call.engine.users.set_requested_settings(actor, EmailAddress, newSettings)


# Forwarding, auto-responder, ActiveSync

@authenticated()
def GetUserForwardingInfo(call: Call, actor: Actor, EmailAddress: str | None) -> dict[str, Any]:
    forwarding = call.engine.user_options.forwarding(actor, EmailAddress)
    return {"DeleteOnForward": forwarding.delete_on_forward,
            "ForwardingAddress": FORWARD_SEPARATOR.join(forwarding.addresses)}


@authenticated()
def GetUserForwardingInfo2(call: Call, actor: Actor, EmailAddress: str | None) -> dict[str, Any]:
    forwarding = call.engine.user_options.forwarding(actor, EmailAddress)
    return {"DeleteOnForward": forwarding.delete_on_forward, "ForwardingAddresses": forwarding.addresses}


@authenticated()
def UpdateUserForwardingInfo(call: Call, actor: Actor, EmailAddress: str | None, DeleteOnForward: bool,
                             ForwardingAddress: str | None) -> None:
    call.engine.user_options.set_forwarding(actor, EmailAddress, DeleteOnForward, ForwardingAddress)


@authenticated()
def UpdateUserForwardingInfo2(call: Call, actor: Actor, EmailAddress: str | None, DeleteOnForward: bool,
                              ForwardingAddress: str | None) -> None:
    call.engine.user_options.set_forwarding(actor, EmailAddress, DeleteOnForward, ForwardingAddress)


@authenticated()
def GetUserAutoResponseInfo(call: Call, actor: Actor, EmailAddress: str | None) -> dict[str, Any]:
    auto = call.engine.user_options.auto_response(actor, EmailAddress)
    return {"Enabled": auto.enabled, "Subject": auto.subject, "Body": auto.body}


@authenticated()
def UpdateUserAutoResponseInfo(call: Call, actor: Actor, EmailAddress: str | None, Enabled: bool, Subject: str | None,
                               Body: str | None) -> None:
    call.engine.user_options.set_auto_response(actor, EmailAddress, Enabled, Subject, Body)


@authenticated()
def IsUserEnabledForActiveSync(call: Call, actor: Actor, EmailAddress: str | None, Enabled: bool) -> dict[str, bool]:
    """`Enabled` is ignored: the contract has it on this query, but the answer is the stored flag."""
    return {"Enabled": call.engine.user_options.activesync_enabled(actor, EmailAddress)}


@authenticated()
def ToggleActiveSync(call: Call, actor: Actor, EmailAddress: str | None, Enabled: bool) -> None:
    call.engine.user_options.set_activesync(actor, EmailAddress, Enabled)


# RSS feeds

@authenticated()
def AddRSSFeed(call: Call, actor: Actor, EmailAddress: str | None, rssUrl: str | None, rssName: str | None,
               rssFolder: str | None) -> None:
    call.engine.user_options.add_feed(actor, EmailAddress, rssUrl, rssName, rssFolder)


@authenticated()
def DeleteRSSFeed(call: Call, actor: Actor, EmailAddress: str | None, UID: str | None) -> None:
    call.engine.user_options.delete_feed(actor, EmailAddress, UID)


@authenticated()
def ListRSSFeeds(call: Call, actor: Actor, EmailAddress: str | None) -> dict[str, Any]:
    feeds = call.engine.user_options.feeds(actor, EmailAddress)
    return {"RSSFeeds": [{"uid": f.uid, "name": f.name, "url": f.url, "folder": f.folder} for f in feeds.feeds],
            "Folders": feeds.folders}


# User groups

@authenticated()
def AddUserGroup(call: Call, actor: Actor, DomainName: str | None, UserGroupName: str | None,
                 UserNames: list[str | None]) -> None:
    call.engine.user_groups.add(actor, DomainName, UserGroupName, UserNames)


@authenticated()
def UpdateUserGroup(call: Call, actor: Actor, DomainName: str | None, UserGroupID: str | None,
                    UserGroupName: str | None, UserNames: list[str | None]) -> None:
    call.engine.user_groups.update(actor, DomainName, UserGroupID, UserGroupName, UserNames)


@authenticated()
def RemoveUserGroup(call: Call, actor: Actor, DomainName: str | None, UserGroupID: str | None) -> None:
    call.engine.user_groups.delete(actor, DomainName, UserGroupID)


@authenticated()
def GetUserGroup(call: Call, actor: Actor, DomainName: str | None, UserGroupID: str | None) -> dict[str, Any]:
    group = call.engine.user_groups.get(actor, DomainName, UserGroupID)
    return {"UserGroup": _group_info(group)}


@authenticated()
def GetUserGroupsByDomain(call: Call, actor: Actor, DomainName: str | None) -> dict[str, Any]:
    groups = call.engine.user_groups.list(actor, DomainName)
    return {"UserGroups": [_group_info(g) for g in groups]}


@authenticated()
def GetUserGroupsByUser(call: Call, actor: Actor, DomainName: str | None, UserName: str | None,
                        IncludeUserNames: bool) -> dict[str, Any]:
    groups = call.engine.user_groups.of_member(actor, DomainName, UserName)
    return {"UserGroups": [_group_info(g, IncludeUserNames) for g in groups]}


# Quotas, statistics, logins

@authenticated()
def GetUserQuotas(call: Call, actor: Actor, DomainName: str | None) -> dict[str, Any]:
    quotas = call.engine.user_activity.quotas(actor, DomainName)
    return {"Users": [{"UserName": q.user, "MaxSpace": q.max_bytes, "CurrentSpace": q.used_bytes} for q in quotas]}


@authenticated()
def GetUserStats(call: Call, actor: Actor, EmailAddress: str | None, Start: dt.datetime,
                 End: dt.datetime) -> dict[str, int]:
    return traffic_fields(call.engine.user_activity.traffic(actor, EmailAddress, Start, End))


@authenticated()
def GetInactiveUsers(call: Call, actor: Actor, date: dt.datetime) -> dict[str, Any]:
    inactive = call.engine.user_activity.inactive(actor, date)
    return {"EmailAddress": [i.address for i in inactive], "LastLogin": [i.at for i in inactive]}


@authenticated()
def GetLastLoginTimes(call: Call, actor: Actor, EmailAddress: str | None, DateStart: dt.datetime | None,
                      DateEnd: dt.datetime | None) -> dict[str, Any]:
    times = call.engine.user_activity.login_times(actor, EmailAddress, DateStart, DateEnd)
    return {"lastLogins": [f"{protocol}={format_value('dateTime', at)}" for protocol, at in times.by_protocol],
            "lastUserLogins": [_userlogin(login) for login in times.by_user]}


# Mailbox migrations

@authenticated()
def QueueMailBoxMigration(call: Call, actor: Actor, parameters: list[str | None]) -> dict[str, Any]:
    job = call.engine.mailbox_migrations.queue(actor, parameters)
    return {"KeyValuePairs": [f"id={job.id}", f"status={job.status}"]}


@authenticated()
def GetMigrationStatus(call: Call, actor: Actor) -> list[dict[str, str]]:
    jobs = call.engine.mailbox_migrations.list(actor)
    return [{"ID": j.id, "emailAddress": j.email_address, "status": j.status} for j in jobs]


@authenticated()
def RemoveFromMigrationQueue(call: Call, actor: Actor, itemID: str) -> None:
    call.engine.mailbox_migrations.remove(actor, itemID)
