"""Validation and normal forms of the names clients send: domains, local parts, addresses, and the
address of a server (host and optional port)."""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

import idna

from mailsrv.core.errors import MailsrvError, ResultCode

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# RFC 5322 dot-atom characters, minus the ones that break Maildir paths or shell-quoted admin tools.
_LOCAL = re.compile(r"^[a-z0-9!#$%&'*+=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+=?^_`{|}~-]+)*$")


def domain_name(raw: str | None) -> str:
    """The ASCII lower-case form of a domain name (IDNA 2008), or a refusal saying why."""
    text = (raw or "").strip().rstrip(".")
    if not text:
        raise MailsrvError(ResultCode.INVALID_DOMAIN_NAME, "A domain name is required.")
    try:
        ascii_name = idna.encode(text, uts46=True).decode("ascii") if not text.isascii() else text.lower()
    except idna.IDNAError as exc:
        raise MailsrvError(ResultCode.INVALID_DOMAIN_NAME, f"'{raw}' is not a valid domain name: {exc}.") from None
    labels = ascii_name.split(".")
    if len(ascii_name) > 253:
        raise MailsrvError(ResultCode.INVALID_DOMAIN_NAME, f"'{raw}' is longer than 253 characters.")
    if len(labels) < 2:
        raise MailsrvError(ResultCode.INVALID_DOMAIN_NAME, f"'{raw}' needs at least two labels (example.com).")
    for label in labels:
        if not _LABEL.match(label):
            raise MailsrvError(ResultCode.INVALID_DOMAIN_NAME,
                               f"'{raw}' is not a valid domain name: label '{label}' must be 1-63 letters, "
                               "digits or inner hyphens.")
        # An A-label must decode to a valid U-label, or it names nothing a client could show or type.
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except idna.IDNAError as exc:
                raise MailsrvError(ResultCode.INVALID_DOMAIN_NAME,
                                   f"'{raw}' is not a valid domain name: label '{label}' is not a valid A-label "
                                   f"({exc}).") from None
    if labels[-1].isdigit():
        raise MailsrvError(ResultCode.INVALID_DOMAIN_NAME, f"'{raw}' ends in a numeric label.")
    return ascii_name


def local_part(raw: str | None, what: str = "user name") -> str:
    text = (raw or "").strip().lower()
    if not text:
        raise MailsrvError(ResultCode.INVALID_USER_NAME, f"A {what} is required.")
    if len(text) > 64 or not _LOCAL.match(text):
        raise MailsrvError(ResultCode.INVALID_USER_NAME,
                           f"'{raw}' is not a valid {what}: up to 64 letters, digits and . _ - + characters.")
    return text


def address(raw: str | None) -> tuple[str, str]:
    """(local part, domain) of an e-mail address, both in normal form."""
    text = (raw or "").strip()
    local, sep, domain = text.rpartition("@")
    if not sep or not local:
        raise MailsrvError(ResultCode.INVALID_ADDRESS, f"'{raw}' is not an e-mail address (user@domain).")
    try:
        return local_part(local, "mailbox name"), domain_name(domain)
    except MailsrvError as exc:
        raise MailsrvError(ResultCode.INVALID_ADDRESS, f"'{raw}' is not a valid e-mail address: {exc.message}") from None


def address_text(raw: str | None) -> str:
    local, domain = address(raw)
    return f"{local}@{domain}"


# More targets than this is a mailing list, and belongs in one.
MAX_ADDRESSES = 1000


def address_list(items: Iterable[str | None] | None, what: str) -> list[str]:
    """Validated, de-duplicated addresses in the order given (blank entries skipped)."""
    out: list[str] = []
    for item in items or []:
        if item and item.strip() and (text := address_text(item)) not in out:
            out.append(text)
    if len(out) > MAX_ADDRESSES:
        raise MailsrvError(ResultCode.VALUE_OUT_OF_RANGE, f"{what} may have at most {MAX_ADDRESSES} addresses.")
    return out


@dataclass(frozen=True)
class ServerAddress:
    """A server to dial or listen on: `host` an IP address's canonical text or a host name's normal
    form, `port` None when none was given (the caller's default applies)."""
    host: str
    port: int | None

    @property
    def ip(self) -> str | None:
        """`host` when it is an IP address (dialled as is), None for a host name (resolved)."""
        try:
            return str(ipaddress.ip_address(self.host))
        except ValueError:
            return None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


def server_address(raw: str | None, what: str = "server address", *, ip_only: bool = False,
                   port_zero: bool = False) -> ServerAddress:
    """`host`, `host:port`, `IP`, `IP:port`, `[IPv6]`, `[IPv6]:port` or a bare IPv6 address, in normal
    form; INVALID_ARGUMENT naming `what` otherwise. Brackets go exactly around an IPv6 address (a
    bare one takes no port: "::1:25" is an address). The host is an IP address or a valid host name
    (`domain_name`); only an IP address with `ip_only`. The port is 1-65535, or 0-65535 with
    `port_zero` (a listener's "any free port")."""
    text = (raw or "").strip()
    if not text:
        raise MailsrvError(ResultCode.INVALID_ARGUMENT, f"A {what} is required.")

    def refuse(reason: str) -> MailsrvError:
        return MailsrvError(ResultCode.INVALID_ARGUMENT, f"'{text}' is not a {what}: {reason}.")

    if any(c.isspace() for c in text):
        raise refuse("it has a space in it")
    bracketed = text.startswith("[")
    port_text: str | None = None
    if bracketed:
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise refuse("brackets go around an IPv6 address, as in [2001:db8::1]:25")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host = text
    port: int | None = None
    if port_text is not None:
        lowest = 0 if port_zero else 1
        if not (port_text.isascii() and port_text.isdigit() and lowest <= int(port_text) <= 65535):
            raise refuse(f"the port must be {lowest}-65535")
        port = int(port_text)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if bracketed and (ip is None or ip.version != 6):
        raise refuse("brackets go around an IPv6 address, as in [2001:db8::1]:25")
    if ip is not None:
        return ServerAddress(str(ip), port)
    if ip_only:
        raise refuse("the host must be an IP address")
    try:
        # A colon left in the host is a malformed IPv6 address, never a name.
        return ServerAddress(domain_name(host if ":" not in host else ""), port)
    except MailsrvError:
        raise refuse("the host must be an IP address or a host name") from None
