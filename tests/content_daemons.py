"""Real spamd and clamd on loopback for the content filter tests, and a peer that answers garbage.

Each daemon runs from the Debian packages (spamassassin, clamav-daemon, clamav) with its own files in
the test's directory: spamd with local tests only (no network), clamd with a signature database the
test makes (`sigtool --md5` of a file), no freshclam. A test that needs one is skipped, with the
reason, only when its binary is missing."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from conftest import unavailable
from smtp_peer import free_port

SPAMD, CLAMD, SIGTOOL = "/usr/sbin/spamd", "/usr/sbin/clamd", "/usr/bin/sigtool"
GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
# A file only our own signature database knows: an infected attachment without a real virus.
INFECTED_FILE = b"mailsrv test file: the ClamAV signature made by the test matches exactly these bytes\n"


def need(binary: str) -> None:
    if not (os.path.exists(binary) and os.access(binary, os.X_OK)):
        unavailable(f"{binary} is not installed (apt-get install spamassassin clamav-daemon clamav)")


class Daemon:
    """A daemon process in its own session, stopped with its children by its process group."""

    def __init__(self, argv: list[str], port: int, log: Path) -> None:
        self.port = port
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120  # spamd compiles its rules at start
        while not self._listening():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{argv[0]} did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_spamd(directory: Path, children: int = 2) -> Daemon:
    need(SPAMD)
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    return Daemon([SPAMD, "--listen", f"127.0.0.1:{port}", "--allowed-ips", "127.0.0.1", "--local",
                   "--nouser-config", "--max-children", str(children), "--min-children", "1", "--syslog", "stderr",
                   "--pidfile", str(directory / "spamd.pid"), *user], port, directory / "spamd.log")


def start_clamd(directory: Path) -> Daemon:
    need(CLAMD)
    need(SIGTOOL)
    database = directory / "db"
    database.mkdir(parents=True, exist_ok=True)
    sample = directory / "infected.txt"
    sample.write_bytes(INFECTED_FILE)
    signature = subprocess.run([SIGTOOL, "--md5", str(sample)], capture_output=True, check=True).stdout
    (database / "mailsrv-test.hdb").write_bytes(signature.replace(b":infected.txt", b":Mailsrv.Test.Signature"))
    port = free_port()
    config = directory / "clamd.conf"
    config.write_text(f"TCPSocket {port}\nTCPAddr 127.0.0.1\nDatabaseDirectory {database}\nForeground yes\n"
                      f"LocalSocket {directory / 'clamd.sock'}\n")
    return Daemon([CLAMD, "-c", str(config)], port, directory / "clamd.log")


class GarbagePeer:
    """A TCP server that reads a request and answers `answer` (b"" to answer nothing and hold on)."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stopped = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            try:
                conn.recv(65536)
                if self.answer:
                    conn.sendall(self.answer)
                else:
                    self.stopped.wait(30)
            except OSError:
                pass

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()
