"""SMTP acceptance with every check on, next to every check off and next to Postfix, in one run.

    .venv/bin/python benchmarks/all_checks.py [--messages 300] [--sessions 8] [--size 4096] [--rounds 3]
                                              [--spamd-children 2] [--workers 1] [--no-postfix]
                                              [--database-url URL --database-url-on URL]

Composes the other hygiene benchmarks' set-ups, nothing of its own but the rounds:
  off      a `mailsrv serve` as provisioned, SPF / DKIM verification / DMARC off (sender_auth.py);
  on       a second one with all of them: SPF, DKIM verification and DMARC (action Reject, so every
           message must pass: sender_auth.py), greylisting with the triplet already passed and four
           abuse rules never reached, the DoS one counting every connection (abuse_greylisting.py),
           3 DNS blocklists (the client listed in one, weight 1), a real spamd and a real clamd
           (content_filters.py, tests/content_daemons.py);
  postfix  Postfix plain, as throughput_smtp.py configures it (no milter: see docs/performance.md).
The DNS (SPF, DMARC, the DKIM key, the blocklist zone) is the tests' loopback server. The message and
the load are sender_auth.py's: one RSA-2048 DKIM-signed message, --sessions smtplib sessions each
sending its share of --messages over one connection. Rounds cycle off, on, postfix. Printed:
accepted msg/s per round and the medians' ratios.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
from pathlib import Path

from abuse_greylisting import switch_on
from content_filters import ZONES, set_filters, start_clamd, start_spamd
from mail_bench import Mailsrv, provision
from sender_auth import load, set_sender_checks, signed_message
from throughput_smtp import free_port, postfix_config, postfix_running

from dns_server import DnsServer, txt  # the tests' loopback DNS server (tests/: on the path through sender_auth)

FILTERS = {"rbl", "spamd", "clamd"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each kind, in turn")
    parser.add_argument("--spamd-children", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-postfix", action="store_true")
    parser.add_argument("--database-url", default="", help="the 'off' server's store (default: SQLite)")
    parser.add_argument("--database-url-on", default="", help="the 'on' server's store (default: SQLite)")
    args = parser.parse_args()
    dns = DnsServer({("client.example", "TXT"): [txt("v=spf1 ip4:127.0.0.1 -all")],
                     ("_dmarc.client.example", "TXT"): [txt("v=DMARC1; p=reject")],
                     (f"1.0.0.127.{ZONES[0]}", "A"): ["127.0.0.2"]}, ttl=300)
    message = signed_message(args.size, dns)
    kinds = ["off", "on"] + ([] if args.no_postfix else ["postfix"])
    rates: dict[str, list[float]] = {kind: [] for kind in kinds}
    with tempfile.TemporaryDirectory(prefix="mailsrv-all-checks-") as name:
        root = Path(name).resolve()
        os.chmod(root, 0o755)  # Postfix's unprivileged processes walk into it
        configs = {}
        for kind, url in (("off", args.database_url), ("on", args.database_url_on)):
            (root / kind).mkdir()
            configs[kind] = provision(root / kind, url, args.workers)
            configs[kind].write_text(configs[kind].read_text() + f'[dns]\nnameservers = ["{dns.address}"]\n')
        spamd = start_spamd(root / "spamd", args.spamd_children)
        clamd = start_clamd(root / "clamd")
        set_sender_checks(configs["off"], False)
        set_sender_checks(configs["on"], True)
        switch_on(configs["on"], dos=True)
        set_filters(configs["on"], FILTERS, spamd.port, clamd.port)
        servers = {kind: Mailsrv(config) for kind, config in configs.items()}
        ports = {}
        try:
            for kind, server in servers.items():
                server.start()
                ports[kind] = server.smtp_port
            if not args.no_postfix:
                ports["postfix"] = free_port()
                postfix_config(root / "postfix", ports["postfix"], root / "postfix-mail")
            with postfix_running(root / "postfix", ports["postfix"]) if not args.no_postfix \
                    else contextlib.nullcontext():
                for kind in kinds:
                    load(ports[kind], message, 20, min(args.sessions, 4))  # warm-up
                for _ in range(args.rounds):
                    for kind in kinds:
                        rates[kind].append(load(ports[kind], message, args.messages, args.sessions))
                        print(f"{kind}: accepted {rates[kind][-1]:.1f} msg/s", flush=True)
        finally:
            for server in servers.values():
                server.stop()
            spamd.stop()
            clamd.stop()
            dns.close()
    medians = {kind: statistics.median(values) for kind, values in rates.items()}
    print(f"medians: off {medians['off']:.1f}, every check on {medians['on']:.1f} msg/s, on / off "
          f"{medians['on'] / medians['off']:.2f}"
          + (f"; Postfix plain {medians['postfix']:.1f} msg/s, mailsrv on / Postfix "
             f"{medians['on'] / medians['postfix']:.2f}" if "postfix" in medians else "")
          + f" ({args.messages} x {len(message)} B, {args.sessions} sessions, spamd children = "
          f"{args.spamd_children}, workers = {args.workers})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
