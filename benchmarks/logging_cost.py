"""What the per-event log costs SMTP throughput: one run each with logging off, text and JSON, in turn.

    .venv/bin/python benchmarks/logging_cost.py [--messages 2000] [--sessions 16] [--size 4096]
                                                [--rounds 3] [--workers N] [--database-url URL]
    .venv/bin/python benchmarks/logging_cost.py --per-event

Each round starts `mailsrv serve` three times (in an order rotated by round) on a fresh data directory, logging into a file
(`[log] file`): "off" is `level = "WARNING"` (no event line is written; the metrics still count),
"text" and "json" are `level = "INFO"` in that format (per message: connect, auth-less queued,
delivery, disconnect). Load: Postfix's `smtp-source` (package postfix), as in
benchmarks/throughput_smtp.py. Printed: the median over the rounds of accepted and end-to-end
msg/s per variant, and each logged variant's cost against "off".
"""
from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mail_bench import MAILSRV, ROOT, Mailsrv, command_line, free_port, maildir, maildir_files, provision
from throughput_smtp import load

VARIANTS = {"off": 'level = "WARNING"\n', "text": 'format = "text"\n', "json": 'format = "json"\n'}


class LoggingMailsrv(Mailsrv):
    """`mailsrv serve` on ports chosen here (with logging off, nothing names them in the log)."""

    def __init__(self, config: Path, ports: dict[str, int]) -> None:
        super().__init__(config)
        self.chosen = ports

    def start(self, timeout: float = 60) -> None:
        self.ports = {}
        self.process = subprocess.Popen([*MAILSRV, "serve", "--config", str(self.config)],
                                        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
                                        stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not all(_accepting(port) for port in self.chosen.values()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.process.kill()
                raise RuntimeError("mailsrv serve did not open its listeners")
            time.sleep(0.05)
        self.ports = dict(self.chosen)


def _accepting(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def run(args: argparse.Namespace, tmp: Path, name: str, round_: int) -> tuple[float, float, int]:
    data_dir = tmp / f"{name}-{round_}"
    data_dir.mkdir()
    config = provision(data_dir, args.database_url, args.workers)
    log = data_dir / "mailsrv.log"
    ports = {"web": free_port(), "SMTP": free_port()}
    text = config.read_text().replace('web = "127.0.0.1:0"', f'web = "127.0.0.1:{ports["web"]}"')
    text = text.replace('smtp = "127.0.0.1:0"', f'smtp = "127.0.0.1:{ports["SMTP"]}"')
    config.write_text(text + f'[log]\nfile = "{log}"\n{VARIANTS[name]}')
    server = LoggingMailsrv(config, ports)
    server.start()
    try:
        rates = load(server.smtp_port, args, lambda: len(maildir_files(maildir(data_dir))))
    finally:
        server.stop()
    return rates.accepted, rates.end_to_end, sum(1 for _ in log.open(errors="replace"))


def per_event(count: int = 50_000) -> None:
    """What one `delivery` event costs in this process, per format, written into a file."""
    from mailsrv.core import events, logs
    from mailsrv.core.config import LogConfig

    with tempfile.TemporaryDirectory(prefix="mailsrv-events-") as directory:
        for name, (log_format, level) in {"off": ("text", "WARNING"), "text": ("text", "INFO"),
                                          "json": ("json", "INFO")}.items():
            logs.configure(LogConfig(format=log_format, level=level, file=str(Path(directory) / name)))
            start = time.perf_counter()
            for _ in range(count):
                events.emit("delivery", "d0ed0ab6392649ec82528a45bbf48272", to="bob@a.test", kind="local",
                            size=4096, relay="local", delay=0.01, dsn="2.0.0", status="sent",
                            reply="delivered to maildir")
            print(f"{name:>4}: {(time.perf_counter() - start) / count * 1e6:.1f} us per delivery event")


def main() -> int:
    parser = command_line(__doc__, messages=2000, sessions=16, size=4096, rounds=3, workers=0)
    parser.add_argument("--per-event", action="store_true",
                        help="only the cost of one event line in this process, per format (no server)")
    args = parser.parse_args()
    if args.per_event:
        per_event()
        return 0
    if shutil.which("smtp-source") is None:
        print("smtp-source not found: apt-get install -y postfix", file=sys.stderr)
        return 2
    results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="mailsrv-logging-") as directory:
        tmp = Path(directory).resolve()
        names = list(VARIANTS)
        for round_ in range(args.rounds):
            # Each round starts with another variant: load from the rest of the machine that grows or
            # shrinks during a round is not charged to one variant every time.
            for name in names[round_ % len(names):] + names[:round_ % len(names)]:
                if args.database_url:  # each run starts on an empty database
                    from mailsrv.store.db import Store
                    store = Store(args.database_url)
                    store.drop_all()
                    store.close()
                results[name].append(run(args, tmp, name, round_))
                accepted, end_to_end, lines = results[name][-1]
                print(f"round {round_ + 1} {name:>4}: accepted {accepted:.0f} msg/s, end-to-end {end_to_end:.0f} "
                      f"msg/s, {lines} log lines", flush=True)
    medians = {name: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
               for name, runs in results.items()}
    print(f"-- medians of {args.rounds} rounds ({args.messages} x {args.size} B, {args.sessions} sessions, "
          f"workers = {args.workers or 'one per core'})")
    for name, (accepted, end_to_end) in medians.items():
        line = f"{name:>4}: accepted {accepted:.0f} msg/s, end-to-end {end_to_end:.0f} msg/s"
        if name != "off":
            off = medians["off"]
            line += (f"  (cost: accepted {100 * (1 - accepted / off[0]):+.1f} %, "
                     f"end-to-end {100 * (1 - end_to_end / off[1]):+.1f} %)")
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
