"""Bandwidth and traffic: a domain's (or one user's) messages and bytes, sent and received, by
day over a range, as server-drawn SVG charts, with the totals of GetDomainStatistics
(GetUserStats for a user) for the same range and a CSV for billing."""
from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from mailsrv.core.clock import Clock
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.directory.domains import Domains
from mailsrv.directory.stats import DayTraffic, Stats, Traffic
from mailsrv.directory.user_activity import UserActivity
from mailsrv.directory.web_sessions import SignedIn
from services.web.admin.site import AdminSite, call
from services.web.render import security_headers

DEFAULT_DAYS = 30
MAX_DAYS = 366 * 5
CHART_WIDTH, CHART_HEIGHT = 760, 180


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    height: float
    title: str


@dataclass(frozen=True)
class Chart:
    title: str
    series: list[tuple[str, str, list[Bar]]]  # (label, colour, bars)
    peak: int
    width: int = CHART_WIDTH
    height: int = CHART_HEIGHT


@dataclass(frozen=True)
class Query:
    domain: str
    user: str
    first: dt.date
    last: dt.date


def _chart(title: str, days: list[dt.date], by_day: dict[dt.date, Traffic],
           series: list[tuple[str, str, str]]) -> Chart:
    """Bars per day, one thin bar per series side by side; heights scaled to the largest value."""
    peak = max([getattr(by_day.get(day, Traffic()), field) for day in days for _, field, _ in series] + [1])
    slot = CHART_WIDTH / max(len(days), 1)
    width = slot / len(series)
    drawn = []
    for index, (label, field, colour) in enumerate(series):
        bars = []
        for n, day in enumerate(days):
            value = getattr(by_day.get(day, Traffic()), field)
            height = value / peak * (CHART_HEIGHT - 10)
            bars.append(Bar(n * slot + index * width, CHART_HEIGHT - height, height, f"{day}: {value} {label.lower()}"))
        drawn.append((label, colour, bars))
    return Chart(title, drawn, peak)


class TrafficPages:
    def __init__(self, site: AdminSite, stats: Stats, user_activity: UserActivity, domains: Domains,
                 clock: Clock) -> None:
        self.site = site
        self.stats = stats
        self.user_activity = user_activity
        self.domains = domains
        self.clock = clock

    async def _query(self, request: Request, session: SignedIn) -> Query:
        params = request.query_params
        today = self.clock.now().astimezone(dt.timezone.utc).date()
        try:
            last = dt.date.fromisoformat(params.get("end") or today.isoformat())
            first = dt.date.fromisoformat(params.get("start") or (last - dt.timedelta(days=DEFAULT_DAYS - 1)).isoformat())
        except ValueError:
            raise MailsrvError(ResultCode.INVALID_ARGUMENT, "Dates are written YYYY-MM-DD.") from None
        if not 0 <= (last - first).days < MAX_DAYS:
            raise MailsrvError(ResultCode.VALUE_OUT_OF_RANGE,
                               f"The start date must be before the end date, at most {MAX_DAYS} days earlier.")
        domain = (params.get("domain") or session.actor.domain).strip().lower()
        if not domain:
            first_page = await call(self.domains.search, session.actor, "", 0, 1)
            domain = first_page.rows[0].name if first_page.rows else ""
        return Query(domain, (params.get("user") or "").strip().lower(), first, last)

    async def _figures(self, session: SignedIn, q: Query) -> tuple[list[DayTraffic], Traffic]:
        start = dt.datetime.combine(q.first, dt.time(), dt.timezone.utc)
        end = dt.datetime.combine(q.last, dt.time(), dt.timezone.utc)
        series = await call(self.stats.daily, session.actor, q.domain, q.user or None, start, end)
        if q.user:
            total = await call(self.user_activity.traffic, session.actor, f"{q.user}@{q.domain}", start, end)
        else:
            total = await call(self.stats.domain, session.actor, q.domain, start, end)  # GetDomainStatistics
        return series, total

    async def page(self, request: Request, session: SignedIn) -> Response:
        q = await self._query(request, session)
        context: dict[str, object] = {"q": q, "charts": [], "total": None, "rows": []}
        if q.domain:
            series, total = await self._figures(session, q)
            by_day = {row.day: row.traffic for row in series}
            days = [q.first + dt.timedelta(days=n) for n in range((q.last - q.first).days + 1)]
            context.update(total=total, rows=series, charts=[
                _chart("Messages", days, by_day, [("Received", "messages_received", "#2b6cb0"),
                                                  ("Sent", "messages_sent", "#dd6b20")]),
                _chart("Bytes", days, by_day, [("Received", "bytes_received", "#2b6cb0"),
                                               ("Sent", "bytes_sent", "#dd6b20")])])
        return self.site.render(request, session, "admin/traffic.html", context)

    async def csv(self, request: Request, session: SignedIn) -> Response:
        q = await self._query(request, session)
        series, total = await self._figures(session, q)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(["day", "domain", "user", "messages_received", "messages_sent", "bytes_received", "bytes_sent"])
        for row in series:
            t = row.traffic
            writer.writerow([row.day.isoformat(), q.domain, q.user, t.messages_received, t.messages_sent,
                             t.bytes_received, t.bytes_sent])
        writer.writerow(["total", q.domain, q.user, total.messages_received, total.messages_sent,
                         total.bytes_received, total.bytes_sent])
        name = f"traffic-{q.domain}{'-' + q.user if q.user else ''}-{q.first}-{q.last}.csv"
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                        headers={**security_headers(), "Content-Disposition": f'attachment; filename="{name}"'})
