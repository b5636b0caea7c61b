"""`mailsrv serve` as a child process of a test: real processes, real sockets, real signals."""
from __future__ import annotations

import functools
import queue
import resource
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from mailsrv.core.config import ListenConfig

MAILSRV = str(Path(sys.executable).with_name("mailsrv"))  # the console script of this environment
LISTENING = re.compile(r"web listener \(SOAP/HTTP\) on http://(\S+)")


# Every listener address of [listen] (all but `web` have a default a test must never take: 25,
# 465, 587, 143, 993, 110, 995 need root and may be another server's, and 9443 is one fixed port).
LISTENERS = [f.name for f in fields(ListenConfig) if isinstance(getattr(ListenConfig(), f.name), str)]


def listen_table(web: str = "127.0.0.1:0", listen: str = "") -> str:
    """A [listen] table: the web listener on `web`, the `key = "address"` lines of `listen`, and
    every other listener off."""
    given = {line.split("=", 1)[0].strip() for line in listen.splitlines() if "=" in line}
    off = "".join(f'{key} = ""\n' for key in LISTENERS if key != "web" and key not in given)
    return f'[listen]\nweb = "{web}"\n{off}{listen}'


class Serving:
    """`mailsrv serve` in the background, its stderr read line by line as it comes."""

    def __init__(self, config: Path, env: dict[str, str], *, open_files: int | None = None) -> None:
        """`open_files`: the soft limit of open files the server starts with (set in the child
        alone: lowered in this process, the test's own open files could exceed it)."""
        limit = None if open_files is None else \
            functools.partial(resource.setrlimit, resource.RLIMIT_NOFILE,
                              (open_files, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        self.process = subprocess.Popen([MAILSRV, "serve", "--config", str(config)], env=env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True, preexec_fn=limit)
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            self.log.append(line)
            if match := pattern.search(line):
                return match
        raise AssertionError(f"no line matching {pattern.pattern!r}; stderr so far:\n{''.join(self.log)}")

    def base_url(self) -> str:
        """The web listener's URL, read from the address it logs once bound."""
        return f"http://{self.wait_for(LISTENING).group(1)}"

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 10) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout)

    def __enter__(self) -> Serving:
        return self

    def __exit__(self, *_exc: object) -> None:
        # A test that failed before stopping the server must not leave it running.
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Poll `condition` every 0.1 s until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)
