"""Every datetime column stores an instant and hands it back aware, in UTC, on SQLite (which keeps
naive text) as on PostgreSQL (timestamptz): mailsrv.store.models.UtcDateTime, so no caller fixes
up what it reads."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import StatementError

from mailsrv.store.models import LoginFailure

UTC = dt.timezone.utc
NEW_YORK_WINTER = dt.timezone(dt.timedelta(hours=-5))


def test_a_time_reads_back_aware_utc_whatever_zone_it_was_written_in(make_server):
    store = make_server().store
    written = dt.datetime(2026, 3, 10, 4, 30, 15, 250000, tzinfo=NEW_YORK_WINTER)
    with store.session() as s:
        s.add(LoginFailure(client_ip="192.0.2.1", login="alice@a.test", at=written))
    expected = dt.datetime(2026, 3, 10, 9, 30, 15, 250000, tzinfo=UTC)
    with store.session() as s:
        row = s.execute(select(LoginFailure)).scalar_one()
        newest = s.execute(select(func.max(LoginFailure.at))).scalar_one()
        found = s.execute(select(LoginFailure.at).where(LoginFailure.at >= expected)).scalars().all()
    with store.read_connection() as conn:
        core = conn.execute(select(LoginFailure.at)).scalar_one()
    for value in (row.at, newest, core):
        assert (value, value.utcoffset()) == (expected, dt.timedelta(0))
        assert value.tzinfo is UTC
    assert found == [expected]


def test_a_naive_time_is_refused_rather_than_guessed(make_server):
    store = make_server().store
    with pytest.raises(StatementError, match="naive"):
        with store.session() as s:
            s.add(LoginFailure(client_ip="192.0.2.1", login="alice@a.test", at=dt.datetime(2026, 3, 10, 9, 30)))
    with store.session() as s:
        assert s.execute(select(func.count()).select_from(LoginFailure)).scalar_one() == 0
