"""What an SMTP session costs the server up to the end of RCPT: connections that each say EHLO, MAIL,
RCPT, RSET and QUIT (no DATA, so no spool and no delivery), as smtp-source's sessions do before
their message.

    .venv/bin/python benchmarks/smtp_sessions.py [--sessions 5000] [--concurrency 16] [--workers 1]
                                                 [--rounds 3] [--database-url URL] [--dos-rule]

One `mailsrv serve` (provisioned as in benchmarks/throughput_smtp.py: one domain, one mailbox) takes
the sessions from an asyncio client in a process of its own (this one reads the server's log),
`--concurrency` at a time; printed per round:
sessions per second and the server's CPU time per session (user + system, every process and
thread of it, from /proc), which is what the server spends whatever else loads the machine.
`--dos-rule`: with an abuse detection DoS rule for SMTP that counts every connection (its
threshold out of reach).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mail_bench import ADMIN, DOMAIN, USER, Mailsrv, command_line, provision

COMMANDS = [b"EHLO client.example\r\n", b"MAIL FROM:<sender@client.example> SIZE=4096\r\n",
            f"RCPT TO:<{USER}@{DOMAIN}>\r\n".encode(), b"RSET\r\n", b"QUIT\r\n"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` and its children (the worker processes)."""
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(child) for child in children.read_text().split()]
    ticks = 0
    for each in pids:
        fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


async def reply(reader: asyncio.StreamReader) -> bytes:
    """One reply (the last line of a multi-line one); refuses anything but 2xx/3xx."""
    while True:
        line = await reader.readline()
        if not line or line[:1] not in b"23":
            raise RuntimeError(f"unexpected reply {line!r}")
        if line[3:4] != b"-":
            return line


async def session(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await reply(reader)
        for command in COMMANDS:
            writer.write(command)
            await reply(reader)
    finally:
        writer.close()


async def sessions(port: int, count: int, concurrency: int) -> None:
    left = iter(range(count))

    async def client() -> None:
        for _ in left:
            await session(port)
    await asyncio.gather(*(client() for _ in range(concurrency)))


def add_dos_rule(config: Path) -> None:
    from mailsrv.core.config import parse_config
    from mailsrv.server import MailServer

    server = MailServer(parse_config(config.read_text()))
    try:
        actor = server.login(*ADMIN, "127.0.0.1")
        server.abuse_rules.add(actor, "DOS", "SMTP", "Block", 60, 500_000, 60, "", "counts every connection")
    finally:
        server.close()


def main() -> int:
    parser = command_line(__doc__, sessions=5000, concurrency=16, workers=1, rounds=3)
    parser.add_argument("--dos-rule", action="store_true")
    parser.add_argument("--client", type=int, metavar="PORT", help=argparse.SUPPRESS)  # the client process
    args = parser.parse_args()
    if args.client:
        asyncio.run(sessions(args.client, args.sessions, args.concurrency))
        return 0
    client = [sys.executable, __file__, "--concurrency", str(args.concurrency), "--client"]
    with tempfile.TemporaryDirectory(prefix="mailsrv-sessions-") as name:
        config = provision(Path(name), args.database_url, args.workers)
        if args.dos_rule:
            add_dos_rule(config)
        server = Mailsrv(config)
        server.start()
        try:
            # A warm-up: caches, connections.
            subprocess.run([*client, str(server.smtp_port), "--sessions", "200"], check=True)
            for round_ in range(1, args.rounds + 1):
                cpu, start = cpu_seconds(server.process.pid), time.monotonic()
                subprocess.run([*client, str(server.smtp_port), "--sessions", str(args.sessions)], check=True)
                elapsed, spent = time.monotonic() - start, cpu_seconds(server.process.pid) - cpu
                print(f"round {round_}: {args.sessions / elapsed:.0f} sessions/s, server CPU "
                      f"{spent / args.sessions * 1e6:.0f} us per session ({args.sessions} sessions, "
                      f"{args.concurrency} at a time, workers = {args.workers or 'one per core'})", flush=True)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
