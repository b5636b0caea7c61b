"""Conversion between the contract's XSD simple types and Python values.

The same rules serve SOAP element text and HTTP GET/POST parameters:

- string   -> str (as sent; "" stays "")
- boolean  -> bool; reads true/false/1/0 in any case (XSD's forms plus .NET Boolean.Parse's
              True/False, which old scripts send); writes true/false
- int      -> int in the 32-bit range; long -> int in the 64-bit range (plain decimal, optional sign)
- guid     -> str, lower case; reads the 8-4-4-4-12 hex form
- dateTime -> datetime, always timezone-aware UTC

dateTime on the wire: we read ISO 8601 `YYYY-MM-DD` or `YYYY-MM-DDThh:mm:ss[.fraction]`, with `Z`,
an offset, or no zone. A zoned value is converted to UTC; an unzoned one is taken as UTC (the server
counts whole UTC days). We always write `YYYY-MM-DDThh:mm:ss` in UTC, without a zone suffix and
without fractions: that is how ASP.NET writes a DateTime of unspecified kind, so .NET proxies read
the digits unchanged instead of shifting them into the client's local time zone.
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from mailsrv.core.clock import as_utc

UTC = dt.timezone.utc

_INTEGER = re.compile(r"[+-]?[0-9]+")
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DATETIME = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})"
    r"(?:T(?P<time>[0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.(?P<fraction>[0-9]+))?)?"
    r"(?P<zone>Z|[+-][0-9]{2}:[0-9]{2})?")


class BadValue(ValueError):
    """A parameter's text is not a value of its declared type; the message says which and why."""


def _parse_boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise BadValue("is not a boolean (true or false)")


def _integer_parser(bits: int) -> Callable[[str], int]:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def parse(text: str) -> int:
        # int() alone would also take "1_000" and non-ASCII digits, which .NET refuses.
        if not _INTEGER.fullmatch(text):
            raise BadValue("is not a whole number")
        value = int(text)
        if not low <= value <= high:
            raise BadValue(f"is outside the range {low} to {high}")
        return value

    return parse


def _parse_guid(text: str) -> str:
    if not _GUID.fullmatch(text):
        raise BadValue("is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")
    return text.lower()


def _parse_datetime(text: str) -> dt.datetime:
    match = _DATETIME.fullmatch(text)
    if not match:
        raise BadValue("is not an ISO 8601 date or date and time")
    fraction = (match["fraction"] or "")[:6].ljust(6, "0")
    zone = match["zone"]
    try:
        value = dt.datetime.fromisoformat(f"{match['date']}T{match['time'] or '00:00:00'}.{fraction}"
                                          f"{'+00:00' if zone == 'Z' else zone or ''}")
    except ValueError:
        raise BadValue("is not a valid calendar date and time") from None
    try:
        return as_utc(value)
    except OverflowError:
        # e.g. 0001-01-01T00:00:00+14:00: in UTC it falls before year 1, which no datetime holds.
        raise BadValue("is outside the dates 0001-01-01 to 9999-12-31 once converted to UTC") from None


def _format_datetime(value: dt.datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    # isoformat, not strftime: strftime writes year 1 (.NET's DateTime.MinValue) as "1".
    return value.replace(tzinfo=None, microsecond=0).isoformat()


def _format_integer(value: Any) -> str:
    # bool is an int subclass; a handler returning True for a count is a bug worth seeing as 1.
    return str(int(value))


_PARSERS: dict[str, Callable[[str], Any]] = {
    "string": lambda text: text,
    "boolean": _parse_boolean,
    "int": _integer_parser(32),
    "long": _integer_parser(64),
    "guid": _parse_guid,
    "dateTime": _parse_datetime,
}

_FORMATTERS: dict[str, Callable[[Any], str]] = {
    "string": str,
    "boolean": lambda value: "true" if value else "false",
    "int": _format_integer,
    "long": _format_integer,
    "guid": lambda value: str(value).lower(),
    "dateTime": _format_datetime,
}

# What .NET leaves in a value-type field nobody set: written when a handler leaves one out.
VALUE_TYPE_DEFAULTS: dict[str, Any] = {
    "boolean": False,
    "int": 0,
    "long": 0,
    "guid": "00000000-0000-0000-0000-000000000000",
    "dateTime": dt.datetime(1, 1, 1),
}

SIMPLE_TYPES = frozenset(_PARSERS)


def is_value_type(type_name: str) -> bool:
    """True for types .NET cannot leave null (they always have a value on the wire)."""
    return type_name in VALUE_TYPE_DEFAULTS


def parse_value(type_name: str, text: str) -> Any:
    """Read `text` as a value of the XSD simple type; raises BadValue."""
    if type_name != "string":
        # XSD collapses whitespace for every non-string simple type; .NET does the same.
        text = text.strip()
    return _PARSERS[type_name](text)


def format_value(type_name: str, value: Any) -> str:
    return _FORMATTERS[type_name](value)


def formatter(type_name: str) -> Callable[[Any], str]:
    """`format_value` for one type, looked up once."""
    return _FORMATTERS[type_name]
