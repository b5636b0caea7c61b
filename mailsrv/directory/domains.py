"""Domains: creation with their primary administrator, settings, defaults, rename, deletion."""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from mailsrv.core import names, settings
from mailsrv.core.actor import Actor, Role
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.directory import passwords
from mailsrv.directory.address_lists import reserved_refusal
from mailsrv.mailstore.disk import Disk
from mailsrv.store.db import Store
from mailsrv.store.models import (
    Alias,
    Domain,
    DomainAlias,
    MailingList,
    ServerSetting,
    User,
)

_DEFAULTS_PREFIX = "domaindefault."


@dataclass(frozen=True)
class DomainView:
    name: str
    path: str
    primary_admin: str
    settings: dict[str, Any]


@dataclass(frozen=True)
class DomainMembers:
    users: list[str]
    domain_aliases: list[str]
    has_catch_all: bool


@dataclass(frozen=True)
class DomainRow:
    name: str
    enabled: bool


@dataclass(frozen=True)
class DomainPage:
    """One page of the domains an administrator manages, and how many match in all."""
    total: int
    rows: list[DomainRow]


def domain_not_found(name: str) -> MailsrvError:
    return MailsrvError(ResultCode.DOMAIN_NOT_FOUND, f"The domain {name} does not exist.")


def get_domain(s: Session, name: str) -> Domain:
    domain = s.execute(select(Domain).where(Domain.name == name)).scalar_one_or_none()
    if domain is None:
        raise domain_not_found(name)
    return domain


# What Domains.get reads, built once: control panels read thousands of domains in a loop.
_NAMES = select(Domain.name).order_by(Domain.name)
_VIEW = select(Domain.name, Domain.path, Domain.primary_admin, Domain.settings).where(Domain.name == bindparam("name"))
# Under a domain's stored settings in its view (made once: every GetDomainSettings asks).
_SETTING_DEFAULTS = settings.defaults(settings.DOMAIN)


def domain_for(s: Session, actor: Actor, raw_name: str | None) -> Domain:
    """The named domain after checking that `actor` may manage it."""
    name = names.domain_name(raw_name)
    actor.require_domain(name)
    return get_domain(s, name)


def load_defaults(s: Session) -> dict[str, Any]:
    """The domain defaults as DOMAIN keys (without the `default` prefix)."""
    values = settings.defaults(settings.DOMAIN)
    values["skin"] = settings.DOMAIN_DEFAULTS["defaultskin"].default
    rows = s.execute(select(ServerSetting).where(ServerSetting.key.startswith(_DEFAULTS_PREFIX))).scalars()
    for row in rows:
        values[row.key[len(_DEFAULTS_PREFIX):]] = row.value
    return values


def validate_settings(s: Session, domain: Domain | None, changes: Mapping[str, Any]) -> None:
    """Cross-field checks that a single key's type cannot express."""
    for key in settings.PORT_KEYS & changes.keys():
        if not 0 <= changes[key] <= 65535:
            raise MailsrvError(ResultCode.VALUE_OUT_OF_RANGE, f"Setting '{key}' must be a port from 0 to 65535.")
    if changes.get("serverip"):
        try:
            ipaddress.ip_address(changes["serverip"])
        except ValueError:
            raise MailsrvError(ResultCode.INVALID_ARGUMENT,
                               f"'{changes['serverip']}' is not an IP address.") from None
    if "listcommandaddress" in changes:
        changes_lca = changes["listcommandaddress"]
        if changes_lca:
            names.local_part(changes_lca, "list command address")
    if changes.get("catchall") and domain is not None:
        alias = names.local_part(changes["catchall"], "alias name")
        if s.execute(select(Alias.id).where(Alias.domain_id == domain.id, Alias.name == alias)).first() is None:
            raise MailsrvError(ResultCode.ALIAS_NOT_FOUND,
                               f"The catch-all must name an existing alias; {alias} does not exist.")


def limit_reached(s: Session, domain: Domain, model: type[Alias | DomainAlias | MailingList | User], setting: str) -> bool:
    """Whether the domain already holds as many `model` rows as its `setting` allows (0: unlimited)."""
    limit = domain.settings.get(setting, 0)
    return bool(limit) and s.execute(select(func.count(model.id)).where(model.domain_id == domain.id)).scalar_one() >= limit


def other_paths(s: Session, name: str) -> list[str]:
    """The directories of every domain but `name`: a domain's directory may overlap none of them."""
    return list(s.execute(select(Domain.path).where(Domain.name != name)).scalars())


def refers_to(store: Store, path: Path) -> bool:
    """Whether the store has a domain whose directory is `path`, or a user whose directory it is."""
    with store.reading() as s:
        if s.execute(select(Domain.id).where(Domain.path == str(path))).first() is not None:
            return True
        return path.parent.name == "users" and s.execute(
            select(User.id).join(Domain, Domain.id == User.domain_id)
            .where(Domain.path == str(path.parent.parent), User.name == path.name)).first() is not None


def name_taken(s: Session, name: str) -> bool:
    """Whether a domain or a domain alias already answers for `name`."""
    return (s.execute(select(Domain.id).where(Domain.name == name)).first() is not None
            or s.execute(select(DomainAlias.id).where(DomainAlias.name == name)).first() is not None)


class Domains:
    def __init__(self, store: Store, disk: Disk) -> None:
        self.store = store
        self.disk = disk

    def add(self, actor: Actor, raw_name: str | None, raw_path: str | None, admin_name: str | None,
            admin_password: str | None, first_name: str | None, last_name: str | None,
            overrides: Mapping[str, Any]) -> None:
        """Create a domain from the defaults plus `overrides`, with its primary domain administrator."""
        actor.require_system()
        name = names.domain_name(raw_name)
        admin = names.local_part(admin_name, "administrator user name")
        # Hashed before the transaction: on SQLite the transaction holds the one write lock.
        password_hash = passwords.hash_password(passwords.check_rules(admin_password, admin))
        with self.store.session() as s:
            path = self.disk.domain_path(name, raw_path, other_paths(s, name))
        # The session commits before the directory context ends, so a failed commit removes the directory.
        with self.disk.created(path) as staging, self.store.session() as s:
            if name_taken(s, name):
                raise MailsrvError(ResultCode.DOMAIN_EXISTS, f"The domain {name} already exists.")
            reserved_refusal(s, name)
            values = {k: v for k, v in load_defaults(s).items() if k in settings.DOMAIN}
            validate_settings(s, None, overrides)
            values.update(overrides)
            values["catchall"] = ""
            domain = Domain(name=name, path=str(path), primary_admin=admin, settings=values)
            domain.users.append(User(name=admin, password_hash=password_hash,
                                     first_name=(first_name or "").strip(), last_name=(last_name or "").strip(),
                                     is_domain_admin=True, settings=settings.defaults(settings.USER)))
            s.add(domain)
            self.disk.create_mailbox(staging, admin)

    def delete(self, actor: Actor, raw_name: str | None, delete_files: bool) -> None:
        actor.require_system()
        name = names.domain_name(raw_name)
        with self.store.session() as s:
            path = Path(get_domain(s, name).path)
        with self.disk.removed(path) if delete_files else nullcontext(), self.store.session() as s:
            s.delete(get_domain(s, name))

    def rename(self, actor: Actor, raw_old: str | None, raw_new: str | None, raw_path: str | None = None) -> None:
        """Rename a domain and move its directory (to `raw_path`, or beside the old one)."""
        actor.require_system()
        old_name, new_name = names.domain_name(raw_old), names.domain_name(raw_new)
        with self.store.session() as s:
            old_path = Path(get_domain(s, old_name).path)
            if new_name != old_name and name_taken(s, new_name):
                raise MailsrvError(ResultCode.DOMAIN_EXISTS, f"The domain {new_name} already exists.")
            if new_name != old_name:
                reserved_refusal(s, new_name)
            beside = old_path.parent / new_name if old_path.name == old_name else old_path
            new_path = self.disk.domain_path(new_name, raw_path, other_paths(s, old_name), beside)
        with self.disk.moved(old_path, new_path) if new_path != old_path else nullcontext(), \
                self.store.session() as s:
            domain = get_domain(s, old_name)
            domain.name, domain.path = new_name, str(new_path)
            self._retarget_addresses(s, domain, old_name, new_name)

    @staticmethod
    def _retarget_addresses(s: Session, domain: Domain, old: str, new: str) -> None:
        """Aliases and forwards inside the domain that pointed at its old name follow the rename."""
        def swap(addresses: Iterable[str]) -> list[str]:
            return [a[: -len(old)] + new if a.lower().endswith("@" + old) else a for a in addresses]
        for alias in s.execute(select(Alias).where(Alias.domain_id == domain.id)).scalars():
            alias.addresses = swap(alias.addresses)
        for user in domain.users:
            user.forwarding_addresses = swap(user.forwarding_addresses)

    def set_enabled(self, actor: Actor, raw_name: str | None, enabled: bool) -> None:
        self.update(actor, raw_name, {"isenabled": enabled}, system_only=True)

    def get(self, actor: Actor, raw_name: str | None) -> DomainView:
        name = names.domain_name(raw_name)
        actor.require_domain(name)
        # One prepared read (none while the directory has not changed since it was made): no ORM
        # objects, and no write lock taken for a read.
        rows = self.store.fetch_directory(_VIEW, {"name": name})
        if not rows:
            raise domain_not_found(name)
        name, path, primary_admin, values = rows[0]
        return DomainView(name, path, primary_admin, {**_SETTING_DEFAULTS, **values})

    def update(self, actor: Actor, raw_name: str | None, changes: Mapping[str, Any], system_only: bool = False) -> None:
        """Every change of a domain's settings goes through here, so the rights on its keys hold for
        every operation that carries them (SetRequestedDomainSettings, UpdateDomain, Enable/DisableDomain)."""
        if system_only:
            actor.require_system()
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_name)
            settings.refuse_system_only(actor, settings.DOMAIN, domain.settings, changes)
            validate_settings(s, domain, changes)
            domain.settings = {**domain.settings, **changes}

    def requested_settings(self, actor: Actor, raw_name: str | None, requested: Iterable[str | None]) -> list[str]:
        view = self.get(actor, raw_name)
        return settings.read_requested(settings.DOMAIN, view.settings, requested)

    def set_requested_settings(self, actor: Actor, raw_name: str | None, assignments: Iterable[str | None]) -> None:
        self.update(actor, raw_name, settings.parse_assignments(settings.DOMAIN, assignments))

    def defaults(self, actor: Actor) -> dict[str, Any]:
        actor.require_system()
        with self.store.session() as s:
            return load_defaults(s)

    def requested_defaults(self, actor: Actor, requested: Iterable[str | None]) -> list[str]:
        values = {f"default{k}": v for k, v in self.defaults(actor).items()}
        return settings.read_requested(settings.DOMAIN_DEFAULTS, values, requested)

    def set_defaults(self, actor: Actor, changes: Mapping[str, Any]) -> None:
        """Change domain defaults (DOMAIN keys); existing domains keep their own values."""
        actor.require_system()
        with self.store.session() as s:
            if "catchall" in changes and changes["catchall"]:
                names.local_part(changes["catchall"], "alias name")
            validate_settings(s, None, changes)
            for key, value in changes.items():
                s.merge(ServerSetting(key=_DEFAULTS_PREFIX + key, value=value))

    def set_requested_defaults(self, actor: Actor, assignments: Iterable[str | None]) -> None:
        parsed = settings.parse_assignments(settings.DOMAIN_DEFAULTS, assignments)
        self.set_defaults(actor, {k[len("default"):]: v for k, v in parsed.items()})

    def names(self, actor: Actor) -> list[str]:
        actor.require_system()
        # A prepared read: no write lock for a list control panels fetch in a loop.
        return [name for name, in self.store.fetch(_NAMES, {})]

    def search(self, actor: Actor, text: str, offset: int, limit: int) -> DomainPage:
        """The domains whose name contains `text`, by name, `limit` from `offset`: a system
        administrator's among all, a domain administrator's its own only. A count and one page in
        name order: a few milliseconds with 10,000 domains (benchmarks/admin_pages.py)."""
        actor.require_system() if actor.role is Role.SYSTEM_ADMIN else actor.require_domain(actor.domain)
        where = [Domain.name.contains(text.strip().lower(), autoescape=True)] if text.strip() else []
        if actor.role is not Role.SYSTEM_ADMIN:
            where.append(Domain.name == actor.domain)
        with self.store.read_connection() as conn:
            total = conn.execute(select(func.count(Domain.id)).where(*where)).scalar_one()
            rows = conn.execute(select(Domain.name, Domain.settings).where(*where).order_by(Domain.name)
                                .offset(max(offset, 0)).limit(limit)).all()
        return DomainPage(total, [DomainRow(name, bool(values.get("isenabled", True))) for name, values in rows])

    def members(self, actor: Actor, raw_name: str | None) -> DomainMembers:
        with self.store.session() as s:
            d = domain_for(s, actor, raw_name)
            users = s.execute(select(User.name).where(User.domain_id == d.id).order_by(User.name)).scalars()
            aliases = s.execute(select(DomainAlias.name).where(DomainAlias.domain_id == d.id)
                                .order_by(DomainAlias.name)).scalars()
            return DomainMembers(list(users), list(aliases), bool(d.settings.get("catchall")))

    def primary_admin(self, actor: Actor, raw_name: str | None) -> str:
        return self.get(actor, raw_name).primary_admin

    def set_primary_admin(self, actor: Actor, raw_name: str | None, raw_user: str | None) -> None:
        """Make a user the domain's primary administrator. Only a system administrator or the current
        primary may: a secondary one that could take the role could then delete the primary."""
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_name)
            if actor.role is not Role.SYSTEM_ADMIN and actor.user != domain.primary_admin:
                raise MailsrvError(ResultCode.PERMISSION_DENIED,
                                   f"Permission denied: only a system administrator or the primary administrator "
                                   f"of {domain.name} may change its primary administrator.")
            user_name = names.local_part(raw_user)
            user = s.execute(select(User).where(User.domain_id == domain.id, User.name == user_name)).scalar_one_or_none()
            if user is None:
                raise MailsrvError(ResultCode.USER_NOT_FOUND, f"The user {user_name}@{domain.name} does not exist.")
            user.is_domain_admin = True
            domain.primary_admin = user.name

    def reload(self, actor: Actor, raw_name: str | None) -> None:
        """Re-check a domain against its directory: recreate missing mailbox directories.

        mailsrv keeps no per-domain cache (every listener reads the store), so this is the whole
        of what "re-read from disk" can mean here."""
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_name)
            for user_name in s.execute(select(User.name).where(User.domain_id == domain.id)).scalars():
                self.disk.create_mailbox(domain.path, user_name)

    def count(self) -> int:
        with self.store.session() as s:
            return s.execute(select(func.count(Domain.id))).scalar_one()
