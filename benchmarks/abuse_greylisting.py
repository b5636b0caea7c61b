"""SMTP acceptance with abuse detection counting and greylisting (passed triplets) on, next to off.

    .venv/bin/python benchmarks/abuse_greylisting.py [--messages 500] [--sessions 8] [--rounds 3]
                                                     [--workers 1] [--database-url URL --database-url-on URL]

Two `mailsrv serve` (benchmarks/mail_bench.py), each on its own store: "off" as configured by
default (no abuse rule but the default brute-force one, greylisting disabled), "on" with
`[greylisting] enabled`, the sending triplet already passed in the store, and a DoS, a harvesting, an
internal-spammer and a bounce rule whose thresholds are never reached (so every connection is
counted: one UPSERT per connection in the store; --without-dos leaves that rule out). The client of benchmarks/address_lists.py sends
ONE message per connection from 127.0.0.1; rounds alternate off / on. Printed: accepted msg/s of
each round and the ratio of the medians.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import statistics
import sys
import tempfile
from pathlib import Path

from address_lists import _load
from mail_bench import ADMIN, DOMAIN, USER, Mailsrv, command_line, provision

SENDER = "sender@client.example"
GREYLISTING = "[greylisting]\nenabled = true\n"


def switch_on(config: Path, dos: bool) -> None:
    """Append greylisting to the config, store the rules and the passed triplet (as an admin would)."""
    from mailsrv.core.config import parse_config
    from mailsrv.server import MailServer
    from mailsrv.store.models import GreylistTriplet

    config.write_text(config.read_text() + GREYLISTING)
    server = MailServer(parse_config(config.read_text()))
    try:
        actor = server.login(*ADMIN, "127.0.0.1")
        never = 500_000
        for kind, action, notify in ([("DOS", "Block", "")] if dos else []) + [
                ("Harvesting", "Block", ""), ("InternalSpammer", "Notify", f"{USER}@{DOMAIN}"),
                ("Bounces", "Notify", f"{USER}@{DOMAIN}")]:
            server.abuse_rules.add(actor, kind, "SMTP", action, 60, never, 60, notify, "bench")
        with server.store.session() as s:
            s.add(GreylistTriplet(network="127.0.0.0/24", sender=SENDER, recipient=f"{USER}@{DOMAIN}",
                                  first_seen=dt.datetime.now(dt.timezone.utc),
                                  passed_until=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30)))
    finally:
        server.close()


def main() -> int:
    parser = command_line(__doc__, "the 'off' server's store (default: SQLite)",
                          messages=500, sessions=8, workers=1, rounds=3)
    parser.add_argument("--without-dos", action="store_true",
                        help="no DoS rule: connections are not counted (only the block is read at connect)")
    parser.add_argument("--database-url-on", default="", help="the 'on' server's store (default: SQLite)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mailsrv-abuse-") as name:
        root = Path(name).resolve()
        (root / "off").mkdir()
        (root / "on").mkdir()
        off_config = provision(root / "off", args.database_url, args.workers)
        on_config = provision(root / "on", args.database_url_on, args.workers)
        switch_on(on_config, not args.without_dos)
        servers = {False: Mailsrv(off_config), True: Mailsrv(on_config)}
        for server in servers.values():
            server.start()
        try:
            for server in servers.values():
                asyncio.run(_load(server.smtp_port, 100, args.sessions))  # warm-up
            rates: dict[bool, list[float]] = {False: [], True: []}
            for round_number in range(2 * args.rounds):
                on = bool(round_number % 2)
                rate = asyncio.run(_load(servers[on].smtp_port, args.messages, args.sessions))
                rates[on].append(rate)
                print(f"{'on ' if on else 'off'}: accepted {rate:.0f} msg/s", flush=True)
        finally:
            for server in servers.values():
                server.stop()
    ratio = statistics.median(rates[True]) / statistics.median(rates[False])
    print(f"abuse counting + greylisting (passed) on / off, medians: {ratio:.2f} ({args.messages} messages "
          f"each, {args.sessions} sessions, one message per connection, workers = {args.workers})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
