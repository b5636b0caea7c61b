"""System administrators: the factory login, accounts, passwords and IP restrictions.

Setup without a shell (the seed's "Changing the System Administrator Login"), through
SetSystemAdminPassword (`set_password`): the factory login admin/admin may do exactly one thing,
call it with a new administrator name and password; its account is renamed and gets that password,
setup is complete, and admin/admin logs in no more. Afterwards the operation sets the password of
the administrator it names, as before, and an administrator renames itself by naming a name no
administrator has: the caller's own account (whose current password the call's login verified)
takes that name and the new password.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from mailsrv.core.actor import Actor, Role
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.core.networks import parse_network
from mailsrv.directory import passwords
from mailsrv.store.db import Store
from mailsrv.store.models import AdminIpRestriction, SystemAdmin, WebSession

FACTORY_LOGIN = ("admin", "admin")


@dataclass(frozen=True)
class AdminView:
    id: str
    username: str
    is_primary: bool
    restricted_by_ip: bool
    created_at: dt.datetime
    description: str
    networks: tuple[str, ...] = ()  # its IP restrictions


def _admin_name(raw: str | None) -> str:
    name = (raw or "").strip().lower()
    if not name or len(name) > 128 or "@" in name or any(c.isspace() or ord(c) < 32 for c in name):
        # An e-mail-shaped name would be taken for a mailbox login (the seed says to avoid it).
        raise MailsrvError(ResultCode.INVALID_USER_NAME,
                           f"'{raw}' is not a valid administrator name: 1-128 characters, no spaces, no '@'.")
    return name


def _get(s: Session, raw: str | None) -> SystemAdmin:
    name = _admin_name(raw)
    admin = s.execute(select(SystemAdmin).where(SystemAdmin.username == name)).scalar_one_or_none()
    if admin is None:
        raise MailsrvError(ResultCode.ADMIN_NOT_FOUND, f"The system administrator {name} does not exist.")
    return admin


def _end_sessions(s: Session, admin: SystemAdmin) -> None:
    """A changed login signs the administrator out of the web everywhere, as a user's does."""
    if admin.id is not None:
        s.execute(delete(WebSession).where(WebSession.admin_id == admin.id))


def _network(raw: str | None) -> str:
    """The normal form of an address, CIDR block or `first-last` range."""
    text = (raw or "").strip()
    try:
        parse_network(text)
        if "-" in text:
            first, last = (str(ipaddress.ip_address(part.strip())) for part in text.split("-", 1))
            return f"{first}-{last}"
        net = ipaddress.ip_network(text, strict=False)
        return str(net.network_address) if net.num_addresses == 1 else str(net)
    except ValueError:
        raise MailsrvError(ResultCode.INVALID_ARGUMENT,
                           f"'{raw}' is not an IP address, CIDR block or address range.") from None


class Admins:
    def __init__(self, store: Store) -> None:
        self.store = store

    def ensure_factory_login(self) -> None:
        """On a new store, create the primary admin with the factory login, pending setup."""
        with self.store.session() as s:
            if s.execute(select(func.count(SystemAdmin.id))).scalar_one() == 0:
                s.add(SystemAdmin(id=str(uuid.uuid4()), username=FACTORY_LOGIN[0], is_primary=True,
                                  password_hash=passwords.hash_password(FACTORY_LOGIN[1]), setup_pending=True,
                                  description="Primary administrator"))

    def factory_login_unchanged(self) -> bool:
        """Whether admin/admin still logs in (setup not done): `mailsrv serve` warns at every start."""
        with self.store.session() as s:
            return s.execute(select(SystemAdmin.id).where(SystemAdmin.setup_pending.is_(True)).limit(1)).first() is not None

    def reset_primary(self, username: str, password: str) -> None:
        """Set the primary administrator's login (the seed's "Resetting an Unknown Login")."""
        name = _admin_name(username)
        pw = passwords.check_rules(password, name)
        with self.store.session() as s:
            primary = s.execute(select(SystemAdmin).where(SystemAdmin.is_primary)).scalar_one_or_none()
            other = s.execute(select(SystemAdmin).where(SystemAdmin.username == name)).scalar_one_or_none()
            if other is not None and other is not primary:
                raise MailsrvError(ResultCode.ADMIN_EXISTS, f"Another administrator is named {name}.")
            if primary is None:
                primary = SystemAdmin(id=str(uuid.uuid4()), is_primary=True, description="Primary administrator")
                s.add(primary)
            _end_sessions(s, primary)
            primary.username, primary.password_hash, primary.setup_pending = name, passwords.hash_password(pw), False

    def list(self, actor: Actor) -> list[AdminView]:
        actor.require_system()
        with self.store.session() as s:
            admins = s.execute(select(SystemAdmin).order_by(SystemAdmin.username)).scalars()
            return [AdminView(a.id, a.username, a.is_primary, bool(a.ip_restrictions), a.created_at, a.description,
                              tuple(r.network for r in a.ip_restrictions))
                    for a in admins]

    def add(self, actor: Actor, raw_name: str | None, password: str | None, description: str | None) -> None:
        actor.require_system()
        name = _admin_name(raw_name)
        pw = passwords.check_rules(password, name)
        with self.store.session() as s:
            if s.execute(select(SystemAdmin.id).where(SystemAdmin.username == name)).first():
                raise MailsrvError(ResultCode.ADMIN_EXISTS, f"The system administrator {name} already exists.")
            s.add(SystemAdmin(id=str(uuid.uuid4()), username=name, password_hash=passwords.hash_password(pw),
                              description=(description or "").strip()))

    def set_password(self, actor: Actor, raw_name: str | None, password: str | None) -> None:
        """Set the named administrator's password; or rename the caller (see the module's docstring)."""
        if actor.role is not Role.SYSTEM_ADMIN:
            actor.require_system()  # refuses, with the code its role gets
        name = _admin_name(raw_name)
        pw = passwords.check_rules(password, name)
        with self.store.session() as s:
            named = s.execute(select(SystemAdmin).where(SystemAdmin.username == name)).scalar_one_or_none()
            if not actor.setup_pending and named is not None:
                _end_sessions(s, named)
                named.password_hash = passwords.hash_password(pw)
                return
            caller = s.execute(select(SystemAdmin).where(SystemAdmin.username == actor.login)).scalar_one_or_none()
            if caller is None:  # deleted or renamed since this call logged in
                raise MailsrvError(ResultCode.ADMIN_NOT_FOUND,
                                   f"The system administrator {actor.login} does not exist.")
            if named is not None and named is not caller:
                raise MailsrvError(ResultCode.ADMIN_EXISTS, f"Another administrator is named {name}.")
            # check_rules refuses the factory password (too short), so admin/admin ends here.
            _end_sessions(s, caller)
            caller.username, caller.password_hash, caller.setup_pending = name, passwords.hash_password(pw), False

    def delete(self, actor: Actor, raw_name: str | None) -> None:
        actor.require_system()
        with self.store.session() as s:
            admin = _get(s, raw_name)
            if admin.is_primary:
                raise MailsrvError(ResultCode.PROTECTED_OBJECT, "The primary system administrator cannot be deleted.")
            s.delete(admin)

    def add_ip_restriction(self, actor: Actor, raw_name: str | None, network: str | None,
                           description: str | None) -> None:
        actor.require_system()
        spec = _network(network)
        with self.store.session() as s:
            admin = _get(s, raw_name)
            if any(r.network == spec for r in admin.ip_restrictions):
                raise MailsrvError(ResultCode.NAME_IN_USE, f"{admin.username} is already restricted to {spec}.")
            admin.ip_restrictions.append(AdminIpRestriction(network=spec, description=(description or "").strip()))

    def remove_ip_restriction(self, actor: Actor, raw_name: str | None, network: str | None) -> None:
        actor.require_system()
        spec = _network(network)
        with self.store.session() as s:
            admin = _get(s, raw_name)
            match = [r for r in admin.ip_restrictions if r.network == spec]
            if not match:
                raise MailsrvError(ResultCode.ITEM_NOT_FOUND, f"{admin.username} has no restriction {spec}.")
            admin.ip_restrictions.remove(match[0])
