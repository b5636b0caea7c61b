"""User groups: named sets of a domain's users (svcUserAdmin's *UserGroup* operations).

Rights: a system administrator manages every domain's groups, a domain administrator its own
domain's. A deleted user leaves its groups (`users.Users.delete`).
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailsrv.core.actor import Actor
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.directory.domains import domain_for
from mailsrv.directory.user_access import NAME_LIMIT, by_name, get_user, name_in, required_text
from mailsrv.store.db import Store
from mailsrv.store.models import Domain, User, UserGroup


@dataclass(frozen=True)
class GroupView:
    id: str
    name: str
    members: list[str]  # user names (local parts) of the group's domain


def _group(s: Session, domain: Domain, raw_id: str | None) -> UserGroup:
    group = s.get(UserGroup, (raw_id or "").strip().lower())
    if group is None or group.domain_id != domain.id:
        raise MailsrvError(ResultCode.GROUP_NOT_FOUND, f"The user group '{raw_id}' does not exist in {domain.name}.")
    return group


def _group_view(group: UserGroup) -> GroupView:
    return GroupView(group.id, group.name, list(group.members))


def _domain_groups(s: Session, domain: Domain) -> list[GroupView]:
    rows = s.execute(select(UserGroup).where(UserGroup.domain_id == domain.id)).scalars()
    return sorted((_group_view(g) for g in rows), key=lambda g: by_name(g.name, g.id))


def _group_name(s: Session, domain: Domain, raw: str | None, own_id: str = "") -> str:
    """A group name unused by the domain's other groups (clients find groups by name: ids are not
    returned by AddUserGroup)."""
    name = required_text(raw, "group name", NAME_LIMIT)
    clash = s.execute(select(UserGroup.id).where(UserGroup.domain_id == domain.id, UserGroup.id != own_id,
                                                 func.lower(UserGroup.name) == name.lower())).first()
    if clash:
        raise MailsrvError(ResultCode.NAME_IN_USE, f"The domain {domain.name} already has a user group named {name}.")
    return name


def _group_members(s: Session, domain: Domain, raw_names: Iterable[str | None]) -> list[str]:
    """Existing users of `domain`, by name, de-duplicated in the order given (blank entries skipped)."""
    wanted: list[str] = []
    for raw in raw_names:
        if raw is not None and raw.strip() and (name := name_in(raw, domain.name)) not in wanted:
            wanted.append(name)
    found = set(s.execute(select(User.name).where(User.domain_id == domain.id, User.name.in_(wanted))).scalars())
    if missing := [name for name in wanted if name not in found]:
        raise MailsrvError(ResultCode.USER_NOT_FOUND, f"No such user in {domain.name}: {', '.join(missing)}.")
    return wanted


class UserGroups:
    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, actor: Actor, raw_domain: str | None, raw_name: str | None,
            members: Iterable[str | None]) -> str:
        """Create a group of existing users of the domain; the new group's id."""
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_domain)
            group = UserGroup(id=str(uuid.uuid4()), domain_id=domain.id, name=_group_name(s, domain, raw_name),
                              members=_group_members(s, domain, members))
            s.add(group)
            return group.id

    def update(self, actor: Actor, raw_domain: str | None, raw_id: str | None, raw_name: str | None,
               members: Iterable[str | None]) -> None:
        """Rename a group and replace its members."""
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_domain)
            group = _group(s, domain, raw_id)
            group.name = _group_name(s, domain, raw_name, own_id=group.id)
            group.members = _group_members(s, domain, members)

    def delete(self, actor: Actor, raw_domain: str | None, raw_id: str | None) -> None:
        with self.store.session() as s:
            s.delete(_group(s, domain_for(s, actor, raw_domain), raw_id))

    def get(self, actor: Actor, raw_domain: str | None, raw_id: str | None) -> GroupView:
        with self.store.session() as s:
            return _group_view(_group(s, domain_for(s, actor, raw_domain), raw_id))

    def list(self, actor: Actor, raw_domain: str | None) -> list[GroupView]:
        with self.store.session() as s:
            return _domain_groups(s, domain_for(s, actor, raw_domain))

    def of_member(self, actor: Actor, raw_domain: str | None, raw_user: str | None) -> list[GroupView]:
        """The groups of the domain that an existing user is in."""
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_domain)
            member = get_user(s, domain, name_in(raw_user, domain.name)).name
            return [g for g in _domain_groups(s, domain) if member in g.members]
