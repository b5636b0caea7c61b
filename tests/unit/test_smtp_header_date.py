"""The Received header's date (mailsrv.access.smtp.header_date, formatted once a second) is
email.utils.format_datetime's, whatever the order of the times asked for and their offsets."""
from __future__ import annotations

import datetime as dt
import email.utils
import random

from mailsrv.access.smtp import header_date


def test_the_date_is_format_datetimes_for_any_sequence_of_times():
    rng = random.Random(7)
    start = dt.datetime(2026, 12, 6, 23, 59, 58, tzinfo=dt.timezone.utc)
    zones = [dt.timezone.utc, dt.timezone(dt.timedelta(hours=2)), dt.timezone(dt.timedelta(hours=-5, minutes=-30))]
    for _ in range(5000):
        when = start + dt.timedelta(microseconds=rng.randrange(0, 5_000_000))
        when = when.astimezone(rng.choice(zones))
        if rng.random() < 0.1:
            when = when.replace(tzinfo=None)  # naive: "-0000"
        assert header_date(when) == email.utils.format_datetime(when), when
