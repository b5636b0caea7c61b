"""Maildir file names, the one place that builds and reads them (https://cr.yp.to/proto/maildir.html).

A message in new/ is named by its bare key; in cur/ it is `<key>:2,<flags>`, the flags being the
standard letters in ASCII order. The keys we make start with the arrival time,
`<seconds>.M<microseconds>Q<unique>.mailsrv`: folders are ordered by it, and local delivery makes
`unique` the same on every attempt so that a redelivery finds the file it wrote before.
"""
from __future__ import annotations

import datetime as dt
import re

COLON = ":"
_INFO = "2,"  # version 2 of the info part: flag letters follow
FLAG_LETTERS = "DFPRST"
_ARRIVAL = re.compile(r"(\d+)(?:\.M(\d{1,6}))?")


def new_key(when: dt.datetime, unique: str) -> str:
    """The key of a message that arrived at `when`; `unique` must be unique among all messages."""
    return f"{int(when.timestamp())}.M{when.microsecond}Q{unique}.mailsrv"


def file_name(key: str, flags: str = "") -> str:
    """The cur/ name of a message with these flag letters."""
    return f"{key}{COLON}{_INFO}{flags}"


def split(name: str, colon: str = COLON) -> tuple[str, str]:
    """(key, flag letters) of a file name from new/ or cur/; an info part of another version has no flags."""
    key, sep, info = name.partition(colon)
    return key, info[len(_INFO):] if sep and info.startswith(_INFO) else ""


def arrival(name: str) -> tuple[int, int] | None:
    """(seconds, microseconds) at the start of a name or key, None for a name that carries no time."""
    match = _ARRIVAL.match(name)
    if match is None:
        return None
    # The digits after M are microseconds, unpadded (M5000 is 5 ms), as we and Dovecot write them.
    return int(match[1]), int(match[2] or "0")
