"""Incoming gateways (svcServerAdmin `AddIncomingGateway` …): the servers this one is backup MX or
incoming gateway for. Storage, validation and rights (system administrators only); what SMTP and
remote delivery do with them is mailsrv.mta.incoming_gateways.

A gateway names its primary (`address`: IP, IP:port, [IPv6]:port or a host name), the primary's own
address range, which domains to accept (a list, or the primary's domain list read over its API) and
whether to verify recipients against the primary's API. A domain is forwarded by at most one
gateway and is never one this server hosts (GATEWAY_DOMAIN_CONFLICT): each recipient has one answer.
The spam-action fields are stored and returned as given, checked against their values; the spam
filtering issue will act on them.

Every change raises the directory generation (migration 0013's triggers); each process keeps one
snapshot of all gateways under that number, so a change through any node applies to the next SMTP
transaction and the next delivery on every node.
"""
from __future__ import annotations

import ipaddress
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from mailsrv.core import names
from mailsrv.core.actor import Actor
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.core.names import ServerAddress
from mailsrv.directory.address_lists import client_address, parse_span
from mailsrv.store.db import Store
from mailsrv.store.models import (
    Domain,
    DomainAlias,
    IncomingGatewayRow,
    directory_generation,
)

GATEWAY, BACKUP_MX = "Gateway", "BackupMX"
MODES = (GATEWAY, BACKUP_MX)
VERIFY_NONE, VERIFY_SMARTERMAIL, VERIFY_LIST = "None", "SmarterMail", "List"
USER_VERIFY = (VERIFY_NONE, VERIFY_SMARTERMAIL)
DOMAIN_VERIFY = (VERIFY_LIST, VERIFY_SMARTERMAIL)
SPAM_ACTIONS = ("None", "AddHeader", "PrefixSubject", "Delete")
SPAM_FIELDS = ("spamLowAction", "spamLowArgs", "spamMedAction", "spamMedArgs", "spamHighAction", "spamHighArgs")
ARGS_LIMIT = 1000



def parse_primary(raw: str | None) -> ServerAddress:
    """IP, IP:port, [IPv6]:port, IPv6, host name or host name:port (`names.server_address`); the port
    None when none is given (`[delivery] remote_port` then)."""
    return names.server_address(raw, "primary server address (IPAddress)")


def _api_url(raw: str | None, what: str) -> str:
    text = (raw or "").strip()
    if not text:
        return ""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in text):
        raise MailsrvError(ResultCode.INVALID_ARGUMENT, f"{what} '{text}' is not an http(s) URL.")
    return text


@dataclass(frozen=True)
class IncomingGateway:
    guid: str
    mode: str
    address: str  # as given, normalised (the primary: `primary`)
    range_start: str
    range_end: str
    user_verify: str
    domain_verify: str
    domains: tuple[str, ...]  # domainsToForward (accepted when domain_verify is List)
    webservice_url: str
    smartermail_mode: bool
    smartermail_url: str
    api_user: str
    api_password: str
    spam: Mapping[str, Any]  # enableSpamActions and SPAM_FIELDS, as stored
    primary_domains: tuple[str, ...] = ()  # the primary's domain list as last read (domain_verify SmarterMail)

    @property
    def primary(self) -> ServerAddress:
        return parse_primary(self.address)

    @property
    def api_url(self) -> str:
        """The primary's API (`smarterMailURL` wins over `webserviceURL`), "" when none."""
        return self.smartermail_url or self.webservice_url

    def from_primary(self, ip: str) -> bool:
        """Whether a client at `ip` is the primary (in its own range, or its own address)."""
        client = client_address(ip)
        if client is None:
            return False
        if self.range_start:
            first, last = ipaddress.ip_address(self.range_start), ipaddress.ip_address(self.range_end)
            if first.version == client.version and first <= client <= last:
                return True
        primary = self.primary.ip
        return primary is not None and client_address(primary) == client


def _of(row: IncomingGatewayRow) -> IncomingGateway:
    return IncomingGateway(row.guid, row.mode, row.address, row.range_start, row.range_end, row.user_verify,
                           row.domain_verify, tuple(row.domains or ()), row.webservice_url, row.smartermail_mode,
                           row.smartermail_url, row.api_user, row.api_password, dict(row.spam or {}),
                           tuple(row.primary_domains or ()))


def _choice(raw: Any, allowed: tuple[str, ...], what: str, default: str | None = None) -> str:
    text = (raw or "").strip() if isinstance(raw, str) or raw is None else str(raw)
    if not text and default is not None:
        return default
    for value in allowed:
        if value.lower() == text.lower():
            return value
    raise MailsrvError(ResultCode.INVALID_ARGUMENT, f"{what} must be one of {', '.join(allowed)}, not '{text}'.")


def _args(raw: Any, what: str) -> str:
    text = (raw or "").strip()
    if len(text) > ARGS_LIMIT or any(ord(c) < 32 for c in text):
        raise MailsrvError(ResultCode.INVALID_ARGUMENT, f"{what} is one line of at most {ARGS_LIMIT} characters.")
    return text


def _fill(row: IncomingGatewayRow, attributes: Mapping[str, Any]) -> None:
    """Every field of `row` from IncomingGatewayAttributes, validated (raises before touching it)."""
    mode = _choice(attributes.get("gatewayMode"), MODES, "gatewayMode")
    primary = parse_primary(attributes.get("IPAddress"))
    start, end = (attributes.get("IPStartRange") or "").strip(), (attributes.get("IPEndRange") or "").strip()
    span = parse_span(None, start, end) if start or end else None
    user_verify = _choice(attributes.get("userVerifyType"), USER_VERIFY, "userVerifyType", VERIFY_NONE)
    domain_verify = _choice(attributes.get("domainVerifyType"), DOMAIN_VERIFY, "domainVerifyType", VERIFY_LIST)
    webservice_url = _api_url(attributes.get("webserviceURL"), "webserviceURL")
    smartermail_url = _api_url(attributes.get("smarterMailURL"), "smarterMailURL")
    domains = sorted({names.domain_name(d) for d in attributes.get("domainsToForward") or [] if (d or "").strip()})
    if domain_verify == VERIFY_LIST and not domains:
        raise MailsrvError(ResultCode.INVALID_ARGUMENT, "domainVerifyType List needs domainsToForward.")
    if VERIFY_SMARTERMAIL in (domain_verify, user_verify) and not (smartermail_url or webservice_url):
        raise MailsrvError(ResultCode.INVALID_ARGUMENT,
                           "Verification against the primary needs its API: smarterMailURL or webserviceURL.")
    spam: dict[str, Any] = {"enableSpamActions": bool(attributes.get("enableSpamActions"))}
    for name in SPAM_FIELDS:
        value = attributes.get(name)
        spam[name] = _choice(value, SPAM_ACTIONS, name, "None") if name.endswith("Action") else _args(value, name)
    row.mode, row.address = mode, str(primary)
    row.range_start, row.range_end = (str(span.first), str(span.last)) if span else ("", "")
    row.user_verify, row.domain_verify, row.domains = user_verify, domain_verify, domains
    row.webservice_url, row.smartermail_url = webservice_url, smartermail_url
    row.smartermail_mode = bool(attributes.get("smarterMailMode"))
    row.api_user = (attributes.get("authSmarterMailUserName") or "").strip()
    row.api_password = attributes.get("authSmarterMailPassword") or ""
    row.spam = spam


def _refuse_conflicts(s: Session, row: IncomingGatewayRow) -> None:
    domains = set(row.domains)
    if not domains:
        return
    hosted = s.scalars(select(Domain.name).where(Domain.name.in_(domains))).all() + \
        s.scalars(select(DomainAlias.name).where(DomainAlias.name.in_(domains))).all()
    if hosted:
        raise MailsrvError(ResultCode.GATEWAY_DOMAIN_CONFLICT,
                           f"{', '.join(sorted(hosted))}: hosted on this server, not forwarded.")
    for other in s.scalars(select(IncomingGatewayRow).where(IncomingGatewayRow.guid != row.guid)):
        if taken := domains & set(other.domains or ()):
            raise MailsrvError(ResultCode.GATEWAY_DOMAIN_CONFLICT,
                               f"{', '.join(sorted(taken))}: already forwarded by incoming gateway {other.guid}.")


class IncomingGateways:
    """The gateways' storage (system administrators only) and this process's snapshot of them."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._generation: int | None = None
        self._snapshot: tuple[IncomingGateway, ...] = ()
        self._lock = threading.Lock()

    def snapshot(self) -> tuple[IncomingGateway, ...]:
        """The gateways as last read by `at` or `current`; never blocks."""
        return self._snapshot

    def current(self) -> tuple[IncomingGateway, ...]:
        """The gateways as the store has them now: one read of the generation, the rows only when it
        moved (blocking)."""
        with self.store.read_connection() as conn:
            return self.at(directory_generation(conn), conn)

    def at(self, generation: int, conn: Connection | None = None) -> tuple[IncomingGateway, ...]:
        """The gateways as of `generation`, just read by the caller (blocking when they must be read)."""
        if generation == self._generation:
            return self._snapshot
        if conn is None:
            return self.current()
        with Session(bind=conn) as s:
            gateways = tuple(_of(row) for row in s.scalars(select(IncomingGatewayRow).order_by(IncomingGatewayRow.guid)))
        with self._lock:
            self._generation, self._snapshot = generation, gateways
        return gateways

    def add(self, actor: Actor, attributes: Mapping[str, Any] | None) -> str:
        actor.require_system()
        row = IncomingGatewayRow(guid=str(uuid.uuid4()))
        _fill(row, attributes or {})
        with self.store.session() as s:
            _refuse_conflicts(s, row)
            s.add(row)
        return row.guid

    def update(self, actor: Actor, guid: str | None, attributes: Mapping[str, Any] | None) -> None:
        actor.require_system()
        with self.store.session() as s:
            row = self._row(s, guid)
            _fill(row, attributes or {})
            _refuse_conflicts(s, row)

    def remove(self, actor: Actor, guid: str | None) -> None:
        actor.require_system()
        with self.store.session() as s:
            s.delete(self._row(s, guid))

    def get(self, actor: Actor, guid: str | None) -> IncomingGateway:
        actor.require_system()
        with self.store.reading() as s:
            return _of(self._row(s, guid))

    def list(self, actor: Actor) -> list[IncomingGateway]:
        actor.require_system()
        with self.store.reading() as s:
            return [_of(row) for row in s.scalars(select(IncomingGatewayRow).order_by(IncomingGatewayRow.guid))]

    def record_primary_domains(self, guid: str, domains: frozenset[str]) -> None:
        """Keep the primary's domain list just read (the engine's own write, for every node and the
        next start); written only when it changed, since it raises the directory generation."""
        with self.store.session() as s:
            row = s.get(IncomingGatewayRow, guid)
            if row is not None and set(row.primary_domains or ()) != domains:
                row.primary_domains = sorted(domains)

    @staticmethod
    def _row(s: Session, guid: str | None) -> IncomingGatewayRow:
        row = s.get(IncomingGatewayRow, (guid or "").strip().lower())
        if row is None:
            raise MailsrvError(ResultCode.ITEM_NOT_FOUND, f"No incoming gateway {guid}.")
        return row
