"""What the mailbox-user services share: finding a user its caller may manage, and checking the
free text and names clients send (users, user_options, user_groups, mailbox_migrations,
user_activity)."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailsrv.core import names
from mailsrv.core.actor import Actor, Role
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.directory.domains import get_domain
from mailsrv.store.db import Store
from mailsrv.store.models import Domain, User

NAME_LIMIT = 128  # first/last names and group names (the columns' width)


# --- validation -----------------------------------------------------------------------------------

def checked_text(raw: str | None, what: str, limit: int, multiline: bool = False) -> str:
    """Free text a client sets. Control characters are refused because these values end up in
    headers and listings (a CR/LF in an auto-reply subject would inject headers)."""
    text = (raw or "") if multiline else (raw or "").strip()
    allowed = "\r\n\t" if multiline else ""
    if any((ord(c) < 32 or ord(c) == 127) and c not in allowed for c in text):
        raise MailsrvError(ResultCode.INVALID_ARGUMENT, f"The {what} must not contain control characters.")
    if len(text) > limit:
        raise MailsrvError(ResultCode.INVALID_ARGUMENT, f"The {what} is longer than {limit} characters.")
    return text


def required_text(raw: str | None, what: str, limit: int) -> str:
    text = checked_text(raw, what, limit)
    if not text:
        raise MailsrvError(ResultCode.INVALID_ARGUMENT, f"A {what} is required.")
    return text


def name_in(raw: str | None, domain: str) -> str:
    """A user name given bare or as an address of `domain` (clients send either)."""
    text = (raw or "").strip()
    if "@" not in text:
        return names.local_part(text)
    name, in_domain = names.address(text)
    if in_domain != domain:
        raise MailsrvError(ResultCode.INVALID_ADDRESS, f"'{raw}' is not an address of {domain}.")
    return name


def by_name(name: str, uid: str) -> tuple[str, str]:
    """Sort key for listings by display name: sorted here, not in SQL, so that SQLite's binary and
    PostgreSQL's locale collations give one order."""
    return name.casefold(), uid


# --- lookups and rights ---------------------------------------------------------------------------

def user_not_found(name: str, domain: str) -> MailsrvError:
    return MailsrvError(ResultCode.USER_NOT_FOUND, f"The user {name}@{domain} does not exist.")


def get_user(s: Session, domain: Domain, name: str) -> User:
    user = s.execute(select(User).where(User.domain_id == domain.id, User.name == name)).scalar_one_or_none()
    if user is None:
        raise user_not_found(name, domain.name)
    return user


def managed_address(actor: Actor, raw_address: str | None) -> tuple[str, str]:
    """(user name, domain) of an address, after checking that `actor` may manage that domain."""
    name, domain = names.address(raw_address)
    actor.require_domain(domain)
    return name, domain


def managed_domain(actor: Actor, raw_domain: str | None) -> str:
    domain = names.domain_name(raw_domain)
    actor.require_domain(domain)
    return domain


def admin_scope(actor: Actor) -> str | None:
    """The one domain a domain administrator sees, or None (every domain) for a system administrator."""
    if actor.role is Role.SYSTEM_ADMIN:
        actor.require_system()
        return None
    actor.require_domain(actor.domain)
    return actor.domain


@contextmanager
def managed_user(store: Store, actor: Actor, raw_address: str | None) -> Iterator[tuple[Session, User]]:
    """The addressed user inside a unit of work, after checking that `actor` may manage it."""
    name, domain = managed_address(actor, raw_address)
    with store.session() as s:
        yield s, get_user(s, get_domain(s, domain), name)
