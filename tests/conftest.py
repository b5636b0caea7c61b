"""Shared fixtures: a real mailsrv web listener on loopback, backed by a fresh data directory.

With MAILSRV_TEST_DATABASE_URL set (e.g. PostgreSQL), every test runs against that database and
drops all its tables on teardown, so each test starts clean.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
import uvicorn
from dns_server import THREAD_NAME as DNS_SERVER_THREAD
from smtp_peer import free_port

from mailsrv.core.config import parse_config
from mailsrv.serve import tcp_listener
from mailsrv.server import MailServer
from services.app import create_app


def unavailable(message: str) -> NoReturn:
    """A program a test drives (a browser, a daemon, a verifier) is not on this machine: the test is
    skipped on a developer's machine, and fails under CI, whose .ci/run installs every one of them."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(autouse=True)
def dns_servers_closed() -> Iterator[None]:
    """Fails the test whose DnsServer outlives its teardown: its thread and bound port would stay for
    the rest of the run (dozens of them late in a full run before each was closed)."""
    def running() -> set[threading.Thread]:
        return {thread for thread in threading.enumerate() if thread.name.startswith(DNS_SERVER_THREAD)}

    before = running()
    yield
    left = running() - before
    assert not left, f"DnsServer not closed: {sorted(thread.name for thread in left)}"


@pytest.fixture
def port() -> int:
    """A free loopback port: the one remote delivery dials and the tests' peers listen on."""
    return free_port()


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """The environment for child processes: no configuration or data directory of the host's."""
    child = {k: v for k, v in os.environ.items() if k != "MAILSRV_CONFIG"}
    child["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    return child


REPOSITORY = Path(__file__).resolve().parents[1]
CONTRACT_DIR = REPOSITORY / "tests" / "contract"


@dataclass(frozen=True)
class Contract:
    """The files taken from SmarterMail's wire contract (tests/contract/README.md), by repository path."""
    sums: dict[Path, str]  # each file's SHA-256 as the contract has it
    compare: Path = CONTRACT_DIR / "wsdl_compare.py"

    @property
    def wsdls(self) -> dict[str, Path]:
        """Every contract WSDL by service name: the served ones in wsdl/ verbatim, the rest in tests/contract/wsdl/."""
        return {path.stem: path for path in self.sums if path.suffix == ".wsdl"}


@pytest.fixture(scope="session")
def contract() -> Contract:
    """The contract files listed in tests/contract/SHA256SUMS; a missing one fails the tests that use it."""
    lines = (CONTRACT_DIR / "SHA256SUMS").read_text().splitlines()
    return Contract({REPOSITORY / path: digest for digest, path in (line.split("  ", 1) for line in lines)})


@pytest.fixture
def make_server(tmp_path) -> Iterator[Callable[..., MailServer]]:
    """MailServer(config) on a fresh data directory and the test database; `extra` is more TOML.

    With MAILSRV_TEST_DATABASE_URL set, each server empties that database at teardown."""
    database_url = os.environ.get("MAILSRV_TEST_DATABASE_URL", "")
    made: list[MailServer] = []

    def make(extra: str = "") -> MailServer:
        text = f'data_dir = "{(tmp_path / "data").resolve()}"\ndatabase_url = "{database_url}"\n{extra}'
        made.append(MailServer(parse_config(text)))
        return made[-1]

    yield make
    for server in made:
        if database_url:
            server.store.drop_all()
        server.close()


@dataclass(frozen=True)
class LiveServer:
    url: str  # base URL, e.g. http://127.0.0.1:43123
    server: MailServer


@contextmanager
def web_listener(server: MailServer) -> Iterator[str]:
    """`server`'s web listener on a free loopback port, in a thread; its base URL."""
    # Bind first and hand uvicorn the socket: no window in which another process takes the port.
    sock = tcp_listener("127.0.0.1", 0)
    web = uvicorn.Server(uvicorn.Config(create_app(server), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=web.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not web.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test web server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        web.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def live_server(make_server) -> Iterator[LiveServer]:
    server = make_server()
    with web_listener(server) as base_url:
        yield LiveServer(base_url, server)
