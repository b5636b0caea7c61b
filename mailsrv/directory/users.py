"""Mailbox user accounts and their Maildirs, and their settings (svcUserAdmin's accounts part).

Rights: a system administrator manages every user, a domain administrator the users of its own
domain; other users may only check their own credentials (`authenticate`). Per-mailbox options
(forwarding, auto-responder, ActiveSync, RSS feeds) are in `user_options`, user groups in
`user_groups`, the migration queue in `mailbox_migrations`, quotas, traffic and logins in
`user_activity`; what they share is in `user_access`.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import and_, bindparam, select
from sqlalchemy.orm import Session

from mailsrv.core import names, settings
from mailsrv.core.actor import Actor, Role
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.directory import passwords
from mailsrv.directory.auth import Authenticator
from mailsrv.directory.domains import domain_not_found, get_domain, limit_reached
from mailsrv.directory.mailing_lists import name_is_list
from mailsrv.directory.user_access import (
    NAME_LIMIT,
    checked_text,
    get_user,
    managed_address,
    managed_domain,
    managed_user,
    name_in,
    user_not_found,
)
from mailsrv.mailstore.disk import Disk
from mailsrv.store.db import Store
from mailsrv.store.models import Alias, Domain, User, UserGroup


@dataclass(frozen=True)
class UserView:
    name: str
    first_name: str
    last_name: str
    is_domain_admin: bool


# --- checks -------------------------------------------------------------------------------------

def _mailbox_mb(value: int) -> int:
    if not 0 <= value <= settings.INT32_MAX:
        raise MailsrvError(ResultCode.VALUE_OUT_OF_RANGE,
                           f"The mailbox size must be from 0 (the domain's limit) to {settings.INT32_MAX} MB.")
    return value


def _password_hash(raw: str | None, user_name: str) -> str:
    return passwords.hash_password(passwords.check_rules(raw, user_name))


def _require_lock_right(actor: Actor, user: User) -> None:
    """`lockpassword` protects a password from domain administrators; only system admins pass it."""
    if actor.role is not Role.SYSTEM_ADMIN:
        raise MailsrvError(ResultCode.PERMISSION_DENIED,
                           f"Permission denied: the password of {user.name}@{user.domain.name} is locked; "
                           "only a system administrator may change it or its lock.")


def _refuse_mailbox_beyond_domain(actor: Actor, domain: Domain, size_mb: int, current_mb: int) -> None:
    """A domain administrator sizes mailboxes within the domain's `maxmailboxsize`, the limit the
    system administrator set (0: unlimited). A size a system administrator granted above it may be
    sent back unchanged, as control panels echo every field."""
    limit = settings.value(settings.DOMAIN, domain.settings, "maxmailboxsize")
    if actor.role is not Role.SYSTEM_ADMIN and limit and size_mb > limit and size_mb != current_mb:
        raise MailsrvError(ResultCode.PERMISSION_DENIED,
                           f"Permission denied: mailboxes of {domain.name} may hold at most {limit} MB; only a "
                           "system administrator may set 'maxsize' above the domain's maxmailboxsize.")


def _user_settings(user: User) -> dict[str, Any]:
    return {**settings.defaults(settings.USER), **user.settings}


def _user_dir(domain_path: str | Path, name: str) -> Path:
    return Disk.maildir(domain_path, name).parent


# What Users.get and Users.list read, built once (control panels read users in a loop), from the
# domain: no row, no domain; a row of NULLs, a domain without the user (or without users).
_VIEW_COLUMNS = (User.name, User.first_name, User.last_name, User.is_domain_admin)
_USER = (select(*_VIEW_COLUMNS).select_from(Domain)
         .outerjoin(User, and_(User.domain_id == Domain.id, User.name == bindparam("name")))
         .where(Domain.name == bindparam("domain")))
_USERS = (select(*_VIEW_COLUMNS).select_from(Domain).outerjoin(User, User.domain_id == Domain.id)
          .where(Domain.name == bindparam("domain")).order_by(User.name))


def _lock_domain(s: Session, domain: Domain) -> None:
    """Serialise user creation per domain, so the duplicate and limit checks hold on PostgreSQL too
    (SQLite transactions are serialised already and ignore FOR UPDATE)."""
    s.execute(select(Domain.id).where(Domain.id == domain.id).with_for_update())


def _refuse_new_name(s: Session, domain: Domain, name: str) -> None:
    if s.execute(select(User.id).where(User.domain_id == domain.id, User.name == name)).first():
        raise MailsrvError(ResultCode.USER_EXISTS, f"The user {name}@{domain.name} already exists.")
    if s.execute(select(Alias.id).where(Alias.domain_id == domain.id, Alias.name == name)).first():
        raise MailsrvError(ResultCode.NAME_IN_USE, f"{name}@{domain.name} is already an alias.")
    if name_is_list(s, domain, name):
        raise MailsrvError(ResultCode.NAME_IN_USE, f"{name}@{domain.name} is already a mailing list.")
    if limit_reached(s, domain, User, "maxusers"):
        raise MailsrvError(ResultCode.LIMIT_REACHED, f"The domain {domain.name} has reached its user limit.")


def _refuse_primary_admin(domain: Domain, user: User, what: str) -> None:
    if user.name == domain.primary_admin:
        raise MailsrvError(ResultCode.PROTECTED_OBJECT,
                           f"{user.name}@{domain.name} is the domain's primary administrator and cannot be {what}.")



# --- the service ----------------------------------------------------------------------------------

class Users:
    def __init__(self, store: Store, disk: Disk, auth: Authenticator) -> None:
        self.store = store
        self.disk = disk
        self.auth = auth

    # Accounts

    def add(self, actor: Actor, raw_name: str | None, raw_password: str | None, raw_domain: str | None,
            first_name: str | None, last_name: str | None, is_domain_admin: bool, max_mailbox_mb: int = 0) -> None:
        """Create a user and its Maildir. `max_mailbox_mb` 0 means the domain's `maxmailboxsize`."""
        name = names.local_part(raw_name)
        domain_name = managed_domain(actor, raw_domain)  # before hashing: refuse outsiders cheaply
        user = User(name=name, password_hash=_password_hash(raw_password, name),
                    first_name=checked_text(first_name, "first name", NAME_LIMIT),
                    last_name=checked_text(last_name, "last name", NAME_LIMIT), is_domain_admin=is_domain_admin,
                    settings={**settings.defaults(settings.USER), "maxsize": _mailbox_mb(max_mailbox_mb)})
        with self.store.session() as s:
            domain_path = get_domain(s, domain_name).path
        # The session commits before the directory context ends, so a refused or failed commit
        # removes the new directory again.
        with self.disk.created(_user_dir(domain_path, name)) as staging, self.store.session() as s:
            domain = get_domain(s, domain_name)
            _lock_domain(s, domain)
            _refuse_new_name(s, domain, name)
            _refuse_mailbox_beyond_domain(actor, domain, user.settings["maxsize"], 0)
            # Under the domain lock and with the name free, a directory there is nobody's: a
            # winner of a race has committed before we get here, and is refused above.
            self.disk.set_aside(_user_dir(domain.path, name))
            user.domain_id = domain.id
            s.add(user)
            self.disk.create_maildir(staging / "Maildir")

    def delete(self, actor: Actor, raw_name: str | None, raw_domain: str | None) -> None:
        """Delete a user and its directory; it leaves its user groups. Aliases naming it are left
        alone: they may name others too, and delivery skips a target that no longer resolves."""
        domain_name = managed_domain(actor, raw_domain)
        name = name_in(raw_name, domain_name)

        def deletable(s: Session) -> User:
            domain = get_domain(s, domain_name)
            user = get_user(s, domain, name)
            _refuse_primary_admin(domain, user, "deleted")
            return user

        with self.store.session() as s:
            path = _user_dir(deletable(s).domain.path, name)
        with self.disk.removed(path), self.store.session() as s:
            user = deletable(s)
            for group in s.execute(select(UserGroup).where(UserGroup.domain_id == user.domain_id)).scalars():
                if name in group.members:
                    group.members = [member for member in group.members if member != name]
            s.delete(user)

    def update(self, actor: Actor, raw_address: str | None, new_password: str | None, first_name: str | None,
               last_name: str | None, is_domain_admin: bool, max_mailbox_mb: int | None = None) -> None:
        """Set a user's names, domain-admin flag and (UpdateUser2) mailbox size in MB.

        An empty `new_password` keeps the password: control panels send every field and leave this
        one blank to mean "unchanged". A user whose `lockpassword` setting is True keeps its
        password against domain administrators; only a system administrator may change it. The
        domain's primary administrator cannot lose the domain-admin flag.
        """
        name, _ = managed_address(actor, raw_address)
        password_hash = _password_hash(new_password, name) if new_password else None
        first = checked_text(first_name, "first name", NAME_LIMIT)
        last = checked_text(last_name, "last name", NAME_LIMIT)
        size = None if max_mailbox_mb is None else _mailbox_mb(max_mailbox_mb)
        with managed_user(self.store, actor, raw_address) as (_, user):
            if size is not None:
                _refuse_mailbox_beyond_domain(actor, user.domain, size, _user_settings(user)["maxsize"])
            if not is_domain_admin:
                _refuse_primary_admin(user.domain, user, "demoted")
            if password_hash is not None:
                if _user_settings(user)["lockpassword"]:
                    _require_lock_right(actor, user)
                user.password_hash = password_hash
                user.credential_epoch = User.credential_epoch + 1  # in SQL: concurrent changes both count
            user.first_name, user.last_name, user.is_domain_admin = first, last, is_domain_admin
            if size is not None:
                user.settings = {**user.settings, "maxsize": size}

    def get(self, actor: Actor, raw_address: str | None) -> UserView:
        name, domain = managed_address(actor, raw_address)
        rows = self.store.fetch_directory(_USER, {"name": name, "domain": domain})
        if not rows:
            raise domain_not_found(domain)
        if rows[0][0] is None:
            raise user_not_found(name, domain)
        return UserView(*rows[0])

    def list(self, actor: Actor, raw_domain: str | None) -> list[UserView]:
        domain = managed_domain(actor, raw_domain)
        rows = self.store.fetch_directory(_USERS, {"domain": domain})
        if not rows:
            raise domain_not_found(domain)
        return [UserView(*row) for row in rows if row[0] is not None]

    def authenticate(self, raw_user: str | None, raw_domain: str | None, password: str | None,
                     client_ip: str) -> None:
        """Check a mailbox user's own password (AuthenticateUser, LoginValidated); no admin login.

        Goes through Authenticator.login, so a guess counts toward the shared brute-force limit and
        a success is recorded as a login. `raw_user` may be a bare name (joined to `raw_domain`) or
        an address already; either way the login is an address, so a system administrator's name
        never authenticates here. Refused with LOGIN_FAILED / LOGIN_LOCKED."""
        user = (raw_user or "").strip()
        self.auth.login(user if "@" in user else f"{user}@{(raw_domain or '').strip()}", password, client_ip)

    # Settings

    def requested_settings(self, actor: Actor, raw_address: str | None, requested: Iterable[str | None]) -> list[str]:
        with managed_user(self.store, actor, raw_address) as (_, user):
            values = _user_settings(user)
        return settings.read_requested(settings.USER, values, requested, settings.USER_KEY_ALIASES)

    def set_requested_settings(self, actor: Actor, raw_address: str | None,
                               assignments: Iterable[str | None]) -> None:
        """Apply `key=value` user settings. Changing `lockpassword` takes a system administrator (a
        lock that domain administrators could lift would not protect against them), and so does a
        `maxsize` above the domain's `maxmailboxsize`."""
        changes = settings.parse_assignments(settings.USER, assignments, settings.USER_KEY_ALIASES)
        if changes.get("replytoaddress"):
            changes["replytoaddress"] = names.address_text(changes["replytoaddress"])
        with managed_user(self.store, actor, raw_address) as (_, user):
            current = _user_settings(user)
            settings.refuse_system_only(actor, settings.USER, current, changes)
            if "maxsize" in changes:
                _refuse_mailbox_beyond_domain(actor, user.domain, changes["maxsize"], current["maxsize"])
            user.settings = {**current, **changes}
