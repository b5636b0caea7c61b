"""svcUserAdmin: mailbox users, forwarding, auto-responders, groups, RSS feeds, ActiveSync,
quotas, statistics, login history and mailbox migrations."""
from __future__ import annotations

import datetime as dt
from typing import Any

from mailsrv.users import GroupView, LastLogin, UserView
from services.asmx.call import Call
from services.asmx.ops.common import login, traffic_fields
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

def AddUser(call: Call, AuthUserName: str | None, AuthPassword: str | None, NewUsername: str | None,
            NewPassword: str | None, DomainName: str | None, FirstName: str | None, LastName: str | None,
            IsDomainAdmin: bool) -> None:
    call.engine.users.add(login(call, AuthUserName, AuthPassword), NewUsername, NewPassword, DomainName,
                          FirstName, LastName, IsDomainAdmin)


def AddUser2(call: Call, AuthUserName: str | None, AuthPassword: str | None, NewUsername: str | None,
             NewPassword: str | None, DomainName: str | None, FirstName: str | None, LastName: str | None,
             IsDomainAdmin: bool, maxMailboxSize: int) -> None:
    call.engine.users.add(login(call, AuthUserName, AuthPassword), NewUsername, NewPassword, DomainName,
                          FirstName, LastName, IsDomainAdmin, maxMailboxSize)


def DeleteUser(call: Call, AuthUserName: str | None, AuthPassword: str | None, Username: str | None,
               DomainName: str | None) -> None:
    call.engine.users.delete(login(call, AuthUserName, AuthPassword), Username, DomainName)


def UpdateUser(call: Call, AuthUserName: str | None, AuthPassword: str | None, EmailAddress: str | None,
               NewPassword: str | None, NewFirstName: str | None, NewLastName: str | None,
               IsDomainAdmin: bool) -> None:
    call.engine.users.update(login(call, AuthUserName, AuthPassword), EmailAddress, NewPassword, NewFirstName,
                             NewLastName, IsDomainAdmin)


def UpdateUser2(call: Call, AuthUserName: str | None, AuthPassword: str | None, EmailAddress: str | None,
                NewPassword: str | None, NewFirstName: str | None, NewLastName: str | None,
                IsDomainAdmin: bool, maxMailboxSize: int) -> None:
    call.engine.users.update(login(call, AuthUserName, AuthPassword), EmailAddress, NewPassword, NewFirstName,
                             NewLastName, IsDomainAdmin, maxMailboxSize)


def GetUser(call: Call, AuthUserName: str | None, AuthPassword: str | None,
            EmailAddress: str | None) -> dict[str, Any]:
    return {"UserInfo": _user_info(call.engine.users.get(login(call, AuthUserName, AuthPassword), EmailAddress))}


def GetUsers(call: Call, AuthUserName: str | None, AuthPassword: str | None,
             DomainName: str | None) -> dict[str, Any]:
    users = call.engine.users.list(login(call, AuthUserName, AuthPassword), DomainName)
    return {"Users": [_user_info(u) for u in users]}


def AuthenticateUser(call: Call, UserName: str | None, DomainName: str | None, Password: str | None) -> None:
    call.engine.users.authenticate(UserName, DomainName, Password, call.client_ip)


def LoginValidated(call: Call, Username: str | None, Password: str | None) -> None:
    call.engine.users.authenticate(Username, None, Password, call.client_ip)


# Settings

def GetRequestedUserSettings(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                             EmailAddress: str | None, requestedSettings: list[str | None]) -> dict[str, Any]:
    actor = login(call, AuthUserName, AuthPassword)
    return {"settingValues": call.engine.users.requested_settings(actor, EmailAddress, requestedSettings)}


def SetRequestedUserSettings(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                             EmailAddress: str | None, newSettings: list[str | None]) -> None:
    call.engine.users.set_requested_settings(login(call, AuthUserName, AuthPassword), EmailAddress, newSettings)


# Forwarding, auto-responder, ActiveSync

def GetUserForwardingInfo(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                          EmailAddress: str | None) -> dict[str, Any]:
    forwarding = call.engine.users.forwarding(login(call, AuthUserName, AuthPassword), EmailAddress)
    return {"DeleteOnForward": forwarding.delete_on_forward,
            "ForwardingAddress": FORWARD_SEPARATOR.join(forwarding.addresses)}


def GetUserForwardingInfo2(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                           EmailAddress: str | None) -> dict[str, Any]:
    forwarding = call.engine.users.forwarding(login(call, AuthUserName, AuthPassword), EmailAddress)
    return {"DeleteOnForward": forwarding.delete_on_forward, "ForwardingAddresses": forwarding.addresses}


def UpdateUserForwardingInfo(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                             EmailAddress: str | None, DeleteOnForward: bool, ForwardingAddress: str | None) -> None:
    call.engine.users.set_forwarding(login(call, AuthUserName, AuthPassword), EmailAddress, DeleteOnForward,
                                     ForwardingAddress)


def UpdateUserForwardingInfo2(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                              EmailAddress: str | None, DeleteOnForward: bool, ForwardingAddress: str | None) -> None:
    call.engine.users.set_forwarding(login(call, AuthUserName, AuthPassword), EmailAddress, DeleteOnForward,
                                     ForwardingAddress)


def GetUserAutoResponseInfo(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                            EmailAddress: str | None) -> dict[str, Any]:
    auto = call.engine.users.auto_response(login(call, AuthUserName, AuthPassword), EmailAddress)
    return {"Enabled": auto.enabled, "Subject": auto.subject, "Body": auto.body}


def UpdateUserAutoResponseInfo(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                               EmailAddress: str | None, Enabled: bool, Subject: str | None,
                               Body: str | None) -> None:
    call.engine.users.set_auto_response(login(call, AuthUserName, AuthPassword), EmailAddress, Enabled, Subject,
                                        Body)


def IsUserEnabledForActiveSync(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                               EmailAddress: str | None, Enabled: bool) -> dict[str, bool]:
    """`Enabled` is ignored: the contract has it on this query, but the answer is the stored flag."""
    return {"Enabled": call.engine.users.activesync_enabled(login(call, AuthUserName, AuthPassword), EmailAddress)}


def ToggleActiveSync(call: Call, AuthUserName: str | None, AuthPassword: str | None, EmailAddress: str | None,
                     Enabled: bool) -> None:
    call.engine.users.set_activesync(login(call, AuthUserName, AuthPassword), EmailAddress, Enabled)


# RSS feeds

def AddRSSFeed(call: Call, AuthUserName: str | None, AuthPassword: str | None, EmailAddress: str | None,
               rssUrl: str | None, rssName: str | None, rssFolder: str | None) -> None:
    call.engine.users.add_feed(login(call, AuthUserName, AuthPassword), EmailAddress, rssUrl, rssName, rssFolder)


def DeleteRSSFeed(call: Call, AuthUserName: str | None, AuthPassword: str | None, EmailAddress: str | None,
                  UID: str | None) -> None:
    call.engine.users.delete_feed(login(call, AuthUserName, AuthPassword), EmailAddress, UID)


def ListRSSFeeds(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                 EmailAddress: str | None) -> dict[str, Any]:
    feeds = call.engine.users.feeds(login(call, AuthUserName, AuthPassword), EmailAddress)
    return {"RSSFeeds": [{"uid": f.uid, "name": f.name, "url": f.url, "folder": f.folder} for f in feeds.feeds],
            "Folders": feeds.folders}


# User groups

def AddUserGroup(call: Call, AuthUserName: str | None, AuthPassword: str | None, DomainName: str | None,
                 UserGroupName: str | None, UserNames: list[str | None]) -> None:
    call.engine.users.add_group(login(call, AuthUserName, AuthPassword), DomainName, UserGroupName, UserNames)


def UpdateUserGroup(call: Call, AuthUserName: str | None, AuthPassword: str | None, DomainName: str | None,
                    UserGroupID: str | None, UserGroupName: str | None, UserNames: list[str | None]) -> None:
    call.engine.users.update_group(login(call, AuthUserName, AuthPassword), DomainName, UserGroupID,
                                   UserGroupName, UserNames)


def RemoveUserGroup(call: Call, AuthUserName: str | None, AuthPassword: str | None, DomainName: str | None,
                    UserGroupID: str | None) -> None:
    call.engine.users.delete_group(login(call, AuthUserName, AuthPassword), DomainName, UserGroupID)


def GetUserGroup(call: Call, AuthUserName: str | None, AuthPassword: str | None, DomainName: str | None,
                 UserGroupID: str | None) -> dict[str, Any]:
    group = call.engine.users.group(login(call, AuthUserName, AuthPassword), DomainName, UserGroupID)
    return {"UserGroup": _group_info(group)}


def GetUserGroupsByDomain(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                          DomainName: str | None) -> dict[str, Any]:
    groups = call.engine.users.groups(login(call, AuthUserName, AuthPassword), DomainName)
    return {"UserGroups": [_group_info(g) for g in groups]}


def GetUserGroupsByUser(call: Call, AuthUserName: str | None, AuthPassword: str | None, DomainName: str | None,
                        UserName: str | None, IncludeUserNames: bool) -> dict[str, Any]:
    groups = call.engine.users.member_groups(login(call, AuthUserName, AuthPassword), DomainName, UserName)
    return {"UserGroups": [_group_info(g, IncludeUserNames) for g in groups]}


# Quotas, statistics, logins

def GetUserQuotas(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                  DomainName: str | None) -> dict[str, Any]:
    quotas = call.engine.users.quotas(login(call, AuthUserName, AuthPassword), DomainName)
    return {"Users": [{"UserName": q.user, "MaxSpace": q.max_bytes, "CurrentSpace": q.used_bytes} for q in quotas]}


def GetUserStats(call: Call, AuthUserName: str | None, AuthPassword: str | None, EmailAddress: str | None,
                 Start: dt.datetime, End: dt.datetime) -> dict[str, int]:
    return traffic_fields(call.engine.users.traffic(login(call, AuthUserName, AuthPassword), EmailAddress,
                                                  Start, End))


def GetInactiveUsers(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                     date: dt.datetime) -> dict[str, Any]:
    inactive = call.engine.users.inactive(login(call, AuthUserName, AuthPassword), date)
    return {"EmailAddress": [i.address for i in inactive], "LastLogin": [i.at for i in inactive]}


def GetLastLoginTimes(call: Call, AuthUserName: str | None, AuthPassword: str | None, EmailAddress: str | None,
                      DateStart: dt.datetime | None, DateEnd: dt.datetime | None) -> dict[str, Any]:
    times = call.engine.users.login_times(login(call, AuthUserName, AuthPassword), EmailAddress,
                                          DateStart, DateEnd)
    return {"lastLogins": [f"{protocol}={format_value('dateTime', at)}" for protocol, at in times.by_protocol],
            "lastUserLogins": [_userlogin(login) for login in times.by_user]}


# Mailbox migrations

def QueueMailBoxMigration(call: Call, AuthUserName: str | None, AuthPassword: str | None,
                          parameters: list[str | None]) -> dict[str, Any]:
    job = call.engine.users.queue_migration(login(call, AuthUserName, AuthPassword), parameters)
    return {"KeyValuePairs": [f"id={job.id}", f"status={job.status}"]}


def GetMigrationStatus(call: Call, AuthUserName: str | None, AuthPassword: str | None) -> list[dict[str, str]]:
    jobs = call.engine.users.migrations(login(call, AuthUserName, AuthPassword))
    return [{"ID": j.id, "emailAddress": j.email_address, "status": j.status} for j in jobs]


def RemoveFromMigrationQueue(call: Call, AuthUserName: str | None, AuthPassword: str | None, itemID: str) -> None:
    call.engine.users.remove_migration(login(call, AuthUserName, AuthPassword), itemID)
