"""Address aliases (including the domain catch-all) and domain aliases."""
from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailsrv.core import names
from mailsrv.core.actor import Actor, Role
from mailsrv.core.config import Config
from mailsrv.core.dns import prove_control
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.directory.address_lists import reserved_refusal
from mailsrv.directory.domains import domain_for, limit_reached, name_taken
from mailsrv.directory.mailing_lists import name_is_list
from mailsrv.store.db import Store
from mailsrv.store.models import Alias, Domain, DomainAlias, ServerSetting, User

# In the store, not the data directory: every node must derive the same TXT token.
_VERIFY_SECRET_KEY = "domainalias.verifysecret"

@dataclass(frozen=True)
class AliasView:
    name: str
    addresses: list[str]


@dataclass(frozen=True)
class DomainAliasView:
    name: str
    domain: str


def _targets(raw: Iterable[str | None] | None) -> list[str]:
    out = names.address_list(raw, "An alias")
    if not out:
        raise MailsrvError(ResultCode.INVALID_ARGUMENT, "An alias needs at least one target address.")
    return out


def _get(s: Session, domain: Domain, name: str) -> Alias:
    alias = s.execute(select(Alias).where(Alias.domain_id == domain.id, Alias.name == name)).scalar_one_or_none()
    if alias is None:
        raise MailsrvError(ResultCode.ALIAS_NOT_FOUND, f"The alias {name}@{domain.name} does not exist.")
    return alias


class Aliases:
    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, actor: Actor, raw_domain: str | None, raw_name: str | None,
            addresses: Iterable[str | None] | None) -> None:
        name = names.local_part(raw_name, "alias name")
        targets = _targets(addresses)
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_domain)
            if s.execute(select(Alias.id).where(Alias.domain_id == domain.id, Alias.name == name)).first():
                raise MailsrvError(ResultCode.ALIAS_EXISTS, f"The alias {name}@{domain.name} already exists.")
            if s.execute(select(User.id).where(User.domain_id == domain.id, User.name == name)).first():
                raise MailsrvError(ResultCode.NAME_IN_USE, f"{name}@{domain.name} is already a user.")
            if name_is_list(s, domain, name):
                raise MailsrvError(ResultCode.NAME_IN_USE, f"{name}@{domain.name} is already a mailing list.")
            if limit_reached(s, domain, Alias, "maxaliases"):
                raise MailsrvError(ResultCode.LIMIT_REACHED, f"The domain {domain.name} has reached its alias limit.")
            s.add(Alias(domain_id=domain.id, name=name, addresses=targets))

    def update(self, actor: Actor, raw_domain: str | None, raw_name: str | None,
               addresses: Iterable[str | None] | None) -> None:
        name = names.local_part(raw_name, "alias name")
        targets = _targets(addresses)
        with self.store.session() as s:
            _get(s, domain_for(s, actor, raw_domain), name).addresses = targets

    def delete(self, actor: Actor, raw_domain: str | None, raw_name: str | None) -> None:
        name = names.local_part(raw_name, "alias name")
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_domain)
            s.delete(_get(s, domain, name))
            if domain.settings.get("catchall") == name:
                domain.settings = {**domain.settings, "catchall": ""}

    def get(self, actor: Actor, raw_domain: str | None, raw_name: str | None) -> AliasView:
        name = names.local_part(raw_name, "alias name")
        with self.store.session() as s:
            alias = _get(s, domain_for(s, actor, raw_domain), name)
            return AliasView(alias.name, list(alias.addresses))

    def list(self, actor: Actor, raw_domain: str | None) -> list[AliasView]:
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_domain)
            rows = s.execute(select(Alias).where(Alias.domain_id == domain.id).order_by(Alias.name)).scalars()
            return [AliasView(a.name, list(a.addresses)) for a in rows]

    def set_catch_all(self, actor: Actor, raw_domain: str | None, raw_name: str | None) -> None:
        """Make an existing alias the catch-all; a blank name clears it."""
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_domain)
            name = ""
            if (raw_name or "").strip():
                name = _get(s, domain, names.local_part(raw_name, "alias name")).name
            domain.settings = {**domain.settings, "catchall": name}


class DomainAliases:
    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config

    def _verify_secret(self) -> str:
        with self.store.session() as s:
            row = s.get(ServerSetting, _VERIFY_SECRET_KEY)
            if row is not None:
                return str(row.value)
        try:
            with self.store.session() as s:
                s.add(ServerSetting(key=_VERIFY_SECRET_KEY, value=secrets.token_hex(32)))
        except IntegrityError:
            pass  # another node made it first: theirs is the one
        with self.store.session() as s:
            return str(s.get(ServerSetting, _VERIFY_SECRET_KEY).value)

    def add(self, actor: Actor, raw_domain: str | None, raw_alias: str | None, check_mx: bool) -> None:
        """Make `raw_alias` another name of a domain. Only a system administrator may skip the DNS
        check (AddDomainAliasWithoutMxCheck): anyone else must show control of the alias's DNS
        (`prove_control`), or a domain administrator could make any domain local and receive the
        mail this server's users send there."""
        alias_name = names.domain_name(raw_alias)
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_domain)
            domain_name = domain.name
            if name_taken(s, alias_name):
                raise MailsrvError(ResultCode.DOMAIN_ALIAS_EXISTS, f"{alias_name} is already a domain or domain alias.")
            reserved_refusal(s, alias_name)  # an alias would make the name ours as much as a domain
            if limit_reached(s, domain, DomainAlias, "maxdomainaliases"):
                raise MailsrvError(ResultCode.LIMIT_REACHED,
                                   f"The domain {domain.name} has reached its domain alias limit.")
        # Outside the transaction: a DNS lookup may take seconds and must not hold database locks.
        if check_mx or actor.role is not Role.SYSTEM_ADMIN:
            prove_control(domain_name, alias_name, self._verify_secret(), self.config.dns.nameservers)
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_domain)
            if name_taken(s, alias_name):
                raise MailsrvError(ResultCode.DOMAIN_ALIAS_EXISTS, f"{alias_name} is already a domain or domain alias.")
            s.add(DomainAlias(domain_id=domain.id, name=alias_name))

    def delete(self, actor: Actor, raw_domain: str | None, raw_alias: str | None) -> None:
        alias_name = names.domain_name(raw_alias)
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_domain)
            row = s.execute(select(DomainAlias).where(DomainAlias.domain_id == domain.id,
                                                      DomainAlias.name == alias_name)).scalar_one_or_none()
            if row is None:
                raise MailsrvError(ResultCode.DOMAIN_ALIAS_NOT_FOUND,
                                   f"{alias_name} is not a domain alias of {domain.name}.")
            s.delete(row)

    def list(self, actor: Actor, raw_domain: str | None) -> list[str]:
        with self.store.session() as s:
            domain = domain_for(s, actor, raw_domain)
            return list(s.execute(select(DomainAlias.name).where(DomainAlias.domain_id == domain.id)
                                  .order_by(DomainAlias.name)).scalars())

    def list_all(self, actor: Actor) -> list[DomainAliasView]:
        actor.require_system()
        with self.store.session() as s:
            rows = s.execute(select(DomainAlias.name, Domain.name).join(Domain)
                             .order_by(Domain.name, DomainAlias.name)).all()
            return [DomainAliasView(alias, domain) for alias, domain in rows]
