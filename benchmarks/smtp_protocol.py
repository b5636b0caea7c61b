"""What the SMTP protocol path alone costs the server per message: the listener's session class
(mailsrv.access.smtp.MailsrvSMTP on aiosmtpd, uvloop) with a handler that accepts everything at
once, no intake, spool or database.

    .venv/bin/python benchmarks/smtp_protocol.py [--messages 6000] [--size 4096] [--sessions 16] [--rounds 3]

Postfix's `smtp-source` (one connection per message: greeting, HELO, MAIL, RCPT, DATA, the data,
QUIT; no pipelining) sends to a server process of its own; printed per round: messages per second
and the server's CPU time per message (user + system, from /proc), the figure to compare between
two checkouts in the same run (PYTHONPATH at each). With benchmarks/throughput_smtp.py's figure it
tells what share of a message's cost is the protocol's.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import socket
import subprocess
import sys
import time
from typing import Any


class AcceptsAll:
    """A handler that answers as mailsrv's does when everything is accepted, at once."""

    async def open_session(self, server: Any) -> None:
        server.hostname, server.data_size_limit = "mx.bench.example", 10 << 20

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        envelope.mail_from = address
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 2.0.0 Ok: queued as 0123456789abcdef"


def serve(sock: socket.socket) -> None:
    import uvloop

    from mailsrv.access.smtp import MailsrvSMTP

    async def main() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_server(MailsrvSMTP.factory(AcceptsAll(), hostname="mx.bench.example", ident="ESMTP mailsrv",
                                                     loop=loop), sock=sock)
        await asyncio.Event().wait()

    # As `mailsrv serve` tunes its collector (mailsrv.serve._tune_garbage_collector).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    uvloop.run(main())


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=6000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("smtp-source") is None:
        print("smtp-source not found: apt-get install -y postfix", file=sys.stderr)
        return 2
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    pid = os.fork()
    if pid == 0:
        serve(sock)
        os._exit(0)

    def send(count: int) -> None:
        subprocess.run(["smtp-source", "-l", str(args.size), "-m", str(count), "-s", str(args.sessions),
                        "-f", "sender@client.example", "-t", "inbox@bench.example", "-M", "client.example",
                        f"127.0.0.1:{port}"], check=True, stdout=subprocess.DEVNULL)
    try:
        send(200)  # a warm-up
        for number in range(1, args.rounds + 1):
            cpu, start = cpu_seconds(pid), time.monotonic()
            send(args.messages)
            elapsed, cpu = time.monotonic() - start, cpu_seconds(pid) - cpu
            print(f"round {number}: {args.messages / elapsed:.0f} msg/s, server CPU {1e6 * cpu / args.messages:.0f} us "
                  f"per message ({args.messages} x {args.size} B, {args.sessions} sessions)", flush=True)
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
