"""Mailbox users: accounts and their Maildirs, settings, forwarding, auto-responders, user groups,
RSS feeds, ActiveSync flags, mailbox migrations, quotas, traffic and login history (svcUserAdmin).

Rights: a system administrator manages every user, a domain administrator the users of its own
domain; other users may only check their own credentials (`authenticate`). ActiveSync, RSS feeds and
migrations are stored only; forwarding, auto-responders and mailbox sizes are enforced by the mail
engine (README, "Stored-only features").
"""
from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from mailsrv.core import names, settings
from mailsrv.core.actor import Actor, Role
from mailsrv.core.clock import as_utc
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.directory import passwords
from mailsrv.directory.auth import Authenticator
from mailsrv.directory.domains import domain_for, get_domain, limit_reached
from mailsrv.directory.stats import Traffic, day_range, traffic_sums
from mailsrv.mailstore.disk import Disk
from mailsrv.mailstore.disk_usage import used_bytes
from mailsrv.store.db import Store
from mailsrv.store.models import Alias, Domain, MigrationJob, RssFeed, TrafficDaily, User, UserGroup, UserLogin

UTC = dt.timezone.utc
# .NET's DateTime.MinValue (0001-01-01T00:00:00): what SmarterMail shows for "never logged in".
NEVER = dt.datetime.min.replace(tzinfo=UTC)
NAME_LIMIT = 128  # first/last names and group names (the columns' width)
SUBJECT_LIMIT = 998  # one header line (RFC 5322)
TEXT_LIMIT = 100_000  # auto-responder bodies
URL_LIMIT = 2048
PARAMETER_LIMIT = 4000  # one migration parameter value, as one setting value
MIGRATION_EMAIL_KEY = "emailaddress"
MAX_MIGRATION_PARAMETERS = 100
# UpdateUserForwardingInfo's one string may carry several addresses.
_FORWARD_SEPARATORS = re.compile(r"[,;]")


@dataclass(frozen=True)
class UserView:
    name: str
    first_name: str
    last_name: str
    is_domain_admin: bool


@dataclass(frozen=True)
class Forwarding:
    delete_on_forward: bool
    addresses: list[str]


@dataclass(frozen=True)
class AutoResponse:
    enabled: bool
    subject: str
    body: str


@dataclass(frozen=True)
class GroupView:
    id: str
    name: str
    members: list[str]  # user names (local parts) of the group's domain


@dataclass(frozen=True)
class FeedView:
    uid: str
    name: str
    url: str
    folder: str


@dataclass(frozen=True)
class Feeds:
    feeds: list[FeedView]
    folders: list[str]  # the distinct non-empty folders the feeds file into


@dataclass(frozen=True)
class MigrationView:
    id: str
    email_address: str
    status: str


@dataclass(frozen=True)
class Quota:
    user: str
    max_bytes: int  # 0 = unlimited
    used_bytes: int


@dataclass(frozen=True)
class LastLogin:
    address: str
    at: dt.datetime  # NEVER when the user has not logged in


@dataclass(frozen=True)
class LoginTimes:
    by_protocol: list[tuple[str, dt.datetime]]
    by_user: list[LastLogin]


# --- validation -----------------------------------------------------------------------------------

def _text(raw: str | None, what: str, limit: int, multiline: bool = False) -> str:
    """Free text a client sets. Control characters are refused because these values end up in
    headers and listings (a CR/LF in an auto-reply subject would inject headers)."""
    text = (raw or "") if multiline else (raw or "").strip()
    allowed = "\r\n\t" if multiline else ""
    if any((ord(c) < 32 or ord(c) == 127) and c not in allowed for c in text):
        raise MailsrvError(ResultCode.INVALID_ARGUMENT, f"The {what} must not contain control characters.")
    if len(text) > limit:
        raise MailsrvError(ResultCode.INVALID_ARGUMENT, f"The {what} is longer than {limit} characters.")
    return text


def _required_text(raw: str | None, what: str, limit: int) -> str:
    text = _text(raw, what, limit)
    if not text:
        raise MailsrvError(ResultCode.INVALID_ARGUMENT, f"A {what} is required.")
    return text


def _mailbox_mb(value: int) -> int:
    if not 0 <= value <= settings.INT32_MAX:
        raise MailsrvError(ResultCode.VALUE_OUT_OF_RANGE,
                           f"The mailbox size must be from 0 (the domain's limit) to {settings.INT32_MAX} MB.")
    return value


def _password_hash(raw: str | None, user_name: str) -> str:
    return passwords.hash_password(passwords.check_rules(raw, user_name))


def _name_in(raw: str | None, domain: str) -> str:
    """A user name given bare or as an address of `domain` (clients send either)."""
    text = (raw or "").strip()
    if "@" not in text:
        return names.local_part(text)
    name, in_domain = names.address(text)
    if in_domain != domain:
        raise MailsrvError(ResultCode.INVALID_ADDRESS, f"'{raw}' is not an address of {domain}.")
    return name


def _forward_targets(raw: str | None) -> list[str]:
    """The addresses of a forwarding string (`,` or `;` separated), validated and de-duplicated."""
    return names.address_list(_FORWARD_SEPARATORS.split(raw or ""), "Forwarding")


def _feed_url(raw: str | None) -> str:
    text = (raw or "").strip()
    try:
        parts = urlsplit(text)
        valid = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. an unbalanced [ in the host
        valid = False
    if not valid or len(text) > URL_LIMIT or any(c.isspace() or ord(c) < 32 for c in text):
        raise MailsrvError(ResultCode.INVALID_ARGUMENT, f"'{raw}' is not an http or https URL.")
    return text


def _migration_parameters(items: Iterable[str | None]) -> dict[str, str]:
    """`key=value` strings as a mapping with lower-case keys; keys may not repeat."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = (item or "").partition("=")
        key = key.strip().lower()
        if not sep or not key:
            raise MailsrvError(ResultCode.INVALID_SETTING, f"'{item}' is not a key=value parameter.")
        if key in out:
            raise MailsrvError(ResultCode.INVALID_SETTING, f"The parameter '{key}' is given more than once.")
        out[key] = _text(value, f"parameter '{key}'", PARAMETER_LIMIT)
    if len(out) > MAX_MIGRATION_PARAMETERS:
        raise MailsrvError(ResultCode.VALUE_OUT_OF_RANGE,
                           f"A migration takes at most {MAX_MIGRATION_PARAMETERS} parameters.")
    return out


# --- lookups --------------------------------------------------------------------------------------

def get_user(s: Session, domain: Domain, name: str) -> User:
    user = s.execute(select(User).where(User.domain_id == domain.id, User.name == name)).scalar_one_or_none()
    if user is None:
        raise MailsrvError(ResultCode.USER_NOT_FOUND, f"The user {name}@{domain.name} does not exist.")
    return user


def _managed_address(actor: Actor, raw_address: str | None) -> tuple[str, str]:
    """(user name, domain) of an address, after checking that `actor` may manage that domain."""
    name, domain = names.address(raw_address)
    actor.require_domain(domain)
    return name, domain


def _managed_domain(actor: Actor, raw_domain: str | None) -> str:
    domain = names.domain_name(raw_domain)
    actor.require_domain(domain)
    return domain


def _scope(actor: Actor) -> str | None:
    """The one domain a domain administrator sees, or None (every domain) for a system administrator."""
    if actor.role is Role.SYSTEM_ADMIN:
        actor.require_system()
        return None
    actor.require_domain(actor.domain)
    return actor.domain


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
    limit = domain.settings.get("maxmailboxsize", settings.DOMAIN["maxmailboxsize"].default)
    if actor.role is not Role.SYSTEM_ADMIN and limit and size_mb > limit and size_mb != current_mb:
        raise MailsrvError(ResultCode.PERMISSION_DENIED,
                           f"Permission denied: mailboxes of {domain.name} may hold at most {limit} MB; only a "
                           "system administrator may set 'maxsize' above the domain's maxmailboxsize.")


def _user_settings(user: User) -> dict[str, Any]:
    return {**settings.defaults(settings.USER), **user.settings}


def _user_dir(domain_path: str | Path, name: str) -> Path:
    return Disk.maildir(domain_path, name).parent


def _view(user: User) -> UserView:
    return UserView(user.name, user.first_name, user.last_name, user.is_domain_admin)


def _group(s: Session, domain: Domain, raw_id: str | None) -> UserGroup:
    group = s.get(UserGroup, (raw_id or "").strip().lower())
    if group is None or group.domain_id != domain.id:
        raise MailsrvError(ResultCode.GROUP_NOT_FOUND, f"The user group '{raw_id}' does not exist in {domain.name}.")
    return group


def _group_view(group: UserGroup) -> GroupView:
    return GroupView(group.id, group.name, list(group.members))


def _by_name(name: str, uid: str) -> tuple[str, str]:
    """Sort key for listings by display name: sorted here, not in SQL, so that SQLite's binary and
    PostgreSQL's locale collations give one order."""
    return name.casefold(), uid


def _domain_groups(s: Session, domain: Domain) -> list[GroupView]:
    rows = s.execute(select(UserGroup).where(UserGroup.domain_id == domain.id)).scalars()
    return sorted((_group_view(g) for g in rows), key=lambda g: _by_name(g.name, g.id))


def _group_name(s: Session, domain: Domain, raw: str | None, own_id: str = "") -> str:
    """A group name unused by the domain's other groups (clients find groups by name: ids are not
    returned by AddUserGroup)."""
    name = _required_text(raw, "group name", NAME_LIMIT)
    clash = s.execute(select(UserGroup.id).where(UserGroup.domain_id == domain.id, UserGroup.id != own_id,
                                                 func.lower(UserGroup.name) == name.lower())).first()
    if clash:
        raise MailsrvError(ResultCode.NAME_IN_USE, f"The domain {domain.name} already has a user group named {name}.")
    return name


def _group_members(s: Session, domain: Domain, raw_names: Iterable[str | None]) -> list[str]:
    """Existing users of `domain`, by name, de-duplicated in the order given (blank entries skipped)."""
    wanted: list[str] = []
    for raw in raw_names:
        if raw is not None and raw.strip() and (name := _name_in(raw, domain.name)) not in wanted:
            wanted.append(name)
    found = set(s.execute(select(User.name).where(User.domain_id == domain.id, User.name.in_(wanted))).scalars())
    if missing := [name for name in wanted if name not in found]:
        raise MailsrvError(ResultCode.USER_NOT_FOUND, f"No such user in {domain.name}: {', '.join(missing)}.")
    return wanted


def _lock_domain(s: Session, domain: Domain) -> None:
    """Serialise user creation per domain, so the duplicate and limit checks hold on PostgreSQL too
    (SQLite transactions are serialised already and ignore FOR UPDATE)."""
    s.execute(select(Domain.id).where(Domain.id == domain.id).with_for_update())


def _refuse_new_name(s: Session, domain: Domain, name: str) -> None:
    if s.execute(select(User.id).where(User.domain_id == domain.id, User.name == name)).first():
        raise MailsrvError(ResultCode.USER_EXISTS, f"The user {name}@{domain.name} already exists.")
    if s.execute(select(Alias.id).where(Alias.domain_id == domain.id, Alias.name == name)).first():
        raise MailsrvError(ResultCode.NAME_IN_USE, f"{name}@{domain.name} is already an alias.")
    if limit_reached(s, domain, User, "maxusers"):
        raise MailsrvError(ResultCode.LIMIT_REACHED, f"The domain {domain.name} has reached its user limit.")


def _refuse_primary_admin(domain: Domain, user: User, what: str) -> None:
    if user.name == domain.primary_admin:
        raise MailsrvError(ResultCode.PROTECTED_OBJECT,
                           f"{user.name}@{domain.name} is the domain's primary administrator and cannot be {what}.")


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), UTC)


def _login_window(start: dt.datetime | None, end: dt.datetime | None) -> list[ColumnElement[bool]]:
    """Logins inside whole UTC days from `start` to `end`, both included (as statistics count);
    None leaves that side open."""
    first, last = day_range(start, end)
    window = [UserLogin.at >= _midnight(first)] if first > dt.date.min else []
    if last < dt.date.max:
        window.append(UserLogin.at < _midnight(last + dt.timedelta(days=1)))
    return window


def _migration_view(job: MigrationJob) -> MigrationView:
    email = next((p.partition("=")[2] for p in job.parameters if p.startswith(MIGRATION_EMAIL_KEY + "=")), "")
    return MigrationView(job.id, email, job.status)


# --- the service ----------------------------------------------------------------------------------

class Users:
    def __init__(self, store: Store, disk: Disk, auth: Authenticator) -> None:
        self.store = store
        self.disk = disk
        self.auth = auth

    @contextmanager
    def _user(self, actor: Actor, raw_address: str | None) -> Iterator[tuple[Session, User]]:
        """The addressed user inside a unit of work, after checking that `actor` may manage it."""
        name, domain = _managed_address(actor, raw_address)
        with self.store.session() as s:
            yield s, get_user(s, get_domain(s, domain), name)

    # Accounts

    def add(self, actor: Actor, raw_name: str | None, raw_password: str | None, raw_domain: str | None,
            first_name: str | None, last_name: str | None, is_domain_admin: bool, max_mailbox_mb: int = 0) -> None:
        """Create a user and its Maildir. `max_mailbox_mb` 0 means the domain's `maxmailboxsize`."""
        name = names.local_part(raw_name)
        domain_name = _managed_domain(actor, raw_domain)  # before hashing: refuse outsiders cheaply
        user = User(name=name, password_hash=_password_hash(raw_password, name),
                    first_name=_text(first_name, "first name", NAME_LIMIT),
                    last_name=_text(last_name, "last name", NAME_LIMIT), is_domain_admin=is_domain_admin,
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
        domain_name = _managed_domain(actor, raw_domain)
        name = _name_in(raw_name, domain_name)

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
        name, _ = _managed_address(actor, raw_address)
        password_hash = _password_hash(new_password, name) if new_password else None
        first, last = _text(first_name, "first name", NAME_LIMIT), _text(last_name, "last name", NAME_LIMIT)
        size = None if max_mailbox_mb is None else _mailbox_mb(max_mailbox_mb)
        with self._user(actor, raw_address) as (_, user):
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
        with self._user(actor, raw_address) as (_, user):
            return _view(user)

    def list(self, actor: Actor, raw_domain: str | None) -> list[UserView]:
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_domain)
            return [_view(u) for u in s.execute(select(User).where(User.domain_id == domain.id)
                                                .order_by(User.name)).scalars()]

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
        with self._user(actor, raw_address) as (_, user):
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
        with self._user(actor, raw_address) as (_, user):
            current = _user_settings(user)
            settings.refuse_system_only(actor, settings.USER, current, changes)
            if "maxsize" in changes:
                _refuse_mailbox_beyond_domain(actor, user.domain, changes["maxsize"], current["maxsize"])
            user.settings = {**current, **changes}

    # Forwarding, auto-responder, ActiveSync

    def forwarding(self, actor: Actor, raw_address: str | None) -> Forwarding:
        with self._user(actor, raw_address) as (_, user):
            return Forwarding(user.delete_on_forward, list(user.forwarding_addresses))

    def set_forwarding(self, actor: Actor, raw_address: str | None, delete_on_forward: bool,
                       raw_addresses: str | None) -> None:
        """Forward to the `,`/`;` separated addresses (blank: stop forwarding). Delete-on-forward
        only takes effect while there is somewhere to forward to."""
        targets = _forward_targets(raw_addresses)
        with self._user(actor, raw_address) as (_, user):
            user.forwarding_addresses, user.delete_on_forward = targets, delete_on_forward

    def auto_response(self, actor: Actor, raw_address: str | None) -> AutoResponse:
        with self._user(actor, raw_address) as (_, user):
            return AutoResponse(user.autoresponder_enabled, user.autoresponder_subject, user.autoresponder_body)

    def set_auto_response(self, actor: Actor, raw_address: str | None, enabled: bool, subject: str | None,
                          body: str | None) -> None:
        subject_text = _text(subject, "auto-responder subject", SUBJECT_LIMIT)
        body_text = _text(body, "auto-responder body", TEXT_LIMIT, multiline=True)
        with self._user(actor, raw_address) as (_, user):
            user.autoresponder_enabled = enabled
            user.autoresponder_subject, user.autoresponder_body = subject_text, body_text

    def activesync_enabled(self, actor: Actor, raw_address: str | None) -> bool:
        with self._user(actor, raw_address) as (_, user):
            return user.activesync_enabled

    def set_activesync(self, actor: Actor, raw_address: str | None, enabled: bool) -> None:
        with self._user(actor, raw_address) as (_, user):
            user.activesync_enabled = enabled

    # RSS feeds

    def add_feed(self, actor: Actor, raw_address: str | None, raw_url: str | None, raw_name: str | None,
                 raw_folder: str | None) -> str:
        """Subscribe a user to a feed; a blank name is the URL. The new feed's uid."""
        url = _feed_url(raw_url)
        feed = RssFeed(id=str(uuid.uuid4()), url=url, name=_text(raw_name, "feed name", NAME_LIMIT) or url,
                       folder=_text(raw_folder, "folder name", NAME_LIMIT))
        with self._user(actor, raw_address) as (s, user):
            feed.user_id = user.id
            s.add(feed)
        return feed.id

    def delete_feed(self, actor: Actor, raw_address: str | None, raw_uid: str | None) -> None:
        with self._user(actor, raw_address) as (s, user):
            feed = s.get(RssFeed, (raw_uid or "").strip().lower())
            if feed is None or feed.user_id != user.id:
                raise MailsrvError(ResultCode.ITEM_NOT_FOUND,
                                   f"{user.name}@{user.domain.name} has no RSS feed '{raw_uid}'.")
            s.delete(feed)

    def feeds(self, actor: Actor, raw_address: str | None) -> Feeds:
        with self._user(actor, raw_address) as (s, user):
            rows = s.execute(select(RssFeed).where(RssFeed.user_id == user.id)).scalars()
            feeds = sorted((FeedView(f.id, f.name, f.url, f.folder) for f in rows),
                           key=lambda f: _by_name(f.name, f.uid))
        return Feeds(feeds, sorted({f.folder for f in feeds if f.folder}, key=str.casefold))

    # User groups

    def add_group(self, actor: Actor, raw_domain: str | None, raw_name: str | None,
                  members: Iterable[str | None]) -> str:
        """Create a group of existing users of the domain; the new group's id."""
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_domain)
            group = UserGroup(id=str(uuid.uuid4()), domain_id=domain.id, name=_group_name(s, domain, raw_name),
                              members=_group_members(s, domain, members))
            s.add(group)
            return group.id

    def update_group(self, actor: Actor, raw_domain: str | None, raw_id: str | None, raw_name: str | None,
                     members: Iterable[str | None]) -> None:
        """Rename a group and replace its members."""
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_domain)
            group = _group(s, domain, raw_id)
            group.name = _group_name(s, domain, raw_name, own_id=group.id)
            group.members = _group_members(s, domain, members)

    def delete_group(self, actor: Actor, raw_domain: str | None, raw_id: str | None) -> None:
        with self.store.session() as s:
            s.delete(_group(s, domain_for(s, actor, raw_domain), raw_id))

    def group(self, actor: Actor, raw_domain: str | None, raw_id: str | None) -> GroupView:
        with self.store.session() as s:
            return _group_view(_group(s, domain_for(s, actor, raw_domain), raw_id))

    def groups(self, actor: Actor, raw_domain: str | None) -> list[GroupView]:
        with self.store.session() as s:
            return _domain_groups(s, domain_for(s, actor, raw_domain))

    def member_groups(self, actor: Actor, raw_domain: str | None, raw_user: str | None) -> list[GroupView]:
        """The groups of the domain that an existing user is in."""
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_domain)
            member = get_user(s, domain, _name_in(raw_user, domain.name)).name
            return [g for g in _domain_groups(s, domain) if member in g.members]

    # Mailbox migrations (stored only)

    def queue_migration(self, actor: Actor, parameters: Iterable[str | None]) -> MigrationView:
        """Queue an import described by `key=value` parameters (keys stored in lower case).
        `EmailAddress=` names the existing mailbox to import into; the caller must manage it."""
        values = _migration_parameters(parameters)
        if not values.get(MIGRATION_EMAIL_KEY):
            raise MailsrvError(ResultCode.INVALID_ARGUMENT,
                               "A migration needs EmailAddress=, the mailbox to import into.")
        with self._user(actor, values[MIGRATION_EMAIL_KEY]) as (s, user):
            values[MIGRATION_EMAIL_KEY] = f"{user.name}@{user.domain.name}"
            job = MigrationJob(id=str(uuid.uuid4()), parameters=[f"{k}={v}" for k, v in values.items()],
                               status="Queued")
            s.add(job)
        return _migration_view(job)

    def migrations(self, actor: Actor) -> list[MigrationView]:
        """Every job for a system administrator; a domain administrator's own domain's jobs."""
        scope = _scope(actor)
        with self.store.session() as s:
            rows = s.execute(select(MigrationJob).order_by(MigrationJob.created_at, MigrationJob.id)).scalars()
            jobs = [_migration_view(j) for j in rows]
        return [j for j in jobs if scope is None or j.email_address.endswith("@" + scope)]

    def remove_migration(self, actor: Actor, raw_id: str | None) -> None:
        with self.store.session() as s:
            job = s.get(MigrationJob, (raw_id or "").strip().lower())
            if job is None:
                raise MailsrvError(ResultCode.ITEM_NOT_FOUND, f"No queued migration has the id '{raw_id}'.")
            _managed_address(actor, _migration_view(job).email_address)
            s.delete(job)

    # Quotas, traffic, logins

    def quotas(self, actor: Actor, raw_domain: str | None) -> list[Quota]:
        """Per user: the effective limit (its `maxsize`, else the domain's `maxmailboxsize`; 0 is
        unlimited) and the bytes in its Maildir."""
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_domain)
            rows = s.execute(select(User.name, User.settings).where(User.domain_id == domain.id)
                             .order_by(User.name)).all()
            path, domain_settings = domain.path, domain.settings
        return [Quota(name, settings.mailbox_limit_bytes(user_settings, domain_settings),
                      used_bytes(Disk.maildir(path, name))) for name, user_settings in rows]

    def traffic(self, actor: Actor, raw_address: str | None, start: dt.datetime | None,
                end: dt.datetime | None) -> Traffic:
        """A user's traffic over whole UTC days from `start` to `end` (both included) and the size
        of its Maildir now."""
        first, last = day_range(start, end)
        with self._user(actor, raw_address) as (s, user):
            sums = s.execute(select(*traffic_sums())
                             .where(TrafficDaily.domain_id == user.domain_id, TrafficDaily.user_id == user.id,
                                    TrafficDaily.day.between(first, last))).one()
            maildir = Disk.maildir(user.domain.path, user.name)
        return Traffic(*map(int, sums), bytes_size=used_bytes(maildir))

    def inactive(self, actor: Actor, since: dt.datetime) -> list[LastLogin]:
        """Users whose newest login (any protocol) is before `since`, or who never logged in (NEVER):
        every domain's for a system administrator, its own domain's for a domain administrator."""
        scope = _scope(actor)
        newest = (select(UserLogin.user_id, func.max(UserLogin.at).label("at"))
                  .group_by(UserLogin.user_id).subquery())
        query = (select(User.name, Domain.name, newest.c.at).join(Domain)
                 .outerjoin(newest, newest.c.user_id == User.id)
                 .where(or_(newest.c.at.is_(None), newest.c.at < as_utc(since)))
                 .order_by(Domain.name, User.name))
        if scope is not None:
            query = query.where(Domain.name == scope)
        with self.store.session() as s:
            rows = s.execute(query).all()
        return [LastLogin(f"{user}@{domain}", at or NEVER) for user, domain, at in rows]

    def login_times(self, actor: Actor, raw_target: str | None, start: dt.datetime | None,
                    end: dt.datetime | None) -> LoginTimes:
        """Logins inside whole UTC days from `start` to `end` (None: open) of one user (`raw_target`
        an address) or of every user of a domain (a bare domain name): the newest per protocol
        across them, and the newest per user (users without a login in the window are left out)."""
        target = (raw_target or "").strip()
        with self.store.session() as s:
            if "@" in target:
                name, domain_name = _managed_address(actor, target)
                whose = User.id == get_user(s, get_domain(s, domain_name), name).id
            else:
                whose = User.domain_id == domain_for(s, actor, target).id
            rows = s.execute(select(User.name, Domain.name, UserLogin.protocol, UserLogin.at)
                             .join(User, User.id == UserLogin.user_id).join(Domain, Domain.id == User.domain_id)
                             .where(whose, *_login_window(start, end))).all()
        by_protocol: dict[str, dt.datetime] = {}
        by_user: dict[str, dt.datetime] = {}
        for user, domain, protocol, at in rows:
            address = f"{user}@{domain}"
            by_protocol[protocol] = max(at, by_protocol.get(protocol, at))
            by_user[address] = max(at, by_user.get(address, at))
        return LoginTimes(sorted(by_protocol.items()), [LastLogin(a, t) for a, t in sorted(by_user.items())])
