"""Rendering the administration pages with 10,000 domains × 365 days of traffic counters.

    .venv/bin/python benchmarks/admin_pages.py [--domains 10000] [--days 365] [--requests 20] [--database-url URL]

The domains and a year of daily counters for each (one row per domain and day: 3.65 million rows by
default) are inserted straight into the store with bulk SQL, as benchmarks/propagation.py does
(AddDomain makes a directory tree and an administrator per domain and would take far longer). The
web application is served by uvicorn on a loopback socket, as `mailsrv serve` does, and one
signed-in HTTP client asks each page `--requests` times; the median and the slowest are printed:

    dashboard                  /admin/  (status keys, counts over every domain)
    domains, first page        /admin/domains
    domains, page 150          /admin/domains?page=150
    domains, search            /admin/domains?q=d9999
    bandwidth, 365 days        /admin/traffic?domain=…&start=…&end=…  (chart of 365 days, totals of
                               GetDomainStatistics' engine call)
    bandwidth CSV, 365 days    /admin/traffic.csv?…

Without --database-url, an SQLite file in a temporary directory; with it (e.g. PostgreSQL), every
table in that database is dropped first and at the end.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import insert, select

from mailsrv.core import settings
from mailsrv.core.config import parse_config
from mailsrv.serve import serve_web, tcp_listener
from mailsrv.server import MailServer
from mailsrv.store.db import Store
from mailsrv.store.models import Domain, TrafficDaily
from services.app import create_app

from mail_bench import ADMIN, command_line

LAST_DAY = dt.date(2026, 12, 1)


def fill(server: MailServer, count: int, days: int) -> float:
    values = settings.defaults(settings.DOMAIN)
    started = time.perf_counter()
    for first in range(0, count, 10_000):
        with server.store.session() as s:
            s.execute(insert(Domain), [{"name": f"d{i:05}.bench.test", "path": f"/nonexistent/d{i}.bench.test",
                                        "primary_admin": "postmaster", "settings": values}
                                       for i in range(first, min(count, first + 10_000))])
    with server.store.reading() as s:
        ids = list(s.execute(select(Domain.id).order_by(Domain.id)).scalars())
    day_list = [LAST_DAY - dt.timedelta(days=n) for n in range(days)]
    chunk = max(1, 50_000 // days)
    for first in range(0, len(ids), chunk):
        with server.store.session() as s:
            s.execute(insert(TrafficDaily), [
                {"domain_id": domain_id, "user_id": 0, "day": day, "messages_received": (domain_id + n) % 97,
                 "messages_sent": (domain_id * n) % 53, "bytes_received": ((domain_id + n) % 97) * 4096,
                 "bytes_sent": ((domain_id * n) % 53) * 2048}
                for domain_id in ids[first:first + chunk] for n, day in enumerate(day_list)])
    return time.perf_counter() - started


def timed(client: httpx.Client, url: str, requests: int) -> tuple[float, float]:
    seconds = []
    for _ in range(requests):
        started = time.perf_counter()
        answer = client.get(url)
        seconds.append(time.perf_counter() - started)
        if answer.status_code != 200:
            raise SystemExit(f"{url}: HTTP {answer.status_code}\n{answer.text[:2000]}")
    return statistics.median(seconds) * 1000, max(seconds) * 1000


def main() -> None:
    parser = command_line(__doc__, domains=10_000, days=365, requests=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mailsrv-admin-pages-") as tmp:
        if args.database_url:
            Store(args.database_url).drop_all()
        config = parse_config(f'data_dir = "{Path(tmp) / "data"}"\ndatabase_url = "{args.database_url}"\n'
                              '[smtp]\nhostname = "mail.bench.test"\n')
        server = MailServer(config)
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        sock = tcp_listener("127.0.0.1", 0)
        thread = threading.Thread(target=loop.run_until_complete,
                                  args=(serve_web(create_app(server), sock, None, stop),), daemon=True)
        try:
            server.admins.reset_primary(*ADMIN)
            database = "PostgreSQL" if args.database_url else "SQLite"
            print(f"database: {database}; {args.domains:,} domains and {args.domains * args.days:,} daily counter "
                  f"rows inserted with bulk SQL in {fill(server, args.domains, args.days):.1f} s")
            thread.start()
            base = f"http://127.0.0.1:{sock.getsockname()[1]}"
            with httpx.Client(base_url=base, timeout=60) as client:
                for _ in range(100):
                    try:
                        client.get("/admin/login")
                        break
                    except httpx.TransportError:
                        time.sleep(0.05)
                signed = client.post("/admin/login", data={"email": ADMIN[0], "password": ADMIN[1]})
                assert signed.status_code == 303, signed.text
                first = (LAST_DAY - dt.timedelta(days=args.days - 1)).isoformat()
                middle = f"d{args.domains // 2:05}.bench.test"
                traffic = f"domain={middle}&start={first}&end={LAST_DAY}"
                print(f"median and slowest of {args.requests} requests, one signed-in client on loopback:")
                for label, url in (("dashboard", "/admin/"), ("domains, first page", "/admin/domains"),
                                   ("domains, page 150", "/admin/domains?page=150"),
                                   ("domains, search", f"/admin/domains?q=d{args.domains - 1:05}"),
                                   (f"bandwidth, {args.days} days", f"/admin/traffic?{traffic}"),
                                   (f"bandwidth CSV, {args.days} days", f"/admin/traffic.csv?{traffic}")):
                    median, slowest = timed(client, url, args.requests)
                    print(f"  {label:<28} median {median:7.1f} ms   slowest {slowest:7.1f} ms")
        finally:
            loop.call_soon_threadsafe(stop.set)
            thread.join(15)
            if args.database_url:
                server.store.drop_all()
            server.close()


if __name__ == "__main__":
    main()
