"""SetSubscriberList of 100,000 addresses through the engine (MailingLists.set_members), time and memory.

    .venv/bin/python benchmarks/list_subscribers.py [--subscribers 100000] [--database-url URL]

One domain and one list, made through the engine as svcMailListAdmin would. Then three replace-all
calls of --subscribers addresses each, every one a single transaction:

    run 1   onto the empty list: every address inserted
    run 2   half the addresses kept, half new: as many deleted as inserted
    run 3   the same as run 2 with tracemalloc on (slower): the peak of Python allocations during the
            call, next to the size of the argument itself (the address strings a SOAP call hands over)
    run 4   the same replace as a SetSubscriberList SOAP request over HTTP to the web listener, under the
            default configuration ([web] max_request_bytes 4 MB, max_list_request_bytes 16 MB): its size,
            time and answer
    run 5   a SetSubscriberList request over max_list_request_bytes: the SOAP fault it gets

Printed per run: wall time and the process's peak resident set (ru_maxrss). Without --database-url,
an SQLite file in a temporary directory; with it (e.g. PostgreSQL), every table in that database is
dropped first and at the end.
"""
from __future__ import annotations

import resource
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import httpx
import uvicorn
from lxml import etree
from sqlalchemy import func, select

from mailsrv.core.config import parse_config
from mailsrv.serve import tcp_listener
from mailsrv.server import MailServer
from mailsrv.store.db import Store
from mailsrv.store.models import SUBSCRIBER, ListMember
from services.app import create_app

from mail_bench import ADMIN, command_line

DOMAIN = "lists.bench.test"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def addresses(first: int, count: int) -> list[str]:
    # Mixed case and 1,000 domains, as a pasted list would be: validation and folding are measured too.
    return [f"Subscriber.{i}@Example{i % 1000}.org" for i in range(first, first + count)]


def soap_request(batch: list[str]) -> bytes:
    items = "".join(f"<string>{a}</string>" for a in batch)
    return (f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/'
            f'envelope/"><soap:Body><SetSubscriberList xmlns="http://tempuri.org/"><AuthUserName>{ADMIN[0]}'
            f"</AuthUserName><AuthPassword>{ADMIN[1]}</AuthPassword><DomainName>{DOMAIN}</DomainName>"
            f"<ListName>big</ListName><Subscribers>{items}</Subscribers></SetSubscriberList></soap:Body>"
            f"</soap:Envelope>").encode()


def over_http(server: MailServer, n: int) -> None:
    """Runs 4 and 5: SetSubscriberList over the web listener (uvicorn in a thread, as `serve` runs it)."""
    sock = tcp_listener("127.0.0.1", 0)
    web = uvicorn.Server(uvicorn.Config(create_app(server), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=web.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not web.started:
        time.sleep(0.01)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/Services/svcMailListAdmin.asmx"
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": "http://tempuri.org/SetSubscriberList"}
    try:
        body = soap_request(addresses(3 * n // 2, n))
        started = time.perf_counter()
        answer = httpx.post(url, content=body, headers=headers, timeout=600)
        seconds = time.perf_counter() - started
        result = etree.fromstring(answer.content).findtext(".//{http://tempuri.org/}Result")
        print(f"run 4 (SOAP over HTTP, {len(body) / 1024 / 1024:.1f} MB request): HTTP {answer.status_code}, "
              f"Result {result}, {seconds:.2f} s; peak RSS {rss_mb():.0f} MB")
        with server.store.reading() as s:
            stored = s.execute(select(func.count()).select_from(ListMember)).scalar_one()
        if answer.status_code != 200 or result != "true" or stored != n:
            print(f"stored {stored:,} subscribers, expected {n:,}")
            raise SystemExit(1)
        limit = server.config.web.max_list_request_bytes
        big = soap_request(addresses(0, limit // 40))
        answer = httpx.post(url, content=big, headers=headers, timeout=600)
        fault = etree.fromstring(answer.content).findtext(".//faultstring")
        print(f"run 5 (a {len(big) / 1024 / 1024:.1f} MB request): HTTP {answer.status_code}, SOAP fault: {fault}")
    finally:
        web.should_exit = True
        thread.join(10)
        sock.close()


def main() -> None:
    parser = command_line(__doc__, subscribers=100_000)
    args = parser.parse_args()
    n = args.subscribers
    with tempfile.TemporaryDirectory(prefix="mailsrv-list-subscribers-") as tmp:
        if args.database_url:
            Store(args.database_url).drop_all()
        config = parse_config(f'data_dir = "{Path(tmp) / "data"}"\ndatabase_url = "{args.database_url}"\n')
        server = MailServer(config)
        try:
            server.admins.reset_primary(*ADMIN)
            actor = server.login(*ADMIN, "127.0.0.1")
            server.domains.add(actor, DOMAIN, "", "postmaster", "Bench-pass-123", "", "", {})
            server.mailing_lists.add(actor, DOMAIN, "big", "", "")
            print(f"database: {'PostgreSQL' if args.database_url else 'SQLite'}; {n:,} addresses per call")
            runs = (("run 1 (empty list, all inserted)", addresses(0, n), False),
                    ("run 2 (half kept, half new)", addresses(n // 2, n), False),
                    ("run 3 (half kept, half new; tracemalloc on)", addresses(n, n), True))
            for label, batch, traced in runs:
                argument_mb = (sys.getsizeof(batch) + sum(sys.getsizeof(a) for a in batch)) / 1024 / 1024
                if traced:
                    tracemalloc.start()
                started = time.perf_counter()
                server.mailing_lists.set_members(actor, DOMAIN, "big", SUBSCRIBER, batch)
                seconds = time.perf_counter() - started
                line = f"{label}: {seconds:.2f} s ({n / seconds:,.0f} addresses/s); peak RSS {rss_mb():.0f} MB"
                if traced:
                    _, peak = tracemalloc.get_traced_memory()
                    tracemalloc.stop()
                    line += (f"; peak of Python allocations during the call {peak / 1024 / 1024:.1f} MB "
                             f"(the argument itself: {argument_mb:.1f} MB)")
                print(line)
                with server.store.reading() as s:
                    stored = s.execute(select(func.count()).select_from(ListMember)).scalar_one()
                if stored != n:
                    print(f"stored {stored:,} subscribers, expected {n:,}")
                    raise SystemExit(1)
            over_http(server, n)
        finally:
            if args.database_url:
                server.store.drop_all()
            server.close()


if __name__ == "__main__":
    main()
