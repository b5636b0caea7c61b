"""What `mailsrv serve` holds while it serves many clients: memory after a burst of logins, and
connections beyond the usual soft limit of open files. Real processes and sockets; the operator's
view of memory is the process's resident size."""
from __future__ import annotations

import contextlib
import imaplib
import re
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mailsrv.core.config import load_config
from mailsrv.server import MailServer
from smtp_support import USER_PASSWORD
from serve_support import Serving
from test_cli import database_url, write_config  # noqa: F401 (fixtures)

DOMAIN = "a.test"
LOGINS = 16
STARTED_WITH_OPEN_FILES = 64


def resident_kb(pid: int) -> int:
    """The resident size of the server: the process and its worker processes."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    own = int(re.search(r"^Rss:\s+(\d+) kB", rollup, re.MULTILINE)[1])  # type: ignore[index]
    return own + sum(resident_kb(int(child)) for child in children)


def serving_imap(tmp_path: Path, database_url: str, users: list[str]) -> Path:
    config = write_config(tmp_path / "mailsrv.toml", database_url)
    config.write_text(config.read_text().replace('imap = ""', 'imap = "127.0.0.1:0"'))
    server = MailServer(load_config(config))
    try:
        server.admins.reset_primary("sysadmin", "Secret-pass-123")
        admin = server.login("sysadmin", "Secret-pass-123", "127.0.0.1")
        server.domains.add(admin, DOMAIN, "", "postmaster", "Domain-pass-1", "", "", {})
        for name in users:
            server.users.add(admin, name, USER_PASSWORD, DOMAIN, "", "", False)
    finally:
        server.close()
    return config


def log_in_and_out(port: int, name: str) -> str:
    imap = imaplib.IMAP4("127.0.0.1", port, timeout=60)
    try:
        return imap.login(f"{name}@{DOMAIN}", USER_PASSWORD)[0]  # type: ignore[no-any-return]
    finally:
        imap.logout()


def test_a_burst_of_logins_does_not_leave_the_server_holding_their_password_hashing_memory(
        tmp_path: Path, database_url: str, env: dict[str, str]) -> None:
    # Each login verifies an argon2 hash in a 19 MiB work area, on whichever thread of the mailbox
    # pool runs it: the memory must go back to the system afterwards, not stay in the heaps of
    # the allocator's per-thread arenas (16 on two cores: ~300 MB).
    users = [f"user{n}" for n in range(LOGINS)]
    config = serving_imap(tmp_path, database_url, users)
    with Serving(config, env) as serving:
        port = int(serving.wait_for(re.compile(r"IMAP listener on [\d.]+:(\d+)"))[1])
        assert log_in_and_out(port, users[0]) == "OK"  # what any first login loads once
        before = resident_kb(serving.process.pid)
        with ThreadPoolExecutor(LOGINS) as clients:
            assert list(clients.map(log_in_and_out, [port] * LOGINS, users)) == ["OK"] * LOGINS
        grown_mb = (resident_kb(serving.process.pid) - before) / 1024
        assert grown_mb < 40, f"the server grew by {grown_mb:.0f} MB over {LOGINS} logins"
        assert serving.stop() == 0


def test_the_server_holds_more_connections_than_the_soft_open_files_limit_it_was_started_with(
        tmp_path: Path, database_url: str, env: dict[str, str]) -> None:
    # Services usually start with a soft limit of 1,024 open files; a low one here stands for it.
    config = write_config(tmp_path / "mailsrv.toml", database_url)
    config.write_text(config.read_text().replace('smtp = ""', 'smtp = "127.0.0.1:0"'))
    with Serving(config, env, open_files=STARTED_WITH_OPEN_FILES) as serving, contextlib.ExitStack() as clients:
        port = int(serving.wait_for(re.compile(r"SMTP listener on [\d.]+:(\d+)"))[1])
        for _ in range(2 * STARTED_WITH_OPEN_FILES):
            client = clients.enter_context(socket.create_connection(("127.0.0.1", port), timeout=30))
            assert client.recv(1024).startswith(b"220 ")
        assert serving.stop() == 0
