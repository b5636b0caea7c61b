"""Relay throughput through one mailsrv acting as outgoing gateway, next to Postfix relaying to the
same SMTP sink on the same machine in the same run.

    .venv/bin/python benchmarks/relay_vs_postfix.py [--messages 1000] [--sessions 8] [--size 4096]
                                                    [--workers N] [--no-postfix] [--database-url URL]

The gateway is set up as the seed's outgoing gateway, over its SOAP API: `relay=Nobody`, and the
client (the "primary", here Postfix's `smtp-source` on 127.0.0.1) on the SMTP IP whitelist. It
delivers by MX lookup (a loopback DNS server run here: sink.example MX → 127.0.0.1) to the sink on
`[delivery] remote_port`. Postfix relays with `relayhost = [127.0.0.1]:<sink port>` from a throwaway
configuration directory (as in throughput_smtp.py). The sink is an aiosmtpd server in this process
that accepts and counts every message. Printed per relay:
  accepted msg/s    messages / smtp-source's elapsed time (every DATA answered 250);
  relayed msg/s     messages / time until the sink has received all of them.
Run under `flock /tmp/bench.lock` so that no other benchmark shares the CPUs.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from mail_bench import ADMIN, ROOT, Mailsrv, command_line
from throughput_smtp import free_port, postfix_config, postfix_running

sys.path.insert(0, str(ROOT / "tests"))
from dns_server import DnsServer  # noqa: E402  (the tests' loopback DNS server)

SINK_DOMAIN = "sink.example"
RECIPIENT = f"somebody@{SINK_DOMAIN}"
SENDER = "sender@client.example"


class Sink:
    """Counts the messages it accepts (every recipient, every size)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._lock:
            self.count += 1
        return "250 2.0.0 sunk"


def load(port: int, args: argparse.Namespace, sink: Sink) -> tuple[float, float]:
    """(accepted msg/s, relayed msg/s) of one smtp-source run against 127.0.0.1:port."""
    sink.count = 0
    start = time.monotonic()
    subprocess.run(["smtp-source", "-c", "-l", str(args.size), "-m", str(args.messages), "-s", str(args.sessions),
                    "-f", SENDER, "-t", RECIPIENT, "-M", "client.example", f"127.0.0.1:{port}"],
                   check=True, stdout=subprocess.DEVNULL)
    accepted = time.monotonic() - start
    while sink.count < args.messages:
        if time.monotonic() - start > 600:
            raise RuntimeError(f"only {sink.count} of {args.messages} messages reached the sink")
        time.sleep(0.02)
    return args.messages / accepted, args.messages / (time.monotonic() - start)


def soap_post(web_port: int, service: str, operation: str, params: list[tuple[str, str]]) -> None:
    """One operation over the HTTP POST binding, as the system administrator; fails unless Result is true."""
    body = urllib.parse.urlencode([("AuthUserName", ADMIN[0]), ("AuthPassword", ADMIN[1]), *params]).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{web_port}/Services/{service}.asmx/{operation}", data=body,
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(request, timeout=30) as response:
        reply = response.read().decode()
    if "<Result>true</Result>" not in reply:
        raise RuntimeError(f"{operation} failed: {reply[:300]}")


def gateway_config(data_dir: Path, args: argparse.Namespace, dns: DnsServer, sink_port: int) -> Path:
    from mailsrv.core.config import parse_config
    from mailsrv.server import MailServer

    config = data_dir / "mailsrv.toml"
    config.write_text(f'data_dir = "{data_dir}"\ndatabase_url = "{args.database_url}"\n'
                      '[listen]\nweb = "127.0.0.1:0"\nsmtp = "127.0.0.1:0"\nsubmission = ""\nimap = ""\npop3 = ""\nwebs = ""\nsubmissions = ""\nimaps = ""\npop3s = ""\n'
                      '[smtp]\nhostname = "gateway.bench.example"\n'
                      f'[dns]\nnameservers = ["{dns.address}"]\n'
                      f'[delivery]\nremote_port = {sink_port}\n'
                      f'[server]\nworkers = {args.workers}\n')
    server = MailServer(parse_config(config.read_text()))  # the first login, as `mailsrv admin reset` sets it
    try:
        server.admins.reset_primary(*ADMIN)
    finally:
        server.close()
    return config


def run_mailsrv(args: argparse.Namespace, tmp: Path, sink: Sink, sink_port: int) -> tuple[float, float]:
    dns = DnsServer({(SINK_DOMAIN, "MX"): ["10 mx.sink.example."], ("mx.sink.example", "A"): ["127.0.0.1"],
                     ("client.example", "A"): ["127.0.0.1"]})
    data_dir = tmp / "mailsrv"
    data_dir.mkdir()
    gateway = Mailsrv(gateway_config(data_dir, args, dns, sink_port))
    gateway.start()
    try:
        # The seed's outgoing gateway: nobody relays, except the primary on the SMTP whitelist.
        soap_post(gateway.web_port, "svcServerAdmin", "SetRequestedSystemSettings", [("newSettings", "relay=Nobody")])
        soap_post(gateway.web_port, "svcServerAdmin", "SetWhitelistEntry",
                  [("ipAddress", "127.0.0.1"), ("ipRangeStart", ""), ("ipRangeEnd", ""), ("whitelistSMTP", "true"),
                   ("whitelistPOP", "false"), ("whitelistIMAP", "false"), ("description", "primary")])
        print(f"mailsrv pid {gateway.process.pid}", flush=True)
        return load(gateway.smtp_port, args, sink)
    finally:
        gateway.stop()
        dns.close()


def run_postfix(args: argparse.Namespace, tmp: Path, sink: Sink, sink_port: int) -> tuple[float, float]:
    directory, port = tmp / "postfix", free_port()
    postfix_config(directory, port, tmp / "postfix-mail")
    with open(directory / "main.cf", "a") as main_cf:
        main_cf.write(f"relayhost = [127.0.0.1]:{sink_port}\n")
    with postfix_running(directory, port):
        return load(port, args, sink)


def main() -> int:
    parser = command_line(__doc__, messages=1000, sessions=8, size=4096)
    parser.add_argument("--workers", type=int, default=0, help="the gateway's [server] workers (0: one per core)")
    parser.add_argument("--no-postfix", action="store_true")
    args = parser.parse_args()
    if shutil.which("smtp-source") is None:
        print("smtp-source not found: apt-get install -y postfix", file=sys.stderr)
        return 2
    sink, sink_port = Sink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=sink_port)
    controller.start()
    shape = f"{args.messages} x {args.size} B, {args.sessions} sessions"
    try:
        with tempfile.TemporaryDirectory(prefix="mailsrv-relay-") as name:
            tmp = Path(name).resolve()
            os.chmod(tmp, 0o755)  # Postfix's unprivileged processes walk into it
            mailsrv = run_mailsrv(args, tmp, sink, sink_port)
            print(f"mailsrv gateway (workers = {args.workers or 'one per core'}): accepted {mailsrv[0]:.0f} msg/s, "
                  f"relayed {mailsrv[1]:.0f} msg/s ({shape})", flush=True)
            if args.no_postfix:
                return 0
            try:
                postfix = run_postfix(args, tmp, sink, sink_port)
            except (subprocess.CalledProcessError, RuntimeError, KeyError) as exc:
                print(f"postfix: not measured ({exc})")
                return 0
            print(f"postfix: accepted {postfix[0]:.0f} msg/s, relayed {postfix[1]:.0f} msg/s ({shape})")
            print(f"mailsrv / postfix: accepted {mailsrv[0] / postfix[0]:.2f}, relayed {mailsrv[1] / postfix[1]:.2f}")
    finally:
        controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
