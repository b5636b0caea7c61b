"""The key=value settings of domains, domain defaults and users (the contract's settings keys;
README, "Settings keys").

One table of typed keys serves the Get/SetRequested… operations, the typed fields of
DomainSettingsResult/AddDomain/UpdateDomain and the engine's own reads, so a value means the same
everywhere. Values travel the way .NET clients parse them: `True`/`False` and plain decimals.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mailsrv.core.actor import Actor, Role
from mailsrv.core.errors import MailsrvError, ResultCode

INT32_MAX = 2**31 - 1
MB = 1024 * 1024


@dataclass(frozen=True)
class SettingKey:
    name: str
    kind: type  # bool, int or str
    default: Any
    # For enumerated strings: the accepted spellings (first is canonical) keyed by canonical value.
    choices: Mapping[str, tuple[str, ...]] | None = None
    # Limits, features and server bindings the system administrator grants: a domain administrator
    # may send the current value back but not change it (see `refuse_system_only`).
    system_only: bool = False

    def parse(self, raw: str | None, spelled: str) -> Any:
        text = (raw or "").strip()
        if self.choices is not None:
            for canonical, spellings in self.choices.items():
                if text.lower() in spellings:
                    return canonical
            allowed = ", ".join(self.choices)
            raise MailsrvError(ResultCode.INVALID_SETTING, f"Setting '{spelled}' must be one of {allowed}.")
        if self.kind is bool:
            if text.lower() in ("true", "false"):
                return text.lower() == "true"
            raise MailsrvError(ResultCode.INVALID_SETTING, f"Setting '{spelled}' must be True or False.")
        if self.kind is int:
            if not text.isascii() or not text.isdigit() or int(text) > INT32_MAX:
                raise MailsrvError(ResultCode.INVALID_SETTING,
                                   f"Setting '{spelled}' must be a whole number from 0 to {INT32_MAX}.")
            return int(text)
        if len(text) > 4000:
            raise MailsrvError(ResultCode.INVALID_SETTING, f"Setting '{spelled}' is too long.")
        return raw or ""

    def format(self, value: Any) -> str:
        if self.kind is bool and self.choices is None:
            return "True" if value else "False"
        return str(value)


def _enabled_disabled(default: str) -> SettingKey:
    return SettingKey("", str, default, {"Enabled": ("enabled", "true"), "Disabled": ("disabled", "false")})


def granted(value: Any) -> SettingKey:
    """A key only a system administrator may change (a limit, a feature, a server binding)."""
    key = value if isinstance(value, SettingKey) else SettingKey("", type(value), value)
    return SettingKey("", key.kind, key.default, key.choices, system_only=True)


def keys(**spec: Any) -> dict[str, SettingKey]:
    out: dict[str, SettingKey] = {}
    for name, value in spec.items():
        key = value if isinstance(value, SettingKey) else SettingKey(name, type(value), value)
        out[name] = SettingKey(name, key.kind, key.default, key.choices, key.system_only)
    return out


# Limits are 0 for "unlimited". Sizes: maxsize in KB (domain disk), maxmailboxsize in MB (per user
# unless the user sets its own), maxmessagesize in KB. `granted(...)` marks what the system
# administrator grants the domain: limits, enables/features, exemptions, SMTP authentication, the
# server's IP and ports. The rest (catch-all, list command address, URL, spam and auto-reply
# options, DKIM signing) is the domain administrator's own.
DOMAIN: dict[str, SettingKey] = keys(
    isenabled=granted(True), catchall="", enablecatchalls=granted(_enabled_disabled("Enabled")),
    serverip=granted(""), imapport=granted(143), popport=granted(110), smtpport=granted(25),
    altsmtpport=granted(0), altsmtpportenabled=granted(False), ldapport=granted(389),
    maxaliases=granted(0), maxdomainaliases=granted(0), maxlists=granted(0), maxsize=granted(0),
    maxusers=granted(0), maxmailboxsize=granted(0), maxmessagesize=granted(25600), maxrecipients=granted(200),
    requiresmtpauthentication=granted(True), listcommandaddress="stserv", domainurl="",
    autoresponderrestriction="All", bypassgreylisting=granted(False), bypassforwardblacklist=granted(False),
    enabledomainkeys=False, enablemailsigning=False,
    enablepopretrieval=granted(True), enableimapretrieval=granted(True),
    maxpopretrievalaccounts=granted(5), maximapretrievalaccounts=granted(5),
    maxmessagesperhour=granted(0), maxmessagesperhourenabled=granted(False),
    maxsmtpoutbandwidthperhour=granted(0), maxsmtpoutbandwidthperhourenabled=granted(False),
    maxbouncesreceivedperhour=granted(0), maxbouncesreceivedperhourenabled=granted(False),
    sharedcalendar=granted(True), sharedcontact=granted(True), sharedfolder=granted(True),
    sharednotes=granted(True), sharedtasks=granted(True), sharedgal=granted(True),
    showcalendar=granted(True), showcontacts=granted(True), shownotes=granted(True), showtasks=granted(True),
    showcontentfilteringmenu=granted(True), showdomainaliasmenu=granted(True), showlistmenu=granted(True),
    showspammenu=granted(True), showstatsmenu=granted(True), showdomainreports=granted(True),
    showuserreports=granted(True), spamresponderoption="", spamforwardoption="",
    enableemailreports=granted(True), syncml=granted(False), enabledomainuserservicecontrol=granted(False),
)

DOMAIN_DEFAULTS: dict[str, SettingKey] = {
    **{f"default{name}": SettingKey(f"default{name}", k.kind, k.default, k.choices) for name, k in DOMAIN.items()},
    "defaultskin": SettingKey("defaultskin", str, "Default"),
}

# `maxsize` is bounded for domain administrators by the domain's `maxmailboxsize` (users.py).
# `lockpassword` protects a password from domain administrators, so they may not lift it.
USER: dict[str, SettingKey] = keys(
    isenabled=True, maxsize=0, lockpassword=granted(False), replytoaddress="", signature="",
)
# Two spellings clients use for the same flag.
USER_KEY_ALIASES = {"passwordlocked": "lockpassword"}


def defaults(table: Mapping[str, SettingKey]) -> dict[str, Any]:
    return {name: key.default for name, key in table.items()}


def value(table: Mapping[str, SettingKey], values: Mapping[str, Any], name: str) -> Any:
    """The stored value of `name`, else its default: rows made before a key existed lack it, and
    the default is what they mean."""
    return values.get(name, table[name].default)


def mailbox_limit_bytes(user_values: Mapping[str, Any], domain_values: Mapping[str, Any]) -> int:
    """A mailbox's effective size limit in bytes, 0 being unlimited: the user's `maxsize` MB, else
    (0) its domain's `maxmailboxsize` MB. The one rule SMTP's quota check and GetUserQuotas share."""
    domain_mb = value(DOMAIN, domain_values, "maxmailboxsize")
    return (value(USER, user_values, "maxsize") or domain_mb) * MB


def _lookup(table: Mapping[str, SettingKey], spelled: str, aliases: Mapping[str, str]) -> SettingKey:
    name = (spelled or "").strip().lower()
    name = aliases.get(name, name)
    if name not in table:
        raise MailsrvError(ResultCode.INVALID_SETTING, f"Unknown setting '{spelled}'.")
    return table[name]


def read_requested(table: Mapping[str, SettingKey], values: Mapping[str, Any], requested: Iterable[str | None],
                   aliases: Mapping[str, str] = {}) -> list[str]:
    """`key=value` for every requested key, in the order and case asked; unknown keys refused."""
    out = []
    for spelled in requested:
        key = _lookup(table, spelled or "", aliases)
        out.append(f"{(spelled or '').strip()}={key.format(values.get(key.name, key.default))}")
    return out


def refuse_system_only(actor: Actor, table: Mapping[str, SettingKey], current: Mapping[str, Any],
                       changes: Mapping[str, Any]) -> None:
    """Refuse a change of a system-only key unless `actor` is a system administrator. Sending the
    current value passes: control panels echo every setting back."""
    if actor.role is Role.SYSTEM_ADMIN:
        return
    for name, value in changes.items():
        key = table[name]
        if key.system_only and value != current.get(name, key.default):
            raise MailsrvError(ResultCode.PERMISSION_DENIED,
                               f"Permission denied: only a system administrator may change '{name}'.")


def parse_assignments(table: Mapping[str, SettingKey], assignments: Iterable[str | None],
                      aliases: Mapping[str, str] = {}) -> dict[str, Any]:
    """Parse `key=value` strings; every one must be valid before any is applied."""
    changes: dict[str, Any] = {}
    for item in assignments:
        if item is None or "=" not in item:
            raise MailsrvError(ResultCode.INVALID_SETTING, f"'{item}' is not a key=value setting.")
        spelled, raw = item.split("=", 1)
        key = _lookup(table, spelled, aliases)
        changes[key.name] = key.parse(raw, spelled.strip())
    return changes


# The typed fields of AddDomain/UpdateDomain/DomainSettingsResult, as (key, unit factor): the field
# value times the factor is the stored value (MaxDomainSizeInMB is kept as maxsize in KB).
DOMAIN_FIELDS: dict[str, tuple[str, int]] = {
    "ServerIP": ("serverip", 1), "ImapPort": ("imapport", 1), "PopPort": ("popport", 1),
    "SmtpPort": ("smtpport", 1), "MaxAliases": ("maxaliases", 1), "MaxDomainAliases": ("maxdomainaliases", 1),
    "MaxLists": ("maxlists", 1), "MaxDomainSizeInMB": ("maxsize", 1024), "MaxDomainUsers": ("maxusers", 1),
    "MaxMailboxSizeInMB": ("maxmailboxsize", 1), "MaxMessageSize": ("maxmessagesize", 1),
    "MaxRecipients": ("maxrecipients", 1), "ShowDomainAliasMenu": ("showdomainaliasmenu", 1),
    "ShowContentFilteringMenu": ("showcontentfilteringmenu", 1), "ShowSpamMenu": ("showspammenu", 1),
    "ShowStatsMenu": ("showstatsmenu", 1), "ShowListMenu": ("showlistmenu", 1),
    "RequireSmtpAuthentication": ("requiresmtpauthentication", 1), "ListCommandAddress": ("listcommandaddress", 1),
}
PORT_KEYS = frozenset({"imapport", "popport", "smtpport", "altsmtpport", "ldapport"})


def fields_from_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for field_name, (key, factor) in DOMAIN_FIELDS.items():
        stored = value(DOMAIN, values, key)
        out[field_name] = stored // factor if factor != 1 else stored
    return out


def settings_from_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Stored settings for typed contract fields, range-checked like their key=value forms."""
    out: dict[str, Any] = {}
    for field_name, value in fields.items():
        key, factor = DOMAIN_FIELDS[field_name]
        kind = DOMAIN[key].kind
        if kind is int:
            limit = 65535 if key in PORT_KEYS else INT32_MAX
            if value is None or value < 0 or value * factor > limit:
                raise MailsrvError(ResultCode.VALUE_OUT_OF_RANGE,
                                   f"{field_name} must be a whole number from 0 to {limit // factor}.")
            out[key] = value * factor
        elif kind is str:
            out[key] = (value or "").strip()
        else:
            out[key] = bool(value)
    return out
