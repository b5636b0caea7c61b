"""Maildir file names (mailsrv.mailstore.maildir_names), built and read without a server."""
from __future__ import annotations

import datetime as dt

import pytest

from mailsrv.mailstore.maildir_names import FLAG_LETTERS, arrival, file_name, new_key, split

WHEN = dt.datetime(2026, 3, 10, 9, 30, 15, 250000, tzinfo=dt.timezone.utc)


def test_a_key_starts_with_its_arrival_time_and_ends_in_our_suffix():
    key = new_key(WHEN, "0123abcd_7")
    assert key == "1773135015.M250000Q0123abcd_7.mailsrv"
    assert arrival(key) == (1773135015, 250000)


@pytest.mark.parametrize("flags", ["", "S", "RS", FLAG_LETTERS])
def test_a_cur_name_gives_back_its_key_and_flags(flags):
    key = new_key(WHEN, "u")
    name = file_name(key, flags)
    assert name == f"{key}:2,{flags}"
    assert split(name) == (key, flags)


@pytest.mark.parametrize("name, parts", [
    ("1773135015.M1Q2.mailsrv", ("1773135015.M1Q2.mailsrv", "")),  # in new/: no info yet
    ("1773135015.M1P9.host:2,", ("1773135015.M1P9.host", "")),
    ("other.host:1,experimental", ("other.host", "")),  # an info of another version holds no flags
    ("other.host:", ("other.host", "")),
    ("other.host:2,FS:extra", ("other.host", "FS:extra")),
])
def test_names_written_by_other_programs(name, parts):
    assert split(name) == parts


def test_another_separator_for_file_systems_without_colons():
    assert split("1.M2Q3.mailsrv!2,RS", colon="!") == ("1.M2Q3.mailsrv", "RS")
    assert split("1.M2Q3.mailsrv:2,RS", colon="!") == ("1.M2Q3.mailsrv:2,RS", "")


@pytest.mark.parametrize("name, when", [
    ("1773135015.M250000Q1.mailsrv", (1773135015, 250000)),
    ("1773135015.M5Q1.mailsrv", (1773135015, 5)),  # microseconds, unpadded
    ("1773135015.P123.host:2,S", (1773135015, 0)),
    ("1773135015", (1773135015, 0)),
    ("msg-without-time:2,", None),
    ("", None),
])
def test_arrival_time_of_a_name(name, when):
    assert arrival(name) == when


def test_keys_sort_by_arrival_within_one_second() -> None:
    second = dt.datetime(2026, 3, 10, 9, 30, 15, tzinfo=dt.timezone.utc)
    early, late = (new_key(second.replace(microsecond=us), "x") for us in (5000, 100000))  # M5000, M100000
    assert arrival(early) < arrival(late)
