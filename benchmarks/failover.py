"""Fail-over: two `mailsrv serve` servers on one database and one data directory, one SIGKILLed mid-load.

    .venv/bin/python benchmarks/failover.py [--messages 600] [--sessions 8] [--size 2048]
                                            [--sink-delay 0.05] [--workers 1] [--database-url URL]

Two servers (not two workers of one) share the data directory and the database (SQLite file, or
--database-url, e.g. PostgreSQL). The load goes through the spool and the delivery queue: every
message is for a remote address, relayed (loopback is a relay network here) to a sink SMTP server
this script runs on loopback, found through a DNS server it runs too ([dns] nameservers,
[delivery] remote_port). Sessions alternate between the servers; once a third of the messages are
acknowledged, server A is killed with SIGKILL (with workers, the supervisor: they die with it).
The sink takes --sink-delay seconds to answer each message, so that A always has deliveries in
flight when it dies: their recipients are claimed by A until B finds A's heartbeat too old.
Clients whose session to A broke send that message again to B, as a client with two MX hosts would.

Printed:
    fail-over s       from the kill until the sink holds every acknowledged message (the copies
                      are counted once the survivor's spool is empty)
    lost              acknowledged messages the sink never got (must be 0)
    duplicated        copies beyond what the clients asked for, all of them sent after the kill:
                      a message acknowledged once arrived twice (must be 0).
    sent by the killed node, not yet recorded
                      such extra copies whose first one reached the sink before the kill: A had
                      sent it and died before recording the peer's acceptance, so B sends it again
                      (RFC 1047's window; every MTA that survives a crash sends these again).
    resent, both stored
                      a message whose session broke before its 250 and that the client sent again
                      may arrive twice, as SMTP allows.
Exit status 1 when anything was lost or duplicated, or fail-over took longer than 20 s.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import re
import smtplib
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from mail_bench import ROOT, Mailsrv, command_line, provision

sys.path.insert(0, str(ROOT / "tests"))
from dns_server import DnsServer  # noqa: E402  (the tests' DNS server, on loopback UDP)

_NUMBER = re.compile(rb"^X-Number: (\d+)\r?$", re.MULTILINE)
SINK_DOMAIN = "sink.example"


class Sink:
    """What the remote side received: X-Number -> copies, and when the first one came."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.copies: collections.Counter[int] = collections.Counter()
        self.first: dict[int, float] = {}  # time.monotonic()
        self.lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        await asyncio.sleep(self.delay)
        with self.lock:
            for number in map(int, _NUMBER.findall(content)):
                self.copies[number] += 1
                self.first.setdefault(number, time.monotonic())
        return "250 2.0.0 stored"


def message(number: int, size: int) -> bytes:
    head = (f"From: sender@client.example\r\nTo: user@{SINK_DOMAIN}\r\nSubject: fail-over {number}\r\n"
            f"Message-ID: <failover-{number}@client.example>\r\nX-Number: {number}\r\n\r\n").encode()
    return head + (b"x" * 76 + b"\r\n") * max(1, (size - len(head)) // 78)


def server_config(data_dir: Path, name: str, database_url: str, workers: int, dns: DnsServer, sink_port: int) -> Path:
    path = data_dir.parent / f"{name}.toml"
    path.write_text(f'data_dir = "{data_dir}"\ndatabase_url = "{database_url}"\n'
                    f'[server]\nworkers = {workers}\n'
                    '[listen]\nweb = "127.0.0.1:0"\nsmtp = "127.0.0.1:0"\nsubmission = ""\nimap = ""\npop3 = ""\nwebs = ""\nsubmissions = ""\nimaps = ""\npop3s = ""\n'
                    '[smtp]\nhostname = "mx.bench.example"\nrelay_networks = ["127.0.0.0/8"]\n'
                    f'[dns]\nnameservers = ["{dns.address}"]\n'
                    f'[delivery]\nremote_port = {sink_port}\nmax_connections_per_domain = 32\n')
    return path


class Load:
    """The numbers the client threads share, and what became of each."""

    def __init__(self, total: int) -> None:
        self.numbers = iter(range(total))
        self.acks: collections.Counter[int] = collections.Counter()
        self.broken: collections.Counter[int] = collections.Counter()  # DATA sent, no answer
        self.lock = threading.Lock()

    def take(self) -> int | None:
        with self.lock:
            return next(self.numbers, None)


def send(port: int, number: int, size: int) -> bool | None:
    """True: acknowledged; None: the session broke after DATA began (may be stored); False: before."""
    data_sent = False
    try:
        with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=30) as smtp:
            smtp.ehlo()
            for code, reply in (smtp.mail("sender@client.example"), smtp.rcpt(f"user@{SINK_DOMAIN}")):
                if code != 250:
                    raise RuntimeError(f"refused: {code} {reply!r}")  # the set-up is wrong: stop the run
            data_sent = True
            code, _ = smtp.data(message(number, size))
            return code == 250 or None
    except (OSError, smtplib.SMTPException):
        return None if data_sent else False


def client(load: Load, ports: list[int], alive: list[bool], size: int, turn: itertools.count) -> None:
    while (number := load.take()) is not None:
        first = next(turn) % 2
        for index in (first, 1 - first):  # the other server when this one is gone
            if not alive[index]:
                continue
            result = send(ports[index], number, size)
            if result:
                with load.lock:
                    load.acks[number] += 1
                break
            if result is None:
                with load.lock:
                    load.broken[number] += 1


def run(args: argparse.Namespace) -> int:
    sink = Sink(args.sink_delay)
    with socket.socket() as probe:  # aiosmtpd's Controller needs a port number before it binds
        probe.bind(("127.0.0.1", 0))
        sink_port = probe.getsockname()[1]
    controller = Controller(sink, hostname="127.0.0.1", port=sink_port)
    controller.start()
    dns = DnsServer({(SINK_DOMAIN, "MX"): [f"10 mx.{SINK_DOMAIN}."], (f"mx.{SINK_DOMAIN}", "A"): ["127.0.0.1"]})
    with tempfile.TemporaryDirectory(prefix="mailsrv-failover-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        provision(data_dir, args.database_url)
        servers = [Mailsrv(server_config(data_dir, name, args.database_url, args.workers, dns, sink_port))
                   for name in ("a", "b")]
        for server in servers:
            server.start()
        try:
            ports, alive = [s.smtp_port for s in servers], [True, True]
            load, turn = Load(args.messages), itertools.count()
            threads = [threading.Thread(target=client, args=(load, ports, alive, args.size, turn))
                       for _ in range(args.sessions)]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            while sum(load.acks.values()) < args.messages // 3 and any(t.is_alive() for t in threads):
                time.sleep(0.005)
            alive[0] = False
            servers[0].kill()
            killed = time.monotonic()
            for thread in threads:
                thread.join()
            acknowledged = set(load.acks)
            print(f"accepted {len(acknowledged)} of {args.messages} in {killed - started:.1f} s before "
                  f"and {time.monotonic() - killed:.1f} s after the kill; {len(load.broken)} sessions broke",
                  flush=True)
            deadline = killed + args.timeout
            while time.monotonic() < deadline:
                with sink.lock:
                    if acknowledged <= set(sink.copies):
                        break
                time.sleep(0.05)
            failover = time.monotonic() - killed
            # Then until nothing is left to send (what A had claimed, acknowledged or not, and
            # anything sent again): only then are the copies counted.
            servers[1].wait_until_spool_empty(args.timeout)
            emptied = time.monotonic() - killed
            time.sleep(1)
            with sink.lock:
                copies, first = collections.Counter(sink.copies), dict(sink.first)
            lost = len(acknowledged - set(copies))
            resent_both = sum(max(0, copies[n] - max(load.acks[n], 1)) for n in load.broken if n in copies)
            extra = {n: copies[n] - load.acks[n] - load.broken[n] for n in copies}
            # Sent by A before the kill, its acceptance not yet recorded when A died: sent again by B.
            in_doubt = sum(e for n, e in extra.items() if e > 0 and first[n] < killed)
            duplicated = sum(e for n, e in extra.items() if e > 0 and first[n] >= killed)
        finally:
            for server in servers:
                if server.process.poll() is None:
                    server.stop()
            controller.stop()
            dns.close()
    print(f"fail-over s {failover:.1f}  lost {lost}  duplicated {duplicated}  "
          f"sent by the killed node, not yet recorded {in_doubt}  resent, both stored {resent_both}  "
          f"(spool empty {emptied:.1f} s after the kill)")
    return 1 if lost or duplicated or failover > 20 else 0


def main() -> int:
    parser = command_line(__doc__, "shared database (default: one SQLite file)", messages=600, sessions=8, size=2048)
    parser.add_argument("--sink-delay", type=float, default=0.05, help="seconds the sink takes per message")
    parser.add_argument("--workers", type=int, default=1, help="[server] workers of each server")
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for the deliveries")
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
