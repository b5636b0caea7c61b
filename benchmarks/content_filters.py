"""SMTP acceptance with the content filters on (3 DNS blocklists, spamd, clamd) next to off, in one run.

    .venv/bin/python benchmarks/content_filters.py [--messages 300] [--sessions 8] [--rounds 3]
                                                   [--spamd-children 2] [--filters rbl,spamd,clamd]
                                                   [--workers 1] [--database-url URL]

One `mailsrv serve` (benchmarks/mail_bench.py), its DNS the tests' loopback DNS server, which lists
the client (127.0.0.1) in one of three blocklist zones (weight 1: below every threshold, so mail
still reaches the inbox); a real spamd (--spamd-children children, local tests only) and a real clamd
(a one-signature database) on loopback, started as the tests start them (tests/content_daemons.py).
The load is benchmarks/address_lists.py's: one message per connection over --sessions connections.
Rounds alternate: filters off, then on (options written through the engine while the server runs,
as another node would; --filters picks which are on), and so on. Printed: accepted msg/s per round and the ratio of the medians.
"""
from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

from address_lists import _load
from mail_bench import ADMIN, ROOT, Mailsrv, command_line, provision

sys.path.insert(0, str(ROOT / "tests"))
from content_daemons import start_clamd, start_spamd  # noqa: E402  (the tests' daemons on loopback)
from dns_server import DnsServer  # noqa: E402  (the tests' DNS server, on loopback UDP)

ZONES = ("zen.bench.example", "bl.bench.example", "dnsbl.bench.example")


def set_filters(config: Path, on: set[str], spamd_port: int, clamd_port: int) -> None:
    from mailsrv.core.config import parse_config
    from mailsrv.server import MailServer

    server = MailServer(parse_config(config.read_text()))
    try:
        actor = server.login(*ADMIN, "127.0.0.1")
        filters = server.content_filters
        if not filters.spamassassin_servers():
            filters.add_spamassassin(actor, "bench", "127.0.0.1", spamd_port)
        filters.set_antispam(actor, [f"rbls={','.join(f'{z}=1' for z in ZONES) if 'rbl' in on else ''}",
                                     f"spamassassinenabled={'spamd' in on}"])
        filters.set_antivirus(actor, [f"enabled={'clamd' in on}", f"clamdaddress=127.0.0.1:{clamd_port}"])
    finally:
        server.close()


def main() -> int:
    parser = command_line(__doc__, messages=300, sessions=8, rounds=3, spamd_children=2, workers=1)
    parser.add_argument("--filters", default="rbl,spamd,clamd", help="the filters of the 'on' rounds")
    args = parser.parse_args()
    dns = DnsServer({(f"1.0.0.127.{ZONES[0]}", "A"): ["127.0.0.2"]})
    with tempfile.TemporaryDirectory(prefix="mailsrv-filters-") as name:
        data_dir = Path(name).resolve()
        config = provision(data_dir, args.database_url, args.workers)
        config.write_text(config.read_text() + f'[dns]\nnameservers = ["{dns.address}"]\n')
        spamd = start_spamd(data_dir / "spamd", args.spamd_children)
        clamd = start_clamd(data_dir / "clamd")
        server = Mailsrv(config)
        server.start()
        try:
            asyncio.run(_load(server.smtp_port, 50, args.sessions))  # warm-up
            rates: dict[bool, list[float]] = {False: [], True: []}
            for round_number in range(2 * args.rounds):
                on = bool(round_number % 2)
                set_filters(config, set(args.filters.split(",")) if on else set(), spamd.port, clamd.port)
                rate = asyncio.run(_load(server.smtp_port, args.messages, args.sessions))
                rates[on].append(rate)
                print(f"filters {'on' if on else 'off'}: accepted {rate:.1f} msg/s", flush=True)
        finally:
            server.stop()
            spamd.stop()
            clamd.stop()
            dns.close()
    ratio = statistics.median(rates[True]) / statistics.median(rates[False])
    print(f"on / off, medians: {statistics.median(rates[True]):.1f} / {statistics.median(rates[False]):.1f} msg/s "
          f"= {ratio:.2f} ({args.messages} messages each, {args.sessions} sessions, one message per connection, "
          f"filters {args.filters}, spamd children = {args.spamd_children}, workers = {args.workers})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
