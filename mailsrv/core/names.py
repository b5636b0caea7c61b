"""Validation and normal forms of the names clients send: domains, local parts, addresses."""
from __future__ import annotations

import re
from collections.abc import Iterable

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
