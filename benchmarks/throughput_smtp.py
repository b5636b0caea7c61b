"""Inbound SMTP throughput into one local mailbox, next to Postfix on the same machine.

    .venv/bin/python benchmarks/throughput_smtp.py [--messages 2000] [--sessions 16] [--size 4096]
                                                   [--no-postfix] [--database-url URL]
                                                   [--workers N [N ...]]

Load: Postfix's `smtp-source` (Debian package postfix) sends --messages messages of --size bytes
over --sessions concurrent sessions to one mailbox. Printed per server:
  accepted msg/s    messages / smtp-source's elapsed time (every DATA answered 250);
  end-to-end msg/s  messages / time until all of them are files in the Maildir;
  machine CPU       the machine's busy CPU a message over that time (smtp-source's included).
Postfix runs from a throwaway configuration directory under /tmp (`postfix -c DIR start-fg`), SMTP on
a free loopback port, virtual Maildir delivery; it never touches the machine's own configuration.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mail_bench import DOMAIN, USER, Mailsrv, command_line, free_port, maildir, maildir_files, provision


@dataclass(frozen=True)
class Rates:
    accepted: float  # msg/s
    end_to_end: float  # msg/s
    # The machine's busy CPU (user, system, interrupts; not idle or I/O wait) a message, in ms, from
    # /proc/stat over the whole load, smtp-source's and this process's included: on a machine whose
    # speed varies from run to run, steadier than the rates, and what a mail server costs its host.
    cpu_ms: float | None


def busy_ticks() -> int | None:
    """The machine's busy CPU time so far, in clock ticks (None where there is no /proc/stat)."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(field) for field in stat.readline().split()[1:]]
    except OSError:
        return None
    return sum(ticks) - ticks[3] - ticks[4]  # idle, iowait


def load(port: int, args: argparse.Namespace, count: Callable[[], int]) -> Rates:
    """The rates of one smtp-source run against 127.0.0.1:port."""
    start, busy = time.monotonic(), busy_ticks()
    subprocess.run(["smtp-source", "-c", "-l", str(args.size), "-m", str(args.messages), "-s", str(args.sessions),
                    "-f", "sender@client.example", "-t", f"{USER}@{DOMAIN}", "-M", "client.example",
                    f"127.0.0.1:{port}"], check=True, stdout=subprocess.DEVNULL)
    accepted = time.monotonic() - start
    while count() < args.messages:
        if time.monotonic() - start > 600:
            raise RuntimeError(f"only {count()} of {args.messages} messages arrived")
        time.sleep(0.05)
    elapsed, busy_after = time.monotonic() - start, busy_ticks()
    cpu_ms = (None if busy is None or busy_after is None
              else (busy_after - busy) / os.sysconf("SC_CLK_TCK") * 1000 / args.messages)
    return Rates(args.messages / accepted, args.messages / elapsed, cpu_ms)


def run_mailsrv(args: argparse.Namespace, tmp: Path, workers: int) -> Rates:
    data_dir = tmp / f"mailsrv-{workers}"
    data_dir.mkdir()
    server = Mailsrv(provision(data_dir, args.database_url, workers))
    server.start()
    try:
        print(f"mailsrv pid {server.process.pid}", flush=True)  # for attaching a profiler
        return load(server.smtp_port, args, lambda: len(maildir_files(maildir(data_dir))))
    finally:
        server.stop()


def postfix_config(directory: Path, port: int, mail_root: Path, process_limit: int = 100,
                   milters: tuple[str, ...] = ()) -> None:
    """A self-contained Postfix instance: its own queue, loopback SMTP, virtual Maildir delivery;
    `process_limit` (Postfix's default 100) caps the smtpd processes, one per open session;
    `milters` ("inet:127.0.0.1:PORT") run on every message, a milter that fails tempfails it."""
    user = pwd.getpwnam("postfix")
    directory.mkdir()
    (directory / "queue").mkdir()  # `postfix start` creates what goes inside
    for owned_by_postfix in (directory / "data", mail_root):
        owned_by_postfix.mkdir()
        shutil.chown(owned_by_postfix, user.pw_uid, user.pw_gid)
    (directory / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {directory}/queue
data_directory = {directory}/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.local
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_banner = $myhostname ESMTP
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_base = {mail_root}
virtual_mailbox_maps = static:{USER}/Maildir/
virtual_uid_maps = static:{user.pw_uid}
virtual_gid_maps = static:{user.pw_gid}
virtual_destination_concurrency_limit = 20
default_process_limit = {process_limit}
# start-fg logs here (no syslog needed); the Popen sends it to a file
maillog_file = /dev/stdout
""" + (f"smtpd_milters = {', '.join(milters)}\nmilter_default_action = tempfail\n" if milters else ""))
    master = Path("/etc/postfix/master.cf").read_text()
    # No chroot (it would need a copy of /etc inside our queue directory), and the SMTP listener
    # on our loopback port instead of 25.
    master = re.sub(r"^(\S+\s+\S+\s+\S+\s+\S+\s+)y(\s)", r"\1n\2", master, flags=re.MULTILINE)
    master = re.sub(r"^smtp(\s+inet\s)", f"127.0.0.1:{port}\\1", master, count=1, flags=re.MULTILINE)
    (directory / "master.cf").write_text(master)


@contextlib.contextmanager
def postfix_running(directory: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """The instance configured in `directory` (by postfix_config), its SMTP listener on `port`
    accepting, until the block ends; yields its master process."""
    postfix = ["postfix", "-c", str(directory)]
    # `start-fg` rather than `start`: the daemonised start fails silently without syslog, and
    # `set-permissions` expects the package's own directories. Warnings about the queue
    # directories' owner (ours, not root) are harmless.
    with open(directory / "maillog", "wb") as maillog:
        master = subprocess.Popen([*postfix, "start-fg"], stdout=maillog, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):  # the master starts its smtpd listener asynchronously
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        if master.poll() is not None:
            raise RuntimeError(f"postfix did not start: see {directory / 'maillog'}")
        yield master
    finally:
        subprocess.run([*postfix, "stop"], capture_output=True)
        master.wait(30)


def run_postfix(args: argparse.Namespace, tmp: Path) -> Rates:
    directory, mail_root, port = tmp / "postfix", tmp / "postfix-mail", free_port()
    postfix_config(directory, port, mail_root)
    with postfix_running(directory, port):
        return load(port, args, lambda: len(maildir_files(mail_root / USER / "Maildir")))


def describe(rates: Rates) -> str:
    cpu = f", machine CPU {rates.cpu_ms:.2f} ms a message" if rates.cpu_ms is not None else ""
    return f"accepted {rates.accepted:.0f} msg/s, end-to-end {rates.end_to_end:.0f} msg/s{cpu}"


def main() -> int:
    parser = command_line(__doc__, messages=2000, sessions=16, size=4096)
    parser.add_argument("--no-postfix", action="store_true")
    parser.add_argument("--workers", type=int, nargs="+", default=[0],
                        help="[server] workers, one mailsrv run for each value given (0: one per core)")
    args = parser.parse_args()
    if shutil.which("smtp-source") is None:
        print("smtp-source not found: apt-get install -y postfix", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="mailsrv-throughput-") as name:
        tmp = Path(name).resolve()
        os.chmod(tmp, 0o755)  # Postfix's unprivileged processes walk into it
        for run, workers in enumerate(args.workers):
            if run and args.database_url:  # each run starts on an empty database, as the first does
                from mailsrv.store.db import Store
                store = Store(args.database_url)
                store.drop_all()
                store.close()
            mailsrv = run_mailsrv(args, tmp, workers)
            print(f"mailsrv (workers = {workers or 'one per core'}): {describe(mailsrv)} "
                  f"({args.messages} x {args.size} B, {args.sessions} sessions)", flush=True)
        if args.no_postfix:
            return 0
        try:
            postfix = run_postfix(args, tmp)
        except (subprocess.CalledProcessError, RuntimeError, KeyError) as exc:
            print(f"postfix: not measured ({exc})")
            return 0
        print(f"postfix: {describe(postfix)}")
        print(f"mailsrv / postfix: accepted {mailsrv.accepted / postfix.accepted:.2f}, "
              f"end-to-end {mailsrv.end_to_end / postfix.end_to_end:.2f}"
              + (f", machine CPU a message {mailsrv.cpu_ms / postfix.cpu_ms:.2f}"
                 if mailsrv.cpu_ms and postfix.cpu_ms else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
