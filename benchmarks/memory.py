"""Memory of many open sessions: IMAP clients in IDLE and SMTP clients mid-transaction, mailsrv next
to Dovecot (IMAP) and Postfix (SMTP) on the same machine.

    .venv/bin/python benchmarks/memory.py [--sessions 1000] [--users 1000] [--messages 20]
                                          [--no-dovecot] [--no-postfix]

--users mailboxes (all in DOMAIN, the same password), each INBOX holding --messages messages; IMAP
session n logs in as user n mod --users, so with the defaults every session is another user's, as
on a real server. For each server, after one warm-up session of each kind (so what any first
session loads once is counted as the base), the whole process tree is measured:
  started        no session open;
  + IMAP IDLE    --sessions connections that did LOGIN, SELECT INBOX and are in IDLE;
  + SMTP         --sessions more that did EHLO and MAIL FROM and wait (mailsrv and Postfix).
RSS counts a page shared by several processes (Dovecot's and Postfix's forks) once per process; PSS
divides it among them, so PSS is the fair sum for a tree of processes. Peak RSS is the largest
RSS each process has had (for mailsrv: during the logins). CPU is the tree's share of
one core over 5 s with the sessions held open and silent. Per session = the increase over the
previous line / --sessions. At the end every session must still answer (DONE, RSET).
Dovecot and Postfix run from throwaway configurations under a temp dir (imap_vs_dovecot.Dovecot,
throughput_smtp.postfix_config), their process limits raised to hold --sessions sessions.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import resource
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from imap_vs_dovecot import Dovecot, fill_inbox, free_port, mailsrv_imap
from mail_bench import ADMIN, DOMAIN, USER_PASSWORD, command_line, maildir
from throughput_smtp import postfix_config, postfix_running

_OPENING = 32  # sessions being opened at once: a reconnect storm, not a queue of 1,000 handshakes
_CPU_WINDOW = 5.0
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Usage:
    """What a process tree holds at one moment."""
    processes: int
    rss_kb: int
    pss_kb: int
    peak_rss_kb: int  # the largest RSS each process has had (VmHWM), summed
    cpu_ticks: int  # user + system, since each process started


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # ended meanwhile
                continue
            children.setdefault(int(stat.rpartition(")")[2].split()[1]), []).append(int(entry.name))
    tree = [root]
    for pid in tree:
        tree.extend(children.get(pid, []))
    return tree


def usage(root: int) -> Usage:
    total = Usage(0, 0, 0, 0, 0)
    for pid in process_tree(root):
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            stat = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        fields = {line.split(":")[0]: int(line.split()[1]) for line in rollup.splitlines()[1:]}
        total.processes += 1
        total.rss_kb += fields["Rss"]
        total.pss_kb += fields["Pss"]
        total.peak_rss_kb += int(status.partition("VmHWM:")[2].split()[0])
        total.cpu_ticks += int(stat[11]) + int(stat[12])  # utime, stime
    return total


@dataclass
class Stage:
    label: str
    usage: Usage
    cpu_percent: float


def measure(label: str, root: int) -> Stage:
    """The tree's memory after it settled, and its CPU over _CPU_WINDOW seconds of silence."""
    time.sleep(2)
    before, start = usage(root), time.monotonic()
    time.sleep(_CPU_WINDOW)
    after = usage(root)
    cpu = (after.cpu_ticks - before.cpu_ticks) / _TICKS / (time.monotonic() - start) * 100
    return Stage(label, after, cpu)


class Session:
    """One client connection: a line reader and writer with the protocol's reply conventions."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Session:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def line(self) -> bytes:
        line = await self.reader.readline()
        if not line:
            raise ConnectionError("closed by the server")
        return line

    async def imap(self, tag: bytes, command: bytes | None) -> bytes:
        """Send `tag command` (or nothing), return the tagged reply once it is OK."""
        if command is not None:
            self.writer.write(tag + b" " + command + b"\r\n")
        while not (line := await self.line()).startswith(tag + b" "):
            pass
        if not line.startswith(tag + b" OK"):
            raise ConnectionError(line.decode(errors="replace").strip())
        return line

    async def smtp(self, command: bytes | None, code: bytes) -> None:
        """Send `command` (or nothing), check the reply (all its lines) has `code`."""
        if command is not None:
            self.writer.write(command + b"\r\n")
        while (line := await self.line())[3:4] == b"-":
            pass
        if not line.startswith(code):
            raise ConnectionError(line.decode(errors="replace").strip())

    def close(self) -> None:
        self.writer.close()


async def imap_idle(port: int, login: str) -> Session:
    session = await Session.open(port)
    if not (await session.line()).startswith(b"* OK"):
        raise ConnectionError("no IMAP greeting")
    await session.imap(b"a", f'LOGIN "{login}" "{USER_PASSWORD}"'.encode())
    await session.imap(b"b", b"SELECT INBOX")
    session.writer.write(b"c IDLE\r\n")
    while not (line := await session.line()).startswith(b"+"):
        if line.startswith(b"c "):
            raise ConnectionError(line.decode(errors="replace").strip())
    return session


async def imap_done(session: Session) -> None:
    session.writer.write(b"DONE\r\n")
    await session.imap(b"c", None)
    await session.imap(b"d", b"LOGOUT")


async def smtp_mid_transaction(port: int) -> Session:
    session = await Session.open(port)
    await session.smtp(None, b"220")
    await session.smtp(b"EHLO client.example", b"250")
    await session.smtp(b"MAIL FROM:<sender@client.example>", b"250")
    return session


async def smtp_done(session: Session) -> None:
    await session.smtp(b"RSET", b"250")
    await session.smtp(b"QUIT", b"221")


async def open_all(count: int, opener: Callable[[int], Awaitable[Session]]) -> list[Session]:
    """`count` sessions, _OPENING at a time; every one must open."""
    gate = asyncio.Semaphore(_OPENING)

    async def one(n: int) -> Session:
        async with gate:
            return await asyncio.wait_for(opener(n), 300)

    results = await asyncio.gather(*(one(n) for n in range(count)), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    sessions = [r for r in results if isinstance(r, Session)]
    if failures:
        for session in sessions:
            session.close()
        raise RuntimeError(f"{len(failures)} of {count} sessions failed to open, e.g. {failures[0]!r}")
    return sessions


async def end_all(sessions: Sequence[Session], ender: Callable[[Session], Awaitable[None]]) -> None:
    """Every session still answers after being held open: end each the protocol's way."""
    results = await asyncio.gather(*(asyncio.wait_for(ender(s), 300) for s in sessions), return_exceptions=True)
    for session in sessions:
        session.close()
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise RuntimeError(f"{len(failures)} of {len(sessions)} held sessions did not answer, e.g. {failures[0]!r}")


def hold(root: int, name: str, count: int, imap: Callable[[int], Awaitable[Session]] | None,
         smtp: Callable[[int], Awaitable[Session]] | None) -> list[Stage]:
    """Warm up, measure, open `count` IMAP IDLE sessions and/or `count` SMTP sessions (measuring
    after each), then end them all."""

    async def run() -> list[Stage]:
        if imap:
            await imap_done(await imap(0))
        if smtp:
            await smtp_done(await smtp(0))
        stages = [await asyncio.to_thread(measure, f"{name} started", root)]
        held: list[tuple[list[Session], Callable[[Session], Awaitable[None]]]] = []
        try:
            for opener, ender, label in ((imap, imap_done, "IMAP IDLE"), (smtp, smtp_done, "SMTP after MAIL")):
                if opener is None:
                    continue
                start = time.monotonic()
                held.append((await open_all(count, opener), ender))
                print(f"  {name}: {count} {label} sessions opened in {time.monotonic() - start:.1f}s", flush=True)
                stages.append(await asyncio.to_thread(measure, f"{name} + {count} {label}", root))
            while held:
                sessions, ender = held.pop()
                await end_all(sessions, ender)
        finally:
            for sessions, _ender in held:
                for session in sessions:
                    session.close()
        return stages

    return asyncio.run(run())


def add_users(config: Path, names: Sequence[str]) -> None:
    from mailsrv.core.config import parse_config
    from mailsrv.server import MailServer

    server = MailServer(parse_config(config.read_text()))
    try:
        actor = server.login(*ADMIN, "127.0.0.1")
        for name in names:
            server.users.add(actor, name, USER_PASSWORD, DOMAIN, "", "", False)
    finally:
        server.close()


def run_mailsrv(tmp: Path, users: list[str], args: argparse.Namespace) -> list[Stage]:
    data_dir = tmp / "mailsrv"
    data_dir.mkdir()
    server = mailsrv_imap(data_dir)
    add_users(server.config, users)
    for name in users:
        fill_inbox(maildir(data_dir, name), args.messages)
    server.start()
    try:
        imap, smtp = server.ports["IMAP"], server.smtp_port
        return hold(server.process.pid, "mailsrv", args.sessions,
                    lambda n: imap_idle(imap, f"{users[n % len(users)]}@{DOMAIN}"),
                    lambda _n: smtp_mid_transaction(smtp))
    finally:
        server.stop()


def run_dovecot(tmp: Path, users: list[str], args: argparse.Namespace) -> list[Stage]:
    root = tmp / "dovecot"
    for name in users:
        for part in ("new", "cur", "tmp"):
            (root / "mail" / name / part).mkdir(parents=True)
        fill_inbox(root / "mail" / name, args.messages)
    # One imap process per session (Dovecot's default and advice): room for them all, and for
    # the login processes and the auth and anvil connections they make.
    dovecot = Dovecot(root, f"{root}/mail/%n", users, extra=f"""
default_process_limit = {args.sessions + 100}
default_client_limit = {4 * (args.sessions + 100)}
protocol imap {{
  mail_max_userip_connections = {args.sessions}
}}
""")
    dovecot.start()
    try:
        pid_file = root / "run" / "master.pid"
        while not (pid_file.exists() and (master := pid_file.read_text().strip())):
            time.sleep(0.1)  # the listener is up before the master writes its pid
        return hold(int(master), "dovecot", args.sessions, lambda n: imap_idle(dovecot.port, users[n % len(users)]), None)
    finally:
        dovecot.stop()


def run_postfix(tmp: Path, args: argparse.Namespace) -> list[Stage]:
    directory, port = tmp / "postfix", free_port()
    postfix_config(directory, port, tmp / "postfix-mail", process_limit=args.sessions + 100)
    with postfix_running(directory, port) as master:
        return hold(master.pid, "postfix", args.sessions, None, lambda _n: smtp_mid_transaction(port))


def report(stages: list[Stage], sessions: int) -> None:
    print(f"\n{'':40}{'procs':>7}{'RSS MB':>10}{'PSS MB':>10}{'peak RSS MB':>12}{'CPU %':>8}"
          f"{'RSS KB/session':>16}{'PSS KB/session':>16}")
    previous: Stage | None = None
    for stage in stages:
        u = stage.usage
        line = (f"{stage.label:40}{u.processes:7}{u.rss_kb / 1024:10.1f}{u.pss_kb / 1024:10.1f}"
                f"{u.peak_rss_kb / 1024:12.1f}{stage.cpu_percent:8.1f}")
        if previous is not None and not stage.label.endswith("started"):
            line += (f"{(u.rss_kb - previous.usage.rss_kb) / sessions:16.1f}"
                     f"{(u.pss_kb - previous.usage.pss_kb) / sessions:16.1f}")
        print(line)
        previous = stage


def main() -> None:
    parser = command_line(__doc__, None, sessions=1000, users=1000, messages=20)
    parser.add_argument("--no-dovecot", action="store_true")
    parser.add_argument("--no-postfix", action="store_true")
    args = parser.parse_args()
    # Two sockets per session pair on this side, and the servers' children inherit the limit.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    users = [f"user{n:04}" for n in range(args.users)]
    stages: list[Stage] = []
    with tempfile.TemporaryDirectory(prefix="memory-bench-") as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)  # Dovecot's and Postfix's unprivileged processes walk into it
        print(f"{args.users} users, {args.messages} messages in each INBOX; {args.sessions} sessions of each kind",
              flush=True)
        stages += run_mailsrv(tmp, users, args)
        if not args.no_dovecot:
            stages += run_dovecot(tmp, users, args)
        if not args.no_postfix:
            stages += run_postfix(tmp, args)
    report(stages, args.sessions)


if __name__ == "__main__":
    main()
