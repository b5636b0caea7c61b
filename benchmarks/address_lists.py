"""SMTP acceptance with 1,000 IP whitelist and 1,000 blacklist entries, next to none, in one run.

    .venv/bin/python benchmarks/address_lists.py [--messages 500] [--sessions 8] [--entries 1000]
                                                 [--rounds 3] [--workers 1] [--database-url URL]

One `mailsrv serve` (benchmarks/mail_bench.py); a small asyncio client sends --messages messages over
--sessions concurrent connections, ONE message per connection (so the connect-time blacklist check
and the MAIL-time list reads count fully), to one local mailbox from 127.0.0.1, which no entry
covers. --rounds rounds of each kind alternate: without lists, then with --entries whitelist entries
(IPv4 /24 blocks) and as many blacklist entries (half IPv4 addresses, half IPv6 ranges) written into
the store while the server runs, and so on. Printed: accepted msg/s of each round and the ratio of
the medians ("with" / "without"): on a shared machine single rounds vary more than the lists cost.
"""
from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mail_bench import DOMAIN, USER, Mailsrv, command_line, provision

BODY = b"From: sender@client.example\r\nSubject: bench\r\n\r\n" + (b"x" * 70 + b"\r\n") * 30


async def _one(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def expect(code: bytes) -> None:
        while True:
            line = await reader.readline()
            if line[3:4] != b"-":
                break
        if not line.startswith(code):
            raise RuntimeError(f"expected {code!r}, got {line!r}")

    await expect(b"220")
    for command, code in ((b"EHLO client.example", b"250"), (b"MAIL FROM:<sender@client.example>", b"250"),
                          (f"RCPT TO:<{USER}@{DOMAIN}>".encode(), b"250"), (b"DATA", b"354")):
        writer.write(command + b"\r\n")
        await expect(code)
    writer.write(BODY + b".\r\n")
    await expect(b"250")
    writer.write(b"QUIT\r\n")
    await expect(b"221")
    writer.close()
    await writer.wait_closed()


async def _load(port: int, messages: int, sessions: int) -> float:
    remaining = iter(range(messages))

    async def session() -> None:
        for _ in remaining:
            await _one(port)

    start = time.monotonic()
    await asyncio.gather(*(session() for _ in range(sessions)))
    return messages / (time.monotonic() - start)


def set_lists(config: Path, entries: int, on: bool) -> None:
    """Write (or delete) the entries straight into the store, in one transaction, as another node
    would; the serving processes see them at their next connection. (SetWhitelistEntry checks each
    entry against the list: 2,000 of them take a minute, which would leave room for few rounds.)"""
    from sqlalchemy import delete

    from mailsrv.core.config import parse_config
    from mailsrv.directory.address_lists import BLACKLIST, WHITELIST, parse_span
    from mailsrv.store.db import Store
    from mailsrv.store.models import IpListEntry

    def entry(kind: str, single: str, start: str = "", end: str = "") -> IpListEntry:
        span = parse_span(single, start, end)
        return IpListEntry(list=kind, ip_address=span.ip_address, range_start=span.range_start,
                           range_end=span.range_end, first=str(span.first), last=str(span.last), smtp=True, pop=True,
                           imap=True, xmpp=False, disable_greylisting=False, description="bench")

    store = Store(parse_config(config.read_text()).effective_database_url)
    try:
        with store.session() as s:
            s.execute(delete(IpListEntry))
            if on:
                s.add_all(entry(WHITELIST, f"10.{i // 256}.{i % 256}.0/24") for i in range(entries))
                s.add_all(entry(BLACKLIST, "", f"2001:db8:{i:x}::", f"2001:db8:{i:x}::ff") if i % 2
                          else entry(BLACKLIST, f"172.16.{i // 256}.{i % 256}") for i in range(entries))
    finally:
        store.close()


def main() -> int:
    parser = command_line(__doc__, messages=500, sessions=8, entries=1000, workers=1, rounds=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mailsrv-lists-") as name:
        data_dir = Path(name).resolve()
        config = provision(data_dir, args.database_url, args.workers)
        server = Mailsrv(config)
        server.start()
        try:
            asyncio.run(_load(server.smtp_port, 100, args.sessions))  # warm-up
            rates: dict[bool, list[float]] = {False: [], True: []}
            for round_number in range(2 * args.rounds):
                with_lists = bool(round_number % 2)
                set_lists(config, args.entries, with_lists)
                rate = asyncio.run(_load(server.smtp_port, args.messages, args.sessions))
                rates[with_lists].append(rate)
                print(f"{'with' if with_lists else 'without'} lists: accepted {rate:.0f} msg/s", flush=True)
        finally:
            server.stop()
    ratio = statistics.median(rates[True]) / statistics.median(rates[False])
    print(f"{args.entries} whitelist + {args.entries} blacklist entries / none, medians: {ratio:.2f} "
          f"({args.messages} messages each, {args.sessions} sessions, one message per connection, "
          f"workers = {args.workers})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
