"""Propagation of one domain setting over many domains (svcGlobalUpdate's job), time and memory.

    .venv/bin/python benchmarks/propagation.py [--domains 100000] [--batch 1000] [--database-url URL]

The domains are inserted straight into the store with bulk SQL (rows only, no directories and no
administrators): AddDomain makes each domain's directory tree and primary administrator (a password
hash, a journalled directory) and would take far longer than the propagation measured here. Then
UpdateAllDomainSettings' engine call starts the job (`GlobalUpdate.start`) and this process works it
to the end as one node (`Jobs.run_until_idle`: `--batch` domains per transaction), twice:

    run 1   wall time, and the process's peak resident set (ru_maxrss) before and after
    run 2   the same with tracemalloc on (slower): the peak of Python allocations during the job,
            which stays flat in the number of domains (no domain is loaded into Python)

Without --database-url, an SQLite file in a temporary directory; with it (e.g. PostgreSQL), every
table in that database is dropped first and at the end.
"""
from __future__ import annotations

import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

from sqlalchemy import func, insert, select

from mailsrv.core import settings
from mailsrv.core.config import parse_config
from mailsrv.server import MailServer
from mailsrv.store.db import Store
from mailsrv.store.models import Domain

from mail_bench import ADMIN, command_line


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def fill(server: MailServer, count: int) -> float:
    values = settings.defaults(settings.DOMAIN)
    started = time.perf_counter()
    for first in range(0, count, 10_000):
        with server.store.session() as s:
            s.execute(insert(Domain), [{"name": f"d{i}.bench.test", "path": f"/nonexistent/d{i}.bench.test",
                                        "primary_admin": "postmaster", "settings": values}
                                       for i in range(first, min(count, first + 10_000))])
    return time.perf_counter() - started


def propagate(server: MailServer, assignment: str) -> tuple[float, int]:
    actor = server.login(*ADMIN, "127.0.0.1")
    started = time.perf_counter()
    server.global_update.start(actor, [assignment])
    batches = server.jobs.run_until_idle("bench-node")
    return time.perf_counter() - started, batches


def main() -> None:
    parser = command_line(__doc__, domains=100_000, batch=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mailsrv-propagation-") as tmp:
        if args.database_url:
            Store(args.database_url).drop_all()
        config = parse_config(f'data_dir = "{Path(tmp) / "data"}"\ndatabase_url = "{args.database_url}"\n'
                              f'[jobs]\nbatch_size = {args.batch}\n')
        server = MailServer(config)
        try:
            server.admins.reset_primary(*ADMIN)
            database = "PostgreSQL" if args.database_url else "SQLite"
            print(f"database: {database}; {args.domains:,} domains inserted with bulk SQL in "
                  f"{fill(server, args.domains):.1f} s (rows only: AddDomain, which makes directories and "
                  f"an administrator per domain, is far slower)")
            before = rss_mb()
            seconds, batches = propagate(server, "requiresmtpauthentication=False")
            print(f"run 1: requiresmtpauthentication=False over {args.domains:,} domains in {seconds:.2f} s "
                  f"({args.domains / seconds:,.0f} domains/s, {batches} batches of {args.batch}); "
                  f"peak RSS {before:.0f} MB before, {rss_mb():.0f} MB after")
            tracemalloc.start()
            seconds, _ = propagate(server, "requiresmtpauthentication=True")
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            print(f"run 2 (tracemalloc on): {seconds:.2f} s; peak of Python allocations during the job "
                  f"{peak / 1024 / 1024:.1f} MB")
            with server.store.reading() as s:
                applied = s.execute(select(func.count(Domain.id))
                                    .where(Domain.settings["requiresmtpauthentication"].as_boolean())).scalar_one()
            print(f"domains with the value: {applied:,} of {args.domains:,}")
            if applied != args.domains:
                raise SystemExit(1)
        finally:
            if args.database_url:
                server.store.drop_all()
            server.close()


if __name__ == "__main__":
    main()
