"""Server-wide mail engine settings (SmarterMail's General Settings), one ServerSetting row per key.

Typed like mailsrv.core.settings so that the SOAP operations that will expose them (Get/SetRequested…
of svcServerAdmin) parse and format them the same way the engine reads them:

- `retryminutes`: the delivery retry schedule, minutes between attempts, e.g. "10,10,10,1440"
  (the seed's Backup MX advice; also our default). Attempt n+1 waits the n-th entry; when the
  attempt after the last entry fails too, the recipient fails for good and the sender gets a DSN.
- `bouncing`: Enabled (default: RFC 5321 §6.1 requires a failure notice for mail we accepted and
  could not deliver), RequireSPF (only to senders whose SPF check passed at acceptance, or who
  authenticated), Disabled.
- `autoresponders`: the same three values for auto-replies (read by mailsrv.mta.autoreply).

- `catchalls`: Enabled / Disabled; Disabled, no domain's catch-all receives mail (read by
  mailsrv.mta.recipients, which answers an unknown local part as if the domain had none).
- `relay`: Nobody / AuthenticatedUsers: whether an SMTP-authenticated user may send to non-local
  domains (mailsrv.mta.policy; trusted clients always may).
- `smtphostname`, `maxmessagesize` (KB), `maxrecipients`: the SMTP greeting/EHLO/Received name and
  the server-wide caps (0: none); `requiresmtpauthforlocalsenders`: the floor under every local
  domain's "Require SMTP Authentication".
- `spfcheck`, `dkimverify` (true by default): whether every unauthenticated message gets its
  sender's SPF checked and its DKIM signatures verified at acceptance; `dmarcaction`: what a DMARC
  failure does (mailsrv.mta.filtering.dmarc): Off (not evaluated), None (recorded in
  Authentication-Results only), Mark (also an `X-DMARC` header), Quarantine (the default: a
  failing message whose domain asks for quarantine or reject goes to Junk), Reject (p=reject is
  refused 550 5.7.1, p=quarantine goes to Junk).
- `gatewayenabled`, `gatewaybalance`: whether and how remote mail leaves through the outgoing
  gateways (read per route by mailsrv.mta.outgoing_gateways); `outboundips`: the source addresses
  of outgoing SMTP, in turn (read per connection).

Stored under their own names (no prefix). Four keys default to the configuration (`[smtp]
hostname`, `max_message_kb`, `max_recipients`, `allow_catchalls`): the TOML gives the value only
until one is stored (`SystemSettings(store, config.smtp)`). The queue and the notices read the
values from the store on each use; SMTP reads them with the directory lookups, cached under the
generation that every change of server_settings raises (migration 0007), so a change made on any
node applies to the next SMTP session or transaction everywhere.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from mailsrv.core import settings
from mailsrv.core.actor import Actor
from mailsrv.core.config import SmtpConfig
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.core.settings import SettingKey
from mailsrv.store.db import Store
from mailsrv.store.models import ServerSetting

ENABLED, REQUIRE_SPF, DISABLED = "Enabled", "RequireSPF", "Disabled"
_MAX_RETRY_MINUTES = 30 * 24 * 60  # a month: anything longer is a typo, not a schedule


class RetryMinutesKey(SettingKey):
    """A comma-separated list of 1-20 whole minutes, each 1 to a month; stored as "10,10,10,1440"."""

    def parse(self, raw: str | None, spelled: str) -> Any:
        parts = [part.strip() for part in (raw or "").split(",")]
        if not 1 <= len(parts) <= 20 or not all(p.isascii() and p.isdigit() and 1 <= int(p) <= _MAX_RETRY_MINUTES
                                                 for p in parts):
            raise MailsrvError(ResultCode.INVALID_SETTING,
                               f"Setting '{spelled}' must be 1-20 comma-separated minutes from 1 to {_MAX_RETRY_MINUTES}.")
        return ",".join(str(int(p)) for p in parts)


class OutboundIpsKey(SettingKey):
    """Comma-separated IP addresses (v4 or v6), stored in normal form; empty for the system's choice."""

    def parse(self, raw: str | None, spelled: str) -> Any:
        parts = [part.strip() for part in (raw or "").split(",") if part.strip()]
        try:
            return ",".join(dict.fromkeys(str(ipaddress.ip_address(part)) for part in parts))
        except ValueError:
            raise MailsrvError(ResultCode.INVALID_SETTING,
                               f"Setting '{spelled}' must be comma-separated IP addresses.") from None


_HOST_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


class HostNameKey(SettingKey):
    """A host name of letters, digits and inner hyphens (RFC 1123), at most 253 characters: it goes
    into every greeting and Received header, where anything else would break the protocol."""

    def parse(self, raw: str | None, spelled: str) -> Any:
        name = (raw or "").strip().rstrip(".").lower()
        if not name or len(name) > 253 or not all(_HOST_LABEL.match(label) for label in name.split(".")):
            raise MailsrvError(ResultCode.INVALID_SETTING,
                               f"Setting '{spelled}' must be a host name (letters, digits, hyphens and dots).")
        return name


def _choice(name: str, default: str, *spellings: tuple[str, ...]) -> SettingKey:
    """An enumerated key; each value's spellings start with the canonical one."""
    return SettingKey(name, str, default, {values[0]: tuple(v.lower() for v in values) for values in spellings})


def _policy(name: str) -> SettingKey:
    return _choice(name, ENABLED, (ENABLED, "true"), (REQUIRE_SPF, "require spf", "spf"), (DISABLED, "false"))


NOBODY, AUTHENTICATED_USERS = "Nobody", "AuthenticatedUsers"
DMARC_OFF, DMARC_NONE, DMARC_MARK, DMARC_QUARANTINE, DMARC_REJECT = "Off", "None", "Mark", "Quarantine", "Reject"

SYSTEM: dict[str, SettingKey] = {
    "catchalls": _choice("catchalls", ENABLED, (ENABLED, "true"), (DISABLED, "false")),
    "bouncing": _policy("bouncing"),
    "autoresponders": _policy("autoresponders"),
    "relay": _choice("relay", AUTHENTICATED_USERS, (NOBODY,), (AUTHENTICATED_USERS, "authenticated users")),
    "retryminutes": RetryMinutesKey("retryminutes", str, "10,10,10,1440"),
    "gatewayenabled": SettingKey("gatewayenabled", bool, False),
    "gatewaybalance": _choice("gatewaybalance", "RoundRobin", ("RoundRobin", "round robin"), ("Failover",),
                              ("LeastQueued", "least queued")),
    "outboundips": OutboundIpsKey("outboundips", str, ""),
    "smtphostname": HostNameKey("smtphostname", str, "localhost"),
    "maxmessagesize": SettingKey("maxmessagesize", int, 51200),
    "maxrecipients": SettingKey("maxrecipients", int, 1000),
    "requiresmtpauthforlocalsenders": SettingKey("requiresmtpauthforlocalsenders", bool, False),
    "spfcheck": SettingKey("spfcheck", bool, True),
    "dkimverify": SettingKey("dkimverify", bool, True),
    "dmarcaction": _choice("dmarcaction", DMARC_QUARANTINE, (DMARC_OFF, "false"), (DMARC_NONE,), (DMARC_MARK,),
                           (DMARC_QUARANTINE,), (DMARC_REJECT,)),
}


def table_for(smtp: SmtpConfig) -> dict[str, SettingKey]:
    """SYSTEM with the configuration's values as the defaults of the keys it gives."""
    initial = {"smtphostname": smtp.hostname, "maxmessagesize": smtp.max_message_kb,
               "maxrecipients": smtp.max_recipients, "catchalls": ENABLED if smtp.allow_catchalls else DISABLED}
    return {name: dataclasses.replace(key, default=initial[name]) if name in initial else key
            for name, key in SYSTEM.items()}


@dataclass(frozen=True)
class SmtpSettings:
    """What an SMTP session obeys of the server settings, typed (0: no cap)."""
    hostname: str
    max_message_bytes: int
    max_recipients: int
    catchalls: bool
    authenticated_relay: bool  # relay=AuthenticatedUsers: SMTP-authenticated users may relay
    local_senders_authenticate: bool  # requiresmtpauthforlocalsenders
    spf_needed: bool  # a policy (bouncing, auto-responders) asks for SPF results
    spf_check: bool = True  # `spfcheck`: every unauthenticated sender's SPF is checked
    dkim_verify: bool = True  # `dkimverify`
    dmarc_action: str = DMARC_QUARANTINE  # `dmarcaction`

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> SmtpSettings:
        return cls(hostname=values["smtphostname"], max_message_bytes=values["maxmessagesize"] * 1024,
                   max_recipients=values["maxrecipients"], catchalls=values["catchalls"] == ENABLED,
                   authenticated_relay=values["relay"] == AUTHENTICATED_USERS,
                   local_senders_authenticate=bool(values["requiresmtpauthforlocalsenders"]),
                   spf_needed=REQUIRE_SPF in (values["bouncing"], values["autoresponders"]),
                   spf_check=bool(values["spfcheck"]), dkim_verify=bool(values["dkimverify"]),
                   dmarc_action=values["dmarcaction"])


@dataclass(frozen=True)
class RetrySchedule:
    delays: tuple[dt.timedelta, ...]

    @classmethod
    def parse(cls, text: str) -> RetrySchedule:
        return cls(tuple(dt.timedelta(minutes=int(m)) for m in text.split(",")))

    def delay(self, attempts: int) -> dt.timedelta | None:
        """The wait after `attempts` failed attempts; None when that was the last one."""
        return self.delays[attempts - 1] if 1 <= attempts <= len(self.delays) else None


# Built once and run on a bare connection: it is read at every DATA, where building it and the
# ORM execution path cost more than the query.
_READ = select(ServerSetting.key, ServerSetting.value).where(ServerSetting.key.in_(SYSTEM))


def read(conn: Connection, table: Mapping[str, SettingKey] = SYSTEM) -> dict[str, Any]:
    """Every key's value inside the caller's transaction (e.g. the one recording a failure: pass
    its session's `connection()`); keys never stored take `table`'s default (`table_for` gives the
    configuration's, which the smtphostname, maxmessagesize, maxrecipients and catchalls need)."""
    # .all(), not the Result itself: dict() would take a Result's keys() for a mapping's.
    stored = dict(conn.execute(_READ).all())
    return {name: stored.get(name, key.default) for name, key in table.items()}


class SystemSettings:
    def __init__(self, store: Store, smtp: SmtpConfig) -> None:
        self.store = store
        self.table = table_for(smtp)

    def read(self, conn: Connection) -> dict[str, Any]:
        return read(conn, self.table)

    def values(self) -> dict[str, Any]:
        # Read-only: on SQLite a writing transaction takes the write lock, and this is read at every
        # DATA (the SPF policy check), where it would queue behind the spool's group commits.
        with self.store.read_connection() as conn:
            return self.read(conn)

    def update(self, changes: Mapping[str, Any]) -> None:
        """Store already parsed values (see `parse_assignments`), all in one transaction."""
        unknown = set(changes) - set(SYSTEM)
        if unknown:
            raise MailsrvError(ResultCode.INVALID_SETTING, f"Unknown setting '{sorted(unknown)[0]}'.")
        with self.store.session() as s:
            for key, value in changes.items():
                s.merge(ServerSetting(key=key, value=value))

    def read_requested(self, actor: Actor, requested: Iterable[str | None]) -> list[str]:
        """GetRequestedSystemSettings: `key=value` in the order and case asked (system administrators)."""
        actor.require_system()
        return settings.read_requested(self.table, self.values(), requested)

    def set_requested(self, actor: Actor, assignments: Iterable[str | None]) -> None:
        """SetRequestedSystemSettings: every value parsed before any is stored (system administrators)."""
        actor.require_system()
        self.update(settings.parse_assignments(self.table, assignments))

    def retry_schedule(self) -> RetrySchedule:
        return RetrySchedule.parse(self.values()["retryminutes"])
