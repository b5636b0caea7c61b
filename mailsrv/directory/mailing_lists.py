"""Mailing lists (svcMailListAdmin): the lists of a domain, their settings and their address lists
(subscribers, digest subscribers, poster whitelist, poster kill list), the domain's list command
address. Storage, validation, rights and limits for the service; `find` and `addresses` are the
list server's reads (no actor: SMTP asks on behalf of the mail, not of a login).

How callers name a list (settings-keys.md, "Mailing list"): the bare name (`team`) or the full
address (`team@example.com`), which must belong to the domain named beside it.

Address arrays: blank entries are skipped and duplicates (case-insensitive) kept once: control
panels send the lines of a text box, where both happen and neither means anything. Every address is
validated before anything is written; the first malformed one is named and nothing changes.
Replace-all keeps the rows of addresses that stay (their bounce count and disabled state: a panel
saving the list must not re-enable a bouncing subscriber) and writes the difference with bulk
statements, in one transaction.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from mailsrv.core import names, settings
from mailsrv.core.actor import Actor
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.core.settings import SettingKey
from mailsrv.directory.domains import domain_for, limit_reached
from mailsrv.store.db import Store
from mailsrv.store.models import (
    DIGEST,
    KILLLIST,
    SUBSCRIBER,
    WHITELIST,
    Alias,
    Domain,
    ListMember,
    MailingList,
    User,
    utcnow,
)

KINDS = (SUBSCRIBER, DIGEST, WHITELIST, KILLLIST)
_KIND_NAMES = {SUBSCRIBER: "subscriber list", DIGEST: "digest subscriber list", WHITELIST: "poster whitelist",
               KILLLIST: "poster kill list"}

# whocanpost: panels send both spellings of "moderator only".
ANYONE, SUBSCRIBERS_ONLY, MODERATOR = "anyone", "subscribersonly", "moderator"
# listtoaddress / listfromaddress / listreplytoaddress words; anything else is an address.
DEFAULT, LISTADDRESS, SUBSCRIBERADDRESS, POSTERADDRESS = "DEFAULT", "LISTADDRESS", "SUBSCRIBERADDRESS", "POSTERADDRESS"

_CHUNK = 5000  # rows per bulk statement: bounded memory and statement size on both databases


@dataclass(frozen=True)
class _LowerBool(SettingKey):
    """`replytolist` is read back by panels as `true`/`false` in lower case."""

    def format(self, value: Any) -> str:
        return "true" if value else "false"


@dataclass(frozen=True)
class _AddressOrWord(SettingKey):
    """One of `words` (any case, answered upper case) or an e-mail address; blank is the default."""
    words: tuple[str, ...] = ()

    def parse(self, raw: str | None, spelled: str) -> Any:
        text = (raw or "").strip()
        if not text:
            return self.default
        if text.upper() in self.words:
            return text.upper()
        try:
            return names.address_text(text)
        except MailsrvError:
            raise MailsrvError(ResultCode.INVALID_SETTING, f"Setting '{spelled}' must be one of "
                               f"{', '.join(self.words)} or an e-mail address.") from None


# The list keys of settings-keys.md. `moderator` and `description` are columns of the list; the rest
# are stored in its `settings`. Sizes: maxmessagesize in KB; 0 is unlimited for both caps.
LIST: dict[str, SettingKey] = {
    **settings.keys(
        description="", disabled=False, moderator="", password="", requirepassword=False,
        whocanpost=SettingKey("", str, SUBSCRIBERS_ONLY, {ANYONE: ("anyone",),
                                                          SUBSCRIBERS_ONLY: ("subscribersonly",),
                                                          MODERATOR: ("moderator", "moderatoronly")}),
        prependsubject=False, subject="", maxmessagesize=0, maxrecipients=0, digestmode=False,
        sendsubscribe=True, sendunsubscribe=True, allowunsubscribe=True, disablelistcommand=False,
        disablesubscribecommand=False),
    "replytolist": _LowerBool("replytolist", bool, False),
    "listtoaddress": _AddressOrWord("listtoaddress", str, DEFAULT, words=(DEFAULT, LISTADDRESS, SUBSCRIBERADDRESS)),
    "listfromaddress": _AddressOrWord("listfromaddress", str, POSTERADDRESS, words=(LISTADDRESS, POSTERADDRESS)),
    "listreplytoaddress": _AddressOrWord("listreplytoaddress", str, LISTADDRESS,
                                         words=(LISTADDRESS, POSTERADDRESS)),
}
_COLUMNS = ("moderator", "description")


@dataclass(frozen=True)
class ListView:
    """A list as the list server reads it: `settings` holds every LIST key (defaults filled in)."""
    id: int
    domain: str
    name: str
    settings: Mapping[str, Any]

    @property
    def address(self) -> str:
        return f"{self.name}@{self.domain}"

    @property
    def moderator(self) -> str:
        return str(self.settings["moderator"])


def _view(domain: Domain, row: MailingList) -> ListView:
    values = {**settings.defaults(LIST), **row.settings, "moderator": row.moderator, "description": row.description}
    return ListView(row.id, domain.name, row.name, values)


def list_name(domain: Domain, raw: str | None) -> str:
    """The bare list name from a bare name or the list's full address (which must be in `domain`)."""
    text = (raw or "").strip()
    if "@" in text:
        local, domain_part = names.address(text)
        if domain_part != domain.name:
            raise MailsrvError(ResultCode.INVALID_ARGUMENT,
                               f"The list {text} is not in the domain {domain.name}.")
        return local
    return names.local_part(text, "list name")


def _moderator(domain: Domain, raw: str | None) -> str:
    """Blank, or an address; a bare name is a user of the list's domain."""
    text = (raw or "").strip()
    if not text:
        return ""
    return names.address_text(text if "@" in text else f"{text}@{domain.name}")


def _get(s: Session, domain: Domain, raw_name: str | None) -> MailingList:
    name = list_name(domain, raw_name)
    row = s.execute(select(MailingList).where(MailingList.domain_id == domain.id, MailingList.name == name)
                    ).scalar_one_or_none()
    if row is None:
        raise MailsrvError(ResultCode.LIST_NOT_FOUND, f"The mailing list {name}@{domain.name} does not exist.")
    return row


def name_is_list(s: Session, domain: Domain, name: str) -> bool:
    """Whether `name` is a mailing list of `domain`: users and aliases may not take a list's name."""
    return s.execute(select(MailingList.id).where(MailingList.domain_id == domain.id,
                                                  MailingList.name == name)).first() is not None


def _lock_domain(s: Session, domain: Domain) -> None:
    """Serialise list creation per domain with user creation (users.py takes the same lock), so the
    name and limit checks hold on PostgreSQL too."""
    s.execute(select(Domain.id).where(Domain.id == domain.id).with_for_update())


class _Addresses:
    """Validates addresses, remembering domains already checked: a 100,000-line list has few."""

    def __init__(self) -> None:
        self._domains: dict[str, str] = {}

    def one(self, raw: str | None) -> str:
        text = (raw or "").strip()
        local, sep, domain = text.rpartition("@")
        if not sep or not local:
            raise MailsrvError(ResultCode.INVALID_ADDRESS, f"'{raw}' is not an e-mail address (user@domain).")
        try:
            local = names.local_part(local, "mailbox name")
            if domain not in self._domains:
                self._domains[domain] = names.domain_name(domain)
        except MailsrvError as exc:
            raise MailsrvError(ResultCode.INVALID_ADDRESS,
                               f"'{raw}' is not a valid e-mail address: {exc.message}") from None
        return f"{local}@{self._domains[domain]}"

    def many(self, items: Iterable[str | None] | None) -> list[str]:
        """Valid, de-duplicated, in the order given; blank entries skipped."""
        seen: dict[str, None] = {}
        for item in items or []:
            if item and item.strip():
                seen[self.one(item)] = None
        return list(seen)


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


def _postgresql(s: Session) -> Any:
    """The psycopg connection under the session's transaction, on PostgreSQL; else None."""
    if s.get_bind().dialect.name != "postgresql":
        return None
    return s.connection().connection.driver_connection


def _insert(s: Session, list_id: int, kind: str, addresses: list[str]) -> None:
    if (raw := _postgresql(s)) is not None:
        # COPY streams the rows: several times faster than multi-row INSERTs for a 100,000-address list.
        now = utcnow()
        with raw.cursor() as cursor, cursor.copy("COPY list_members (list_id, kind, address, bounces, disabled, "
                                                 "added_at) FROM STDIN") as copy:
            for address in addresses:
                copy.write_row((list_id, kind, address, 0, False, now))
        return
    for chunk in _chunks(addresses):
        s.execute(insert(ListMember), [{"list_id": list_id, "kind": kind, "address": a} for a in chunk])


def _delete(s: Session, list_id: int, kind: str, addresses: list[str]) -> None:
    if (raw := _postgresql(s)) is not None:
        # One statement with one array parameter, rather than thousands of bound IN parameters.
        with raw.cursor() as cursor:
            cursor.execute("DELETE FROM list_members WHERE list_id = %s AND kind = %s AND address = ANY(%s)",
                           (list_id, kind, addresses))
        return
    for chunk in _chunks(addresses):
        s.execute(delete(ListMember).where(ListMember.list_id == list_id, ListMember.kind == kind,
                                           ListMember.address.in_(chunk)))


def _current(s: Session, list_id: int, kind: str) -> set[str]:
    return set(s.execute(select(ListMember.address).where(ListMember.list_id == list_id,
                                                          ListMember.kind == kind)).scalars())


class MailingLists:
    def __init__(self, store: Store) -> None:
        self.store = store

    # --- lists -------------------------------------------------------------------------------
    def add(self, actor: Actor, raw_domain: str | None, raw_name: str | None, moderator: str | None,
            description: str | None) -> None:
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_domain)
            name = list_name(domain, raw_name)
            mod = _moderator(domain, moderator)
            _lock_domain(s, domain)
            if name_is_list(s, domain, name):
                raise MailsrvError(ResultCode.LIST_EXISTS, f"The mailing list {name}@{domain.name} already exists.")
            if s.execute(select(User.id).where(User.domain_id == domain.id, User.name == name)).first():
                raise MailsrvError(ResultCode.NAME_IN_USE, f"{name}@{domain.name} is already a user.")
            if s.execute(select(Alias.id).where(Alias.domain_id == domain.id, Alias.name == name)).first():
                raise MailsrvError(ResultCode.NAME_IN_USE, f"{name}@{domain.name} is already an alias.")
            if name == settings.value(settings.DOMAIN, domain.settings, "listcommandaddress"):
                raise MailsrvError(ResultCode.NAME_IN_USE, f"{name}@{domain.name} is the domain's list command address.")
            if limit_reached(s, domain, MailingList, "maxlists"):
                raise MailsrvError(ResultCode.LIMIT_REACHED,
                                   f"The domain {domain.name} has reached its mailing list limit.")
            s.add(MailingList(domain_id=domain.id, name=name, moderator=mod, description=description or "",
                              settings={}))

    def delete(self, actor: Actor, raw_domain: str | None, raw_name: str | None) -> None:
        with self.store.session() as s:
            s.delete(_get(s, domain_for(s, actor, raw_domain), raw_name))

    def delete_all(self, actor: Actor, raw_domain: str | None) -> None:
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_domain)
            s.execute(delete(MailingList).where(MailingList.domain_id == domain.id))

    def names(self, actor: Actor, raw_domain: str | None) -> list[str]:
        """Bare names: panels append `@domain` themselves."""
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_domain)
            return list(s.execute(select(MailingList.name).where(MailingList.domain_id == domain.id)
                                  .order_by(MailingList.name)).scalars())

    # --- settings ----------------------------------------------------------------------------
    def get_settings(self, actor: Actor, raw_domain: str | None, raw_name: str | None,
                     requested: Iterable[str | None]) -> list[str]:
        """`key=value` per requested key, the key as asked (trimmed); unknown keys refused by name."""
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_domain)
            return settings.read_requested(LIST, _view(domain, _get(s, domain, raw_name)).settings, requested)

    def set_settings(self, actor: Actor, raw_domain: str | None, raw_name: str | None,
                     assignments: Iterable[str | None]) -> None:
        """All or nothing: every `key=value` parses before any is stored."""
        changes = settings.parse_assignments(LIST, assignments)
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_domain)
            row = _get(s, domain, raw_name)
            if "moderator" in changes:
                row.moderator = _moderator(domain, changes["moderator"])
            if "description" in changes:
                row.description = changes["description"]
            rest = {k: v for k, v in changes.items() if k not in _COLUMNS}
            if rest:
                row.settings = {**row.settings, **rest}

    # --- address lists -----------------------------------------------------------------------
    def members(self, actor: Actor, raw_domain: str | None, raw_name: str | None, kind: str) -> list[str]:
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_domain)
            row = _get(s, domain, raw_name)
            return list(s.execute(select(ListMember.address).where(ListMember.list_id == row.id,
                                                                   ListMember.kind == kind)
                                  .order_by(ListMember.address)).scalars())

    def add_members(self, actor: Actor, raw_domain: str | None, raw_name: str | None, kind: str,
                    addresses: Iterable[str | None] | None) -> None:
        """Add addresses; ones already on the list stay as they are."""
        wanted = _Addresses().many(addresses)
        if not wanted:
            raise MailsrvError(ResultCode.INVALID_ADDRESS, "No address was given.")
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_domain)
            row = _get(s, domain, raw_name)
            present = _current(s, row.id, kind)
            _insert(s, row.id, kind, [a for a in wanted if a not in present])

    def remove_member(self, actor: Actor, raw_domain: str | None, raw_name: str | None, kind: str,
                      address: str | None) -> None:
        target = _Addresses().one(address)
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_domain)
            row = _get(s, domain, raw_name)
            gone = s.execute(delete(ListMember).where(ListMember.list_id == row.id, ListMember.kind == kind,
                                                      ListMember.address == target)).rowcount
            if not gone:
                raise MailsrvError(ResultCode.ITEM_NOT_FOUND,
                                   f"{target} is not on the {_KIND_NAMES[kind]} of {row.name}@{domain.name}.")

    def set_members(self, actor: Actor, raw_domain: str | None, raw_name: str | None, kind: str,
                    addresses: Iterable[str | None] | None) -> None:
        """Replace the whole address list (an empty array empties it)."""
        wanted = _Addresses().many(addresses)
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_domain)
            row = _get(s, domain, raw_name)
            present = _current(s, row.id, kind)
            keep = set(wanted)
            _delete(s, row.id, kind, sorted(present - keep))
            _insert(s, row.id, kind, [a for a in wanted if a not in present])

    # --- the domain's command address --------------------------------------------------------
    def command_address(self, actor: Actor, raw_domain: str | None) -> str:
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_domain)
            return str(settings.value(settings.DOMAIN, domain.settings, "listcommandaddress"))

    def set_command_address(self, actor: Actor, raw_domain: str | None, raw_address: str | None) -> None:
        """A local part of the domain (its full address accepted), not a user, alias or list."""
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_domain)
            text = (raw_address or "").strip()
            if "@" in text:
                local, domain_part = names.address(text)
                if domain_part != domain.name:
                    raise MailsrvError(ResultCode.INVALID_ARGUMENT,
                                       f"The command address {text} is not in the domain {domain.name}.")
            else:
                local = names.local_part(text, "list command address")
            for model, what in ((User, "a user"), (Alias, "an alias"), (MailingList, "a mailing list")):
                if s.execute(select(model.id).where(model.domain_id == domain.id, model.name == local)).first():
                    raise MailsrvError(ResultCode.NAME_IN_USE, f"{local}@{domain.name} is already {what}.")
            domain.settings = {**domain.settings, "listcommandaddress": local}

    # --- the list server's reads -------------------------------------------------------------
    def find(self, domain_name: str, name: str) -> ListView | None:
        """The list `name`@`domain_name` (both in normal form), or None."""
        with self.store.reading() as s:
            row = s.execute(select(MailingList, Domain).join(Domain, MailingList.domain_id == Domain.id)
                            .where(Domain.name == domain_name, MailingList.name == name)).first()
            return None if row is None else _view(row[1], row[0])

    def addresses(self, list_id: int, kind: str, *, enabled_only: bool = True) -> list[str]:
        """A list's addresses of one kind, in address order; disabled subscribers left out unless asked."""
        with self.store.reading() as s:
            query = select(ListMember.address).where(ListMember.list_id == list_id, ListMember.kind == kind)
            if enabled_only:
                query = query.where(ListMember.disabled.is_(False))
            return list(s.execute(query.order_by(ListMember.address)).scalars())

