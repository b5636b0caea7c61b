"""The outgoing gateways (svcServerAdmin AddGateway, AddSmarterMailGateway, UpdateGateway,
RemoveGateway, GetGateway, ListGateways): the servers remote mail leaves through when the General
Setting `gatewayenabled` is on (mailsrv.mta.outgoing_gateways routes it; `gatewaybalance` shares it).

A gateway's address is a host name or IP with an optional port (`host`, `host:port`, `[IPv6]:port`;
`[delivery] remote_port` when none, as for an incoming gateway's primary), stored normalised (as
GetGateway returns it) and unique. A SmarterMail (or mailsrv) gateway also names
the URL of its web services and a login there: LeastQueued asks it for its spool length. Every
change is one transaction that raises the directory generation (migration 0014's triggers), so
each node's router sees it at its next message. System administrators only; the password is
returned by GetGateway as the contract's GatewayResult has it (the caller is a system administrator).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from mailsrv.core import names
from mailsrv.core.actor import Actor
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.core.names import ServerAddress
from mailsrv.store.db import Store
from mailsrv.store.models import OutgoingGateway

MAX_FIELD = 1000
RawLogin = tuple[str | None, str | None, str | None]  # smUrl, smUserName, smPassword as the caller gave them


@dataclass(frozen=True)
class SmLogin:
    """Where and as whom to ask a SmarterMail/mailsrv gateway's svcServerAdmin."""
    url: str
    username: str
    password: str


@dataclass(frozen=True)
class Gateway:
    guid: str
    address: str  # as stored: what GetGateway returns
    host: str
    port: int | None  # None: none given, `[delivery] remote_port`
    enabled: bool
    sm: SmLogin | None  # None: not a SmarterMail server


def parse_address(raw: str | None) -> ServerAddress:
    """`host`, `host:port`, `IP`, `[IPv6]` or `[IPv6]:port` (`names.server_address`); INVALID_ARGUMENT otherwise."""
    return names.server_address(raw, "gateway address")


def _field(raw: str | None, what: str) -> str:
    text = (raw or "").strip()
    if len(text) > MAX_FIELD or any(ord(c) < 32 for c in text):
        raise MailsrvError(ResultCode.INVALID_ARGUMENT, f"The {what} is one line of at most {MAX_FIELD} characters.")
    return text


def sm_login(url: str | None, username: str | None, password: str | None) -> SmLogin:
    """A SmarterMail gateway's web services: an http(s) URL with a host, and a login."""
    text = _field(url, "SmarterMail URL")
    try:
        parts = urlsplit(text)
        # .port raises ValueError for a port that is no number or out of range.
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.username \
            and (parts.port is None or parts.port > 0)
    except ValueError:
        valid = False
    if not valid:
        raise MailsrvError(ResultCode.INVALID_ARGUMENT, f"'{text}' is not the http(s) URL of a SmarterMail server.")
    user = _field(username, "SmarterMail user name")
    if not user:
        raise MailsrvError(ResultCode.INVALID_ARGUMENT, "A SmarterMail gateway needs the user name to sign in with.")
    return SmLogin(text, user, _field(password, "SmarterMail password"))


def _view(row: OutgoingGateway) -> Gateway:
    address = parse_address(row.address)
    sm = SmLogin(row.sm_url, row.sm_username, row.sm_password) if row.is_smartermail else None
    return Gateway(row.guid, row.address, address.host, address.port, row.enabled, sm)


def _guid(raw: str | None) -> str:
    try:
        return str(uuid.UUID((raw or "").strip()))
    except ValueError:
        raise MailsrvError(ResultCode.ITEM_NOT_FOUND, f"There is no gateway '{raw or ''}'.") from None


_ROWS = select(OutgoingGateway).order_by(OutgoingGateway.position)


def load(conn: Connection) -> list[Gateway]:
    """Every gateway, in the order they were added (the caller's transaction)."""
    with Session(bind=conn) as s:
        return [_view(row) for row in s.execute(_ROWS).scalars()]


class Gateways:
    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, actor: Actor, address: str | None, enabled: bool, sm: RawLogin | None = None) -> str:
        """The new gateway's guid (AddGateway; AddSmarterMailGateway with `sm`)."""
        actor.require_system()
        stored = str(parse_address(address))
        login = sm_login(*sm) if sm is not None else None
        guid = str(uuid.uuid4())
        with self.store.session() as s:
            self._refuse_taken(s, stored, guid)
            position = (s.execute(select(func.max(OutgoingGateway.position))).scalar() or 0) + 1
            s.add(OutgoingGateway(guid=guid, position=position, address=stored, enabled=bool(enabled),
                                  is_smartermail=login is not None, sm_url=login.url if login else "",
                                  sm_username=login.username if login else "",
                                  sm_password=login.password if login else ""))
        return guid

    def update(self, actor: Actor, guid: str | None, address: str | None, enabled: bool,
               sm: RawLogin | None) -> None:
        """UpdateGateway: every field replaced; `sm` None makes it a plain gateway."""
        actor.require_system()
        key = _guid(guid)
        stored = str(parse_address(address))
        login = sm_login(*sm) if sm is not None else None
        with self.store.session() as s:
            row = self._find(s, key)
            self._refuse_taken(s, stored, key)
            row.address, row.enabled, row.is_smartermail = stored, bool(enabled), login is not None
            row.sm_url, row.sm_username, row.sm_password = \
                (login.url, login.username, login.password) if login else ("", "", "")

    def remove(self, actor: Actor, guid: str | None) -> None:
        actor.require_system()
        with self.store.session() as s:
            s.delete(self._find(s, _guid(guid)))

    def get(self, actor: Actor, guid: str | None) -> Gateway:
        actor.require_system()
        with self.store.reading() as s:
            return _view(self._find(s, _guid(guid)))

    def list(self, actor: Actor) -> list[Gateway]:
        actor.require_system()
        with self.store.reading() as s:
            return [_view(row) for row in s.execute(_ROWS).scalars()]

    @staticmethod
    def _find(s: Session, guid: str) -> OutgoingGateway:
        row = s.get(OutgoingGateway, guid)
        if row is None:
            raise MailsrvError(ResultCode.ITEM_NOT_FOUND, f"There is no gateway '{guid}'.")
        return row

    @staticmethod
    def _refuse_taken(s: Session, address: str, guid: str) -> None:
        other = s.execute(select(OutgoingGateway.guid).where(OutgoingGateway.address == address,
                                                             OutgoingGateway.guid != guid)).first()
        if other is not None:
            raise MailsrvError(ResultCode.NAME_IN_USE, f"The gateway {address} already exists.")
