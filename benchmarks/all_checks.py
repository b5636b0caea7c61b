"""SMTP acceptance with every check on, next to every check off and next to Postfix, in one run.

    .venv/bin/python benchmarks/all_checks.py [--messages 300] [--sessions 8] [--size 4096] [--rounds 3]
                                              [--spamd-children 2] [--workers 1] [--no-postfix]
                                              [--filters rbl,spamd,clamd]
                                              [--database-url URL --database-url-on URL]

Composes the other hygiene benchmarks' set-ups, nothing of its own but the rounds:
  off      a `mailsrv serve` as provisioned, SPF / DKIM verification / DMARC off (sender_auth.py);
  on       a second one with all of them: SPF, DKIM verification and DMARC (action Reject, so every
           message must pass: sender_auth.py), greylisting with the triplet already passed and four
           abuse rules never reached, the DoS one counting every connection (abuse_greylisting.py),
           3 DNS blocklists (the client listed in one, weight 1), a real spamd and a real clamd
           (content_filters.py, tests/content_daemons.py);
  postfix  Postfix plain, as throughput_smtp.py configures it;
  postfix-milters  the same with opendkim (verify), spamass-milter and clamav-milter calling the
           same spamd and clamd (Debian packages opendkim, spamass-milter, clamav-milter; no SPF,
           DMARC, greylisting or blocklist step: Postfix's counterparts are other packages).
The DNS (SPF, DMARC, the DKIM key, the blocklist zone) is the tests' loopback server. The message and
the load are sender_auth.py's: one RSA-2048 DKIM-signed message, --sessions smtplib sessions each
sending its share of --messages over one connection. Rounds cycle off, on, postfix, postfix-milters. Printed:
accepted msg/s per round and the medians' ratios.
"""
from __future__ import annotations

import contextlib
import os
import statistics
import sys
import tempfile
from pathlib import Path

from abuse_greylisting import switch_on
from content_filters import ZONES, set_filters, start_clamd, start_spamd
from mail_bench import Mailsrv, command_line, provision
from sender_auth import load, set_sender_checks, signed_message
from throughput_smtp import free_port, postfix_config, postfix_running

from content_daemons import Daemon  # the tests' daemon starter (tests/: on the path through content_filters)
from dns_server import DnsServer, txt  # the tests' loopback DNS server


def start_milters(directory: Path, dns: DnsServer, spamd: Daemon, clamd: Daemon, spam: bool) -> list[Daemon]:
    """Postfix's counterparts of mailsrv's checks (Debian opendkim, spamass-milter, clamav-milter), on
    loopback: opendkim verifying through an Unbound configuration that forwards to the benchmark's
    DNS (opendkim cannot be told a port otherwise), the others calling the same spamd (if `spam`) and clamd."""
    directory.mkdir()
    host, port = dns.address.split(":")
    (directory / "unbound.conf").write_text(
        f'server:\n  do-not-query-localhost: no\nforward-zone:\n  name: "."\n  forward-addr: {host}@{port}\n')
    (directory / "internal").write_text("192.0.2.1\n")  # not 127.0.0.1 (the default): verify its mail
    ports = [free_port() for _ in range(3)]
    (directory / "opendkim.conf").write_text(
        f"Mode v\nSocket inet:{ports[0]}@127.0.0.1\nResolverConfiguration {directory}/unbound.conf\n"
        f"InternalHosts {directory}/internal\nBackground no\nSyslog no\nAlwaysAddARHeader yes\n")
    (directory / "clamav-milter.conf").write_text(
        f"MilterSocket inet:{ports[2]}@127.0.0.1\nClamdSocket tcp:127.0.0.1:{clamd.port}\nForeground yes\n"
        "OnInfected Reject\nAddHeader Replace\n")
    return [Daemon(argv, port, directory / f"{argv[0]}.log") for argv, port in zip((
        ["opendkim", "-f", "-x", str(directory / "opendkim.conf")],
        ["spamass-milter", "-p", f"inet:{ports[1]}@127.0.0.1", "--", "-d", "127.0.0.1", "-p", str(spamd.port)],
        ["clamav-milter", "-c", str(directory / "clamav-milter.conf")]), ports) if spam or argv[0] != "spamass-milter"]


def main() -> int:
    parser = command_line(__doc__, "the 'off' server's store (default: SQLite)",
                          messages=300, sessions=8, size=4096, rounds=3, spamd_children=2, workers=1)
    parser.add_argument("--no-postfix", action="store_true")
    parser.add_argument("--filters", default="rbl,spamd,clamd",
                        help="the content filters of 'on' (and so the milters: spamd in it, spamass-milter)")
    parser.add_argument("--database-url-on", default="", help="the 'on' server's store (default: SQLite)")
    args = parser.parse_args()
    filters = set(args.filters.split(","))
    # TTL an hour, as real SPF / DKIM key records: every cache (mailsrv's, opendkim's Unbound) keeps
    # them through the run. The milter chain still tempfails (451 at end of message) the odd message
    # on a cold cache, a fault not diagnosed (opendkim's DNS error policy is the guess): a refused
    # message stops the run, as on mailsrv's side.
    dns = DnsServer({("client.example", "TXT"): [txt("v=spf1 ip4:127.0.0.1 -all")],
                     ("_dmarc.client.example", "TXT"): [txt("v=DMARC1; p=reject")],
                     (f"1.0.0.127.{ZONES[0]}", "A"): ["127.0.0.2"]}, ttl=3600)
    message = signed_message(args.size, dns)
    postfixes = [] if args.no_postfix else ["postfix", "postfix-milters"]
    kinds = ["off", "on", *postfixes]
    rates: dict[str, list[float]] = {kind: [] for kind in kinds}
    with tempfile.TemporaryDirectory(prefix="mailsrv-all-checks-") as name, contextlib.ExitStack() as running:
        root = Path(name).resolve()
        os.chmod(root, 0o755)  # Postfix's unprivileged processes walk into it
        running.callback(dns.close)
        spamd = start_spamd(root / "spamd", args.spamd_children)
        running.callback(spamd.stop)
        clamd = start_clamd(root / "clamd")
        running.callback(clamd.stop)
        ports = {}
        for kind, url in (("off", args.database_url), ("on", args.database_url_on)):
            (root / kind).mkdir()
            config = provision(root / kind, url, args.workers)
            config.write_text(config.read_text() + f'[dns]\nnameservers = ["{dns.address}"]\n')
            set_sender_checks(config, kind == "on")
            if kind == "on":
                switch_on(config, dos=True)
                set_filters(config, filters, spamd.port, clamd.port)
            server = Mailsrv(config)
            server.start()
            running.callback(server.stop)
            ports[kind] = server.smtp_port
        for kind in postfixes:
            milters = (start_milters(root / "milters", dns, spamd, clamd, "spamd" in filters)
                       if kind == "postfix-milters" else [])
            for milter in milters:
                running.callback(milter.stop)
            ports[kind] = free_port()
            postfix_config(root / kind, ports[kind], root / f"{kind}-mail",
                           milters=tuple(f"inet:127.0.0.1:{milter.port}" for milter in milters))
            running.enter_context(postfix_running(root / kind, ports[kind]))
        for kind in kinds:
            load(ports[kind], message, 20, min(args.sessions, 4))  # warm-up
        for _ in range(args.rounds):
            for kind in kinds:
                rates[kind].append(load(ports[kind], message, args.messages, args.sessions))
                print(f"{kind}: accepted {rates[kind][-1]:.1f} msg/s", flush=True)
    medians = {kind: statistics.median(values) for kind, values in rates.items()}
    print("medians (msg/s): " + ", ".join(f"{kind} {rate:.1f}" for kind, rate in medians.items())
          + f"; mailsrv on / off {medians['on'] / medians['off']:.2f}"
          + "".join(f", mailsrv on / {kind} {medians['on'] / medians[kind]:.2f}" for kind in postfixes)
          + f" ({args.messages} x {len(message)} B, {args.sessions} sessions, spamd children = "
          f"{args.spamd_children}, workers = {args.workers}, filters {args.filters})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
