"""A backlog for a dead destination while mail to a live one flows: the live destination's msg/s
with and without the backlog, in the same run.

    .venv/bin/python benchmarks/destination_backlog.py [--backlog 10000] [--live 1000]
                                                       [--dead refuse|hang] [--database-url URL]

One MailServer in this process runs its queue manager as `mailsrv serve` does (`QueueManager.run`).
A DNS server on loopback sends live.example to an SMTP sink (aiosmtpd, answers at once) on
127.0.0.1 and dead.example to 127.0.0.2 on the same port, where nothing listens (`refuse`:
connection refused) or a socket accepts connections and never greets (`hang`: each attempt waits
for remote delivery's 120 s timeout). Messages are inserted through the engine's enqueue
(`Spool.enqueue`: file, fsync, group commit, as SMTP acceptance does), not over SMTP, so that the
10,000 of the backlog take seconds; the queue is stopped while they are inserted.

    phase 1   --live messages for live.example; the queue runs until the sink has them all
    phase 2   --backlog messages for dead.example (older), then --live for live.example; the queue
              runs until the sink has those too
Printed: each phase's live msg/s, their ratio, and what became of the backlog (deferred, failed,
attempted). Without --database-url an SQLite file in a temporary directory; with it (e.g.
PostgreSQL) every table in that database is dropped first and at the end.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import socket
import sys
import tempfile
import time
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import func, select

from mailsrv.core.config import parse_config
from mailsrv.mta.spool import REMOTE, IncomingMessage, NewRecipient, Spool
from mailsrv.server import MailServer
from mailsrv.store.db import Store
from mailsrv.store.models import SpoolRecipient

from mail_bench import ROOT, command_line, free_port

sys.path.insert(0, str(ROOT / "tests"))
from dns_server import DnsServer  # noqa: E402  (the tests' DNS server, on loopback UDP)

CONTENT = b"From: bench@client.example\r\nSubject: backlog\r\n\r\n" + (b"x" * 76 + b"\r\n") * 13


class Sink:
    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received += 1
        return "250 2.0.0 stored"


async def enqueue(server: MailServer, domain: str, count: int) -> None:
    spool = server.spool
    for start in range(0, count, 500):
        await asyncio.gather(*(spool.enqueue(IncomingMessage(
            id=Spool.new_id(), sender="bench@client.example", content=CONTENT,
            received_at=dt.datetime.now(dt.timezone.utc), client_ip="127.0.0.1", helo="client.example",
            trace_header="", recipients=[NewRecipient(f"u{i}@{domain}", f"u{i}@{domain}", REMOTE)]))
            for i in range(start, min(count, start + 500))))


async def deliver_until(server: MailServer, sink: Sink, target: int) -> float:
    """Run the queue until the sink holds `target` messages; the seconds it took."""
    stop = asyncio.Event()
    started = time.monotonic()
    running = asyncio.create_task(server.delivery.run(stop))
    while sink.received < target:
        await asyncio.sleep(0.005)
        if running.done():
            running.result()
            raise RuntimeError("the queue stopped")
    elapsed = time.monotonic() - started
    stop.set()
    await running
    return elapsed


def backlog_state(server: MailServer) -> dict[str, int]:
    with server.store.reading() as s:
        state = {status: n for status, n in s.execute(
            select(SpoolRecipient.status, func.count()).where(SpoolRecipient.domain == "dead.example")
            .group_by(SpoolRecipient.status))}
        state["attempted"] = s.execute(select(func.count()).where(SpoolRecipient.domain == "dead.example",
                                                                  SpoolRecipient.attempts > 0)).scalar_one()
    return state


async def main_async(args: argparse.Namespace, data_dir: Path) -> None:
    port = free_port()
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    hanging = socket.create_server(("127.0.0.2", port), backlog=1024) if args.dead == "hang" else None
    dns = DnsServer({("live.example", "MX"): ["10 mx.live.example."], ("mx.live.example", "A"): ["127.0.0.1"],
                     ("dead.example", "MX"): ["10 mx.dead.example."], ("mx.dead.example", "A"): ["127.0.0.2"]})
    server = MailServer(parse_config(
        f'data_dir = "{data_dir}"\ndatabase_url = "{args.database_url}"\n'
        f'[dns]\nnameservers = ["{dns.address}"]\n[smtp]\nhostname = "mx.bench.example"\n'
        f'[delivery]\nremote_port = {port}\n'))
    try:
        await enqueue(server, "live.example", args.live)
        alone = await deliver_until(server, sink, args.live)
        started = time.monotonic()
        await enqueue(server, "dead.example", args.backlog)
        inserted = time.monotonic() - started
        await enqueue(server, "live.example", args.live)
        behind = await deliver_until(server, sink, 2 * args.live)
        state = backlog_state(server)
    finally:
        await server.spool.close()
        server.remote_delivery.abort()
        if args.database_url:
            server.store.drop_all()
        server.close()
        controller.stop()
        dns.close()
        if hanging is not None:
            hanging.close()
    without, with_backlog = args.live / alone, args.live / behind
    print(f"database                 {'SQLite' if not args.database_url else args.database_url.split('@')[-1]}")
    print(f"dead destination         {args.dead}; backlog {args.backlog} messages inserted through "
          f"Spool.enqueue in {inserted:.1f} s")
    print(f"live msg/s, no backlog   {without:8.1f}  ({args.live} in {alone:.2f} s)")
    print(f"live msg/s, backlog      {with_backlog:8.1f}  ({args.live} in {behind:.2f} s)")
    print(f"ratio (backlog / none)   {with_backlog / without:8.2f}")
    print(f"backlog afterwards       {state}  (recipients by status; 'attempted': those dialled; with "
          "hang, these still wait for the 120 s timeout when the run stops)")


def main() -> None:
    parser = command_line(__doc__, backlog=10_000, live=1000)
    parser.add_argument("--dead", choices=["refuse", "hang"], default="refuse")
    args = parser.parse_args()
    if args.database_url:
        Store(args.database_url).drop_all()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main_async(args, Path(tmp) / "data"))


if __name__ == "__main__":
    main()
