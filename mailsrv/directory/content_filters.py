"""The content filters' settings (svcSpamAdmin `SetAntispamOptions`/`ListRBLs`, svcVirusAdmin
`Set/GetAntivirusOptions`, `GetClamAvSettings`) and the SpamAssassin servers (svcServerAdmin
`Add/Delete/ListSpamAssassinServer(s)`): storage, validation and rights (system administrators only).
What SMTP does with them is mailsrv.mta.filtering.dnsbl, .spamd and .clamd.

The options are server_settings rows named `antispam.<key>` and `antivirus.<key>` (one row per key,
so two nodes changing different keys never overwrite each other; every change raises the directory
generation through migration 0007's triggers). SMTP keeps them with its directory lookups, under
that generation (mailsrv.mta.filtering.options), so a change on any node applies to the next
transaction everywhere.

The SpamAssassin servers are their own table (migration 0022), with the per-server counters that
ListSpamAssassinServers reports (`consecutive_failures`, `total_connections`), kept in the store so
every node sees the same ones; it is not watched by the generation, since every scan updates it.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, select, update

from mailsrv.core import settings
from mailsrv.core.actor import Actor
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.core.settings import SettingKey
from mailsrv.store.db import Store
from mailsrv.store.models import ServerSetting, SpamAssassinServer

_ZONE = re.compile(r"^(?=.{1,240}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")
MAX_WEIGHT = 1000


class RblsKey(SettingKey):
    """`zone=weight` pairs, comma-separated, e.g. "zen.example.org=5,bl.example.net=2.5": the DNS
    blocklists queried and what a listing adds to the spam score (weight 0 lists nothing: removed)."""

    def parse(self, raw: str | None, spelled: str) -> Any:
        zones: dict[str, float] = {}
        for part in (p.strip() for p in (raw or "").split(",")):
            if not part:
                continue
            zone, _, weight = part.partition("=")
            zone = zone.strip().lower().rstrip(".")
            try:
                value = float(weight)
            except ValueError:
                value = -1.0
            if not _ZONE.match(zone) or not 0 <= value <= MAX_WEIGHT:
                raise MailsrvError(ResultCode.INVALID_SETTING, f"Setting '{spelled}': '{part}' is not zone=weight "
                                   f"(a DNS zone and a number from 0 to {MAX_WEIGHT}).")
            if value:
                zones[zone] = value
        return zones

    def format(self, value: Any) -> str:
        return ",".join(f"{zone}={_number(weight)}" for zone, weight in value.items())


class ScoreKey(SettingKey):
    """A spam score from 0 to 1000, decimals allowed ("5", "7.5")."""

    def parse(self, raw: str | None, spelled: str) -> Any:
        try:
            value = float((raw or "").strip())
        except ValueError:
            value = -1.0
        if not 0 <= value <= MAX_WEIGHT:
            raise MailsrvError(ResultCode.INVALID_SETTING, f"Setting '{spelled}' must be a score from 0 to {MAX_WEIGHT}.")
        return value

    def format(self, value: Any) -> str:
        return _number(value)


class ClamdAddressKey(SettingKey):
    """Where clamd listens: "host:port", "[ipv6]:port" or the absolute path of its unix socket."""

    def parse(self, raw: str | None, spelled: str) -> Any:
        text = (raw or "").strip()
        if text.startswith("/") or not text:
            return text
        try:
            host, port = split_address(text)
        except ValueError:
            raise MailsrvError(ResultCode.INVALID_SETTING,
                               f"Setting '{spelled}' must be host:port or the path of a unix socket.") from None
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _number(value: float) -> str:
    return f"{value:g}"


def split_address(text: str) -> tuple[str, int]:
    """(host, port) of "host:port" or "[ipv6]:port"; ValueError for anything else."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        ipaddress.IPv6Address(host)
    else:
        host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(text)
    return host, int(port)


SPAM_ACTIONS = ("None", "AddHeader", "PrefixSubject", "MoveToJunk", "Delete")


def _choice(name: str, default: str, values: Iterable[str]) -> SettingKey:
    return SettingKey(name, str, default, {v: (v.lower(),) for v in values})


ANTISPAM: dict[str, SettingKey] = {k.name: k for k in (
    RblsKey("rbls", str, {}),
    SettingKey("rbltimeoutms", int, 2000),
    ScoreKey("rblrefusescore", float, 0.0),  # refuse at RCPT from this DNSBL score (0: never)
    SettingKey("spamassassinenabled", bool, False),
    SettingKey("spamassassinmaxkb", int, 512),  # larger messages are not scored (as spamc's default)
    SettingKey("spamassassintimeoutms", int, 10000),
    SettingKey("spamassassincooldownseconds", int, 60),
    ScoreKey("spamlowscore", float, 5.0),
    ScoreKey("spammediumscore", float, 10.0),
    ScoreKey("spamhighscore", float, 20.0),
    _choice("spamlowaction", "AddHeader", SPAM_ACTIONS),
    SettingKey("spamlowargs", str, "X-Spam-Flag: YES"),
    _choice("spammediumaction", "PrefixSubject", SPAM_ACTIONS),
    SettingKey("spammediumargs", str, "[SPAM]"),
    _choice("spamhighaction", "MoveToJunk", SPAM_ACTIONS),
    SettingKey("spamhighargs", str, ""),
)}

DEFER, ACCEPT = "Defer", "Accept"
ANTIVIRUS: dict[str, SettingKey] = {k.name: k for k in (
    SettingKey("enabled", bool, False),
    ClamdAddressKey("clamdaddress", str, "127.0.0.1:3310"),
    SettingKey("maxkb", int, 25600),  # clamd's StreamMaxLength default
    SettingKey("timeoutms", int, 30000),
    _choice("onfailure", DEFER, (DEFER, ACCEPT)),  # clamd down: 451, or accept marked unscanned
)}


def _read(conn: Connection, prefix: str, table: Mapping[str, SettingKey]) -> dict[str, Any]:
    names = [f"{prefix}.{name}" for name in table]
    stored = dict(conn.execute(select(ServerSetting.key, ServerSetting.value).where(ServerSetting.key.in_(names))).all())
    return {name: stored.get(f"{prefix}.{name}", key.default) for name, key in table.items()}


def read_antispam(conn: Connection) -> dict[str, Any]:
    """The antispam options inside the caller's read (the SMTP intake caches them per generation)."""
    return _read(conn, "antispam", ANTISPAM)


def read_antivirus(conn: Connection) -> dict[str, Any]:
    return _read(conn, "antivirus", ANTIVIRUS)


@dataclass(frozen=True)
class SpamAssassinServerInfo:
    name: str
    address: str
    port: int
    consecutive_failures: int
    total_connections: int
    enabled: bool


class ContentFilters:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- options ----------------------------------------------------------------------------

    def antispam(self) -> dict[str, Any]:
        with self.store.read_connection() as conn:
            return read_antispam(conn)

    def antivirus(self) -> dict[str, Any]:
        with self.store.read_connection() as conn:
            return read_antivirus(conn)

    def _set(self, actor: Actor, prefix: str, table: Mapping[str, SettingKey], assignments: Iterable[str | None]) -> None:
        actor.require_system()
        changes = settings.parse_assignments(table, assignments)
        with self.store.session() as s:
            for key, value in changes.items():
                s.merge(ServerSetting(key=f"{prefix}.{key}", value=value))

    def set_antispam(self, actor: Actor, assignments: Iterable[str | None]) -> None:
        """SetAntispamOptions: every value parsed before any is stored."""
        self._set(actor, "antispam", ANTISPAM, assignments)

    def set_antivirus(self, actor: Actor, assignments: Iterable[str | None]) -> None:
        self._set(actor, "antivirus", ANTIVIRUS, assignments)

    def _listed(self, actor: Actor, names: Iterable[str]) -> list[str]:
        actor.require_system()
        values = self.antivirus()
        return [f"{name}={ANTIVIRUS[name].format(values[name])}" for name in names]

    def antivirus_options(self, actor: Actor) -> list[str]:
        """GetAntivirusOptions: whether mail is scanned, how large, and what a failure does."""
        return self._listed(actor, ("enabled", "maxkb", "onfailure"))

    def clamav_settings(self, actor: Actor) -> list[str]:
        """GetClamAvSettings: where clamd is and how long a scan may take."""
        return self._listed(actor, ("clamdaddress", "timeoutms"))

    def rbls(self, actor: Actor) -> list[str]:
        """ListRBLs: `zone=weight` per enabled blocklist."""
        actor.require_system()
        return [f"{zone}={_number(weight)}" for zone, weight in self.antispam()["rbls"].items()]

    # -- SpamAssassin servers ---------------------------------------------------------------

    def spamassassin_servers(self) -> list[SpamAssassinServerInfo]:
        with self.store.read_connection() as conn:
            rows = conn.execute(select(SpamAssassinServer).order_by(SpamAssassinServer.name)).all()
        return [SpamAssassinServerInfo(r.name, r.address, r.port, r.consecutive_failures, r.total_connections,
                                       r.enabled) for r in rows]

    def list_spamassassin(self, actor: Actor) -> list[SpamAssassinServerInfo]:
        actor.require_system()
        return self.spamassassin_servers()

    def add_spamassassin(self, actor: Actor, name: str | None, address: str | None, port: int) -> None:
        actor.require_system()
        name, address = (name or "").strip(), (address or "").strip().strip("[]")
        if not name or len(name) > 128:
            raise MailsrvError(ResultCode.INVALID_SPAMASSASSIN_SERVER, "A SpamAssassin server needs a name (1-128 characters).")
        try:
            address = str(ipaddress.ip_address(address))
        except ValueError:
            if not re.match(r"^[A-Za-z0-9.-]{1,253}$", address):
                raise MailsrvError(ResultCode.INVALID_SPAMASSASSIN_SERVER,
                                   f"'{address}' is not an IP address or a host name.") from None
        if not 0 < port < 65536:
            raise MailsrvError(ResultCode.INVALID_SPAMASSASSIN_SERVER, f"Port {port} is not from 1 to 65535.")
        with self.store.session() as s:
            if s.get(SpamAssassinServer, name) is not None:
                raise MailsrvError(ResultCode.SPAMASSASSIN_SERVER_EXISTS, f"A SpamAssassin server named {name} exists.")
            s.add(SpamAssassinServer(name=name, address=address, port=port, consecutive_failures=0,
                                     total_connections=0, enabled=True))

    def delete_spamassassin(self, actor: Actor, name: str | None) -> None:
        actor.require_system()
        with self.store.session() as s:
            if not s.execute(delete(SpamAssassinServer).where(SpamAssassinServer.name == (name or "").strip())).rowcount:
                raise MailsrvError(ResultCode.SPAMASSASSIN_SERVER_NOT_FOUND, f"No SpamAssassin server named {name}.")

    def record_scan(self, name: str, ok: bool) -> None:
        """Count a connection to a server, and its failures in a row (0 again after a success)."""
        failures = 0 if ok else SpamAssassinServer.consecutive_failures + 1
        with self.store.session() as s:
            s.execute(update(SpamAssassinServer).where(SpamAssassinServer.name == name).values(
                total_connections=SpamAssassinServer.total_connections + 1, consecutive_failures=failures))
