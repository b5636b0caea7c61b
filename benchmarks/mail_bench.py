"""What the benchmarks share: their command line, a provisioned data directory, `mailsrv` commands and
`mailsrv serve` as child processes (its SMTP and web listeners on free loopback ports), the spool
count over SOAP, and the Maildir.

Listeners are configured on port 0 and their bound addresses read from the server's log lines, so
no other process can take a port between choosing and binding it.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import http.client
import os
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the engine, for provisioning straight into the store
# This interpreter and this checkout's engine (not whatever an installed `mailsrv` script imports),
# so a benchmark run from a git worktree measures that worktree's code.
MAILSRV = [sys.executable, "-c", "import sys; from mailsrv.cli import main; sys.exit(main())"]
ADMIN = ("bench", "Measure-pass-123")
DOMAIN = "bench.example"
USER = "inbox"
USER_PASSWORD = "Mailbox-key-123"
_LISTENER = re.compile(r"(\w+) listener (\(SOAP/HTTP\) on http://|on )([\d.]+):(\d+)")
LOG_DRAIN_SECONDS = 0.02


def _worth_showing(log: bytes) -> bool:
    """Whether the server's log holds a line the person running the benchmark should see."""
    return b" ERROR " in log or b"Traceback" in log or b"released" in log


# The help of the options many benchmarks have (`command_line`).
_HELP = {
    "messages": "messages sent",
    "sessions": "SMTP sessions at once",
    "size": "bytes of each message",
    "rounds": "rounds of each kind, in turn",
    "workers": "[server] workers of mailsrv (0: one per core)",
}


def command_line(doc: str, database: str | None = "the store's URL (default: SQLite in the data directory)",
                 **numbers: int) -> argparse.ArgumentParser:
    """A benchmark's command line: `doc` (its module's docstring) as --help's description; --database-url
    helped by `database` (None: no such option); an integer option for each of `numbers`, with its
    default (`messages=500`: --messages, 500 unless given)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in numbers.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=default, help=_HELP.get(name))
    if database is not None:
        parser.add_argument("--database-url", default="", help=database)
    return parser


def environment() -> dict[str, str]:
    """A child `mailsrv`'s environment: this one, with this checkout on the path whatever PYTHONPATH said."""
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def free_port() -> int:
    """A loopback port free now, for a peer (a sink, Postfix, Dovecot) that must be told its port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def mailsrv(*args: str, **options: object) -> subprocess.CompletedProcess:
    """`mailsrv *args` (an admin command) as a child process, this checkout's; `options` as subprocess.run's."""
    return subprocess.run([*MAILSRV, *args], env=environment(), **options)  # type: ignore[call-overload]


def provision(data_dir: Path, database_url: str = "", workers: int = 0) -> Path:
    """A config file, and through the engine: the admin login, DOMAIN and USER (with its Maildir).
    `workers`: `[server] workers` (0: one per core, the default)."""
    from mailsrv.core.config import parse_config
    from mailsrv.server import MailServer

    config_path = data_dir / "mailsrv.toml"
    config_path.write_text(f'data_dir = "{data_dir}"\ndatabase_url = "{database_url}"\n'
                           '[listen]\nweb = "127.0.0.1:0"\nsmtp = "127.0.0.1:0"\nsubmission = ""\n'
                           'imap = ""\npop3 = ""\nwebs = ""\nsubmissions = ""\nimaps = ""\npop3s = ""\n'
                           '[smtp]\nhostname = "mx.bench.example"\n'
                           f'[server]\nworkers = {workers}\n')
    server = MailServer(parse_config(config_path.read_text()))
    try:
        server.admins.reset_primary(*ADMIN)
        actor = server.login(*ADMIN, "127.0.0.1")
        server.domains.add(actor, DOMAIN, "", "postmaster", "Domain-pass-123", "", "", {})
        server.users.add(actor, USER, USER_PASSWORD, DOMAIN, "", "", False)
    finally:
        server.close()
    return config_path


def maildir(data_dir: Path, user: str = USER) -> Path:
    """The Maildir of a user of DOMAIN: DOMAIN was added without a path, so it lives in the default place."""
    from mailsrv.mailstore.disk import Disk
    return Disk.maildir(Disk(data_dir).domain_path(DOMAIN, "", others=[]), user)


def maildir_files(root: Path) -> list[Path]:
    return [entry for part in ("new", "cur") if (root / part).is_dir() for entry in (root / part).iterdir()]


@dataclass
class Mailsrv:
    """`mailsrv serve` as a child process; the ports of its listeners (by the name it logs: "web",
    "SMTP", "IMAP", …) once every listener in `needs` has logged its bound address."""
    config: Path
    needs: tuple[str, ...] = ("web", "SMTP")
    env: dict[str, str] = field(default_factory=dict)  # added to the environment of the next `start`
    process: subprocess.Popen[bytes] = field(init=False)
    ports: dict[str, int] = field(init=False, default_factory=dict)

    @property
    def smtp_port(self) -> int:
        return self.ports["SMTP"]

    @property
    def web_port(self) -> int:
        return self.ports["web"]

    def start(self, timeout: float = 60) -> None:
        self.ports = {}
        self.process = subprocess.Popen([*MAILSRV, "serve", "--config", str(self.config)],
                                        stderr=subprocess.PIPE, env={**environment(), **self.env})
        ready = threading.Event()
        threading.Thread(target=self._read_log, args=(ready,), daemon=True).start()
        if not ready.wait(timeout):
            self.process.kill()
            raise RuntimeError(f"mailsrv serve did not report its listeners {', '.join(self.needs)}")

    def _read_log(self, ready: threading.Event) -> None:
        # Keeps draining stderr for the process's whole life: a full pipe would block the server.
        stream = self.process.stderr
        assert stream is not None
        for raw in stream:
            line = raw.decode(errors="replace")
            if match := _LISTENER.search(line):
                self.ports[match[1]] = int(match[4])
                if all(name in self.ports for name in self.needs):
                    ready.set()
                    break
            elif _worth_showing(raw):
                sys.stderr.write(line)
        # Then in blocks, LOG_DRAIN_SECONDS apart, into a larger pipe: Postfix's log goes to a file
        # that nobody reads during its run, and a line-by-line reader would charge mailsrv's run a
        # wake-up and a parse per log line in this process (a tenth of a CPU at 1,000 msg/s).
        with contextlib.suppress(OSError):  # not Linux, or over the unprivileged limit: the default pipe
            fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
        tail = b""
        while block := stream.read1(1 << 20):
            # The complete lines, looked over whole: a line begun in the last block ends in this one.
            complete, _, tail = (tail + block).rpartition(b"\n")
            if _worth_showing(complete):
                sys.stderr.write("".join(raw.decode(errors="replace") + "\n"
                                         for raw in complete.split(b"\n") if _worth_showing(raw)))
            time.sleep(LOG_DRAIN_SECONDS)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)

    def spool_count(self) -> int:
        """GetSpoolMessageCount over the HTTP GET binding."""
        conn = http.client.HTTPConnection("127.0.0.1", self.web_port, timeout=30)
        try:
            conn.request("GET", f"/Services/svcServerAdmin.asmx/GetSpoolMessageCount"
                                f"?AuthUserName={ADMIN[0]}&AuthPassword={ADMIN[1]}")
            body = conn.getresponse().read().decode()
        finally:
            conn.close()
        match = re.search(r"<messageCount>(\d+)</messageCount>", body)
        if match is None:
            raise RuntimeError(f"GetSpoolMessageCount failed: {body[:300]}")
        return int(match.group(1))

    def wait_until_spool_empty(self, timeout: float = 600) -> float:
        """Seconds waited until the spool held nothing."""
        start = time.monotonic()
        while self.spool_count():
            if time.monotonic() - start > timeout:
                raise RuntimeError("the spool did not empty in time")
            time.sleep(0.2)
        return time.monotonic() - start
