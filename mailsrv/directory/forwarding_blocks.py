"""Domain forwarding blocks: lists of domains whose mail is relayed to a target server.

Stored and served now; the incoming-gateway role routes by them (README, "Stored-only features")."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailsrv.core import names
from mailsrv.core.actor import Actor
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.store.db import Store
from mailsrv.store.models import DomainForwardingBlock


@dataclass(frozen=True)
class BlockView:
    id: int
    target: str
    domains: list[str]


def target_address(raw: str | None) -> str:
    """An IP address or host name, with an optional :port (`[IPv6]:port`), in normal form."""
    return str(names.server_address(raw, "target server (an IP address or host name, optionally :port)"))


def _domains(raw: Iterable[str | None] | None) -> list[str]:
    out: list[str] = []
    for item in raw or []:
        if item and item.strip() and (name := names.domain_name(item)) not in out:
            out.append(name)
    return out


class ForwardingBlocks:
    def __init__(self, store: Store) -> None:
        self.store = store

    @staticmethod
    def _find(s: Session, block_id: int | None = None, target: str | None = None) -> DomainForwardingBlock:
        query = select(DomainForwardingBlock)
        query = query.where(DomainForwardingBlock.id == block_id) if block_id is not None else \
            query.where(DomainForwardingBlock.target_address == target_address(target))
        block = s.execute(query).scalar_one_or_none()
        if block is None:
            raise MailsrvError(ResultCode.ITEM_NOT_FOUND, "No domain forwarding block matches "
                               + (f"id {block_id}." if block_id is not None else f"the target {target}."))
        return block

    def add(self, actor: Actor, target: str | None, domains: Iterable[str | None] | None) -> None:
        actor.require_system()
        address = target_address(target)
        with self.store.session() as s:
            if s.execute(select(DomainForwardingBlock.id)
                         .where(DomainForwardingBlock.target_address == address)).first():
                raise MailsrvError(ResultCode.NAME_IN_USE, f"A forwarding block for {address} already exists.")
            s.add(DomainForwardingBlock(target_address=address, domains=_domains(domains)))

    def set(self, actor: Actor, domains: Iterable[str | None] | None, block_id: int | None = None,
            target: str | None = None, new_target: str | None = None) -> None:
        actor.require_system()
        with self.store.session() as s:
            block = self._find(s, block_id, target)
            if new_target is not None:
                block.target_address = target_address(new_target)
            block.domains = _domains(domains)

    def delete(self, actor: Actor, block_id: int | None = None, target: str | None = None) -> None:
        actor.require_system()
        with self.store.session() as s:
            s.delete(self._find(s, block_id, target))

    def get(self, actor: Actor, block_id: int | None = None, target: str | None = None) -> BlockView:
        actor.require_system()
        with self.store.session() as s:
            block = self._find(s, block_id, target)
            return BlockView(block.id, block.target_address, list(block.domains))

    def list(self, actor: Actor) -> list[BlockView]:
        actor.require_system()
        with self.store.session() as s:
            rows = s.execute(select(DomainForwardingBlock).order_by(DomainForwardingBlock.id)).scalars()
            return [BlockView(b.id, b.target_address, list(b.domains)) for b in rows]
