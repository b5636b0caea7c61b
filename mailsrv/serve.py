"""`mailsrv serve`: every listener of the server, until SIGTERM/SIGINT, in `[server] workers` processes.

The `mailsrv serve` process binds the web listeners (so a taken port or a bad address is reported
before anything else) and reserves the `[listen]` mail ports given as 0, does what happens once per
server start (migrations, disk reconcile, stale IMAP locks: `MailServer(recover=True)`), then with
one worker serves in itself; with more it forks them and supervises. Each worker builds its own
MailServer after the fork (store engine, spool writer, queue manager with its own node id), serves
the web on the inherited sockets and binds the mail listeners the store describes (or `[listen]`'s,
when it describes none) itself with SO_REUSEPORT, following every change of that description
(`_MailListeners`); the kernel hands each connection to one of the workers. A mail port that cannot
be bound is logged and reported, and the other listeners serve on. The
supervisor restarts a worker that ends (with back-off), forwards SIGTERM/SIGINT and waits for the
graceful stops; the workers die with it (PR_SET_PDEATHSIG), even when it is killed with SIGKILL.
SIGHUP (forwarded to every worker) loads the certificate files again (mailsrv.core.tls.Certificates).
At start it logs where the data is, and warns of what is still unsafe (`_announce_start`).
What per-worker state there is and why it stays correct: docs/architecture.md.

A `Serving` is a coroutine function taking the process-wide stop event: it serves until the event
is set, then stops gracefully and returns.
"""
from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import gc
import logging
import os
import resource
import signal
import socket
import ssl
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
import uvloop
from sqlalchemy import make_url
from starlette.types import ASGIApp

from mailsrv.access.imap.listener import (
    mailbox_subsystem,
    remove_all_stale_locks,
    start_imap_listener,
)
from mailsrv.access.pop3 import start_pop3_listener
from mailsrv.access.smtp import start_listener
from mailsrv.core import logs, metrics
from mailsrv.core.config import Config, ConfigError
from mailsrv.core.errors import MailsrvError
from mailsrv.core.names import ServerAddress, server_address
from mailsrv.core.sockets import bind_shared
from mailsrv.core.tls import Certificates, is_self_signed
from mailsrv.directory.listeners import (
    IMAP,
    POP,
    SMTP,
    SSL,
    STARTTLS,
    SUBMISSION,
    Listener,
)
from mailsrv.server import MailServer
from services.app import create_app

log = logging.getLogger("mailsrv.serve")

Serving = Callable[[asyncio.Event], Coroutine[Any, Any, None]]

# Bounds how long SIGTERM waits for in-flight requests, so `docker stop` (10 s) never has to kill.
_GRACEFUL_SHUTDOWN_SECONDS = 5


class ListenError(Exception):
    """A listener's address cannot be bound (in use, not local, no permission)."""


def parse_address(value: str, key: str) -> tuple[str, int]:
    """An IP literal and a port (0 = any free port) from "ip:port" or "[ipv6]:port"
    (`names.server_address`, IP only, the port required)."""
    try:
        address: ServerAddress | None = server_address(value, ip_only=True, port_zero=True)
    except MailsrvError:
        address = None
    if address is None or address.port is None:
        raise ConfigError(f"configuration key '{key}' must be 'address:port' with an IP address "
                          f"(e.g. 0.0.0.0:9998 or [::1]:9998), not '{value}'")
    return address.host, address.port


def format_address(sockname: tuple[Any, ...]) -> str:
    host, port = sockname[0], sockname[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind(value: str, key: str) -> socket.socket:
    """A listening TCP socket for the configured address; ConfigError/ListenError name the key."""
    host, port = parse_address(value, key)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return tcp_listener(host, port, family)
    except OSError as exc:
        raise ListenError(f"cannot listen on {value} ({key}): {exc.strerror}") from None


def tcp_listener(host: str, port: int, family: socket.AddressFamily = socket.AF_INET) -> socket.socket:
    """A listening socket whose accepted connections asyncio sets to TCP_NODELAY.

    asyncio only does that for sockets whose proto is IPPROTO_TCP, and create_server leaves it 0:
    without it every keep-alive response waits ~40 ms on Nagle and the peer's delayed ACK."""
    sock = socket.create_server((host, port), family=family)
    return socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())


class _WebServer(uvicorn.Server):
    # `_serve_all` owns SIGTERM/SIGINT for every listener. uvicorn's own handlers would stop only
    # the web listener and then re-raise the signal, killing the process before the others stop.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_web(app: ASGIApp, sock: socket.socket, tls: ssl.SSLContext | None, stop: asyncio.Event) -> None:
    """SOAP services and web pages on the bound socket (HTTPS with `tls`) until `stop` is set,
    then a graceful stop."""
    web = _WebServer(uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,  # keep the process's logging setup
        # The HTTP GET binding carries authPassword in the query string: never log request lines.
        access_log=False,
        # Login limits and admin IP restrictions apply to the TCP peer, never to a header.
        proxy_headers=False,
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_SECONDS,
        # The mail listeners' context: one certificate and one TLS policy for every protocol.
        ssl_context_factory=(lambda _config, _default: tls) if tls else None,
    ))
    serving = asyncio.create_task(web.serve(sockets=[sock]))
    stopping = asyncio.create_task(stop.wait())
    # Whichever comes first: the stop signal, or the web server ending on its own (an error).
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    web.should_exit = True
    await serving


async def _serve_all(listeners: list[Serving], on_hangup: Callable[[], None]) -> None:
    """Serve until SIGTERM/SIGINT; SIGHUP calls `on_hangup` on the event loop (between two
    handshakes, never during one)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    def hangup() -> None:  # logrotate's and certbot's signal: reopen the log file, reload certificates
        logs.reopen()
        on_hangup()
    loop.add_signal_handler(signal.SIGHUP, hangup)
    try:
        # One listener failing cancels the others, and its error ends the process.
        async with asyncio.TaskGroup() as group:
            for listener in listeners:
                group.create_task(listener(stop))
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)


def _tune_garbage_collector() -> None:
    """Fewer collections for a long-running server that keeps large caches (IMAP folder scans).

    With CPython's default thresholds (700, 10, 10) a busy IMAP session set off a full collection
    about every second command, each walking every live object (~65 ms with one 10,000-message
    folder remembered): the largest cost left in `benchmarks/imap_vs_dovecot.py`. Rarer young
    collections (every 50,000 allocations) still reclaim cycles; what was created at start-up
    (modules, configuration, the app) is frozen out of every collection."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


_M_MMAP_THRESHOLD = -3  # glibc's malloc.h


def _return_large_blocks_when_freed() -> None:
    """Blocks of 1 MiB and more (each login's argon2 work area: 19 MiB) go back to the system when
    freed.

    glibc raises its mmap threshold to the largest block freed so far (up to 32 MiB): after the
    first login, every argon2 verification took its 19 MiB from the heap of its thread's arena and
    the heap kept it. Logins run on the mailbox thread pool, so with up to 16 arenas (8 per core)
    50 IMAP logins left the process ~390 MB larger (benchmarks/memory.py). A fixed threshold ends
    that adjustment; at 1 MiB, message-sized buffers still come from the heap."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except AttributeError:  # not glibc (macOS): its allocator is not tuned this way
        return
    mallopt(_M_MMAP_THRESHOLD, 1024 * 1024)


def _raise_open_files_limit() -> None:
    """As many open files as the administrator allows: every client connection is one.

    Services usually start with a soft limit of 1,024 (systemd's default, a login shell's), fewer
    than 1,000 IMAP clients in IDLE and the SMTP sessions beside them; past it every accept fails.
    The hard limit (systemd: 524,288) is the cap meant. asyncio waits with epoll, which has no
    1,024-descriptor bound as select() has."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# [listen] key -> the listener it describes (the bootstrap default: mailsrv.directory.listeners)
_BOOTSTRAP = {"smtp": (SMTP, STARTTLS), "submission": (SUBMISSION, STARTTLS), "submissions": (SUBMISSION, SSL),
              "imap": (IMAP, STARTTLS), "imaps": (IMAP, SSL), "pop3": (POP, STARTTLS), "pop3s": (POP, SSL)}
_LOG_NAMES = {(SMTP, False): "SMTP", (SMTP, True): "SMTPS", (SUBMISSION, False): "submission",
              (SUBMISSION, True): "submission (TLS)", (IMAP, False): "IMAP", (IMAP, True): "IMAPS",
              (POP, False): "POP3", (POP, True): "POP3S"}
# How often each worker asks the store whether the listeners changed (one one-row read).
_LISTENER_POLL_SECONDS = 1.0


def log_name(listener: Listener) -> str:
    return _LOG_NAMES[listener.protocol, listener.encryption == SSL]


@dataclass(frozen=True)
class _Bound:
    """What `mailsrv serve` binds itself: the web listeners, and the `[listen]` mail addresses as the
    bootstrap description (those given with port 0 resolved and the number reserved, not listening)."""
    web: dict[bool, socket.socket]  # by "is HTTPS"
    bootstrap: tuple[Listener, ...]
    reserved: tuple[socket.socket, ...]

    def all(self) -> list[socket.socket]:
        return [*self.web.values(), *self.reserved]

    def announce(self) -> None:
        """One log line per web listener with its bound address (tests and benchmarks read them);
        each mail listener is logged by the workers as they bind it."""
        for https, sock in self.web.items():
            if https:
                log.info("web listener (HTTPS) on https://%s", format_address(sock.getsockname()))
            else:
                log.info("web listener (SOAP/HTTP) on http://%s", format_address(sock.getsockname()))


def _bind_all(config: Config) -> _Bound:
    web = {False: bind(config.listen.web, "listen.web")}
    reserved: list[socket.socket] = []
    bootstrap: list[Listener] = []
    try:
        if config.listen.webs:
            web[True] = bind(config.listen.webs, "listen.webs")
        for key, (protocol, encryption) in _BOOTSTRAP.items():
            value = getattr(config.listen, key)
            if not value:  # an empty address disables that listener
                continue
            host, port = parse_address(value, f"listen.{key}")
            if port == 0:
                # Every worker must bind the same number: take one now and keep it reserved.
                try:
                    reserved.append(bind_shared(host, 0, listen=False))
                except OSError as exc:
                    log.error("cannot listen on %s (listen.%s): %s", value, key, exc.strerror)
                    continue
                port = reserved[-1].getsockname()[1]
            bootstrap.append(Listener(protocol, encryption, host, port))
    except BaseException:
        for sock in [*web.values(), *reserved]:
            sock.close()
        raise
    return _Bound(web, tuple(bootstrap), tuple(reserved))


class _MailListeners:
    """The mail listeners this process serves, kept equal to the store's description.

    Every `_LISTENER_POLL_SECONDS` it reads the listener generation; when it moved, it reads the
    description and closes what is no longer wanted (a deleted port, a stopped service: sessions in
    progress go on), binds what is new with SO_REUSEPORT beside the other workers and nodes
    (mailsrv.core.sockets), and takes the new greeting names. A listener that cannot be bound is
    logged once, tried again at each poll, and published with the heartbeat until it binds."""

    def __init__(self, server: MailServer, bootstrap: tuple[Listener, ...], certificates: Certificates) -> None:
        self.server = server
        self.bootstrap = bootstrap
        self.certificates = certificates
        self.running: dict[Listener, asyncio.Server] = {}
        self.failed: dict[Listener, str] = {}
        self.wanted: list[Listener] = []
        self._subsystem: Any = None

    async def run(self, stop: asyncio.Event) -> None:
        generation: int | None = None
        reachable = True
        try:
            while not stop.is_set():
                try:
                    current = await asyncio.to_thread(self.server.listeners.generation)
                    if current != generation:
                        description = await asyncio.to_thread(self.server.listeners.describe)
                        self.server.greetings.update(description.hostnames)
                        self.wanted = description.to_bind(self.bootstrap)
                        generation = description.generation
                    reachable = True
                except Exception:  # the store out of reach: keep serving what is bound, say so once
                    if reachable:
                        log.exception("cannot read the listeners from the store")
                    reachable = False
                await self._apply()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), _LISTENER_POLL_SECONDS)
        finally:
            for listener, running in self.running.items():
                running.close()
            self.running.clear()

    async def _apply(self) -> None:
        wanted = set(self.wanted)
        for listener in [listener for listener in self.running if listener not in wanted]:
            self.running.pop(listener).close()
            log.info("%s listener on %s closed", log_name(listener), listener.address)
        for listener in [listener for listener in self.failed if listener not in wanted]:
            del self.failed[listener]
        for listener in self.wanted:
            if listener in self.running:
                continue
            try:
                self.running[listener] = await self._start(listener)
            except (OSError, ssl.SSLError) as exc:
                problem = getattr(exc, "strerror", None) or str(exc)
                if self.failed.get(listener) != problem:
                    log.error("cannot listen on %s (%s): %s", listener.address, log_name(listener), problem)
                self.failed[listener] = problem
                continue
            self.failed.pop(listener, None)
            log.info("%s listener on %s", log_name(listener), listener.address)
        self.server.heartbeat.listen_errors = [f"{listener.address} ({log_name(listener)}): {problem}"
                                               for listener, problem in self.failed.items()]

    async def _start(self, listener: Listener) -> asyncio.Server:
        server, config = self.server, self.server.config
        certificates = self.certificates
        tls = certificates.for_file(listener.certificate_path) if listener.certificate_path else certificates.server
        implicit_tls = listener.encryption == SSL
        sock = bind_shared(listener.ip, listener.port)
        try:
            if listener.protocol in (SMTP, SUBMISSION):
                return await start_listener(server.intake, server.auth, config.smtp, sock,
                                            listener.protocol == SUBMISSION, tls, implicit_tls,
                                            server.sessions, server.greetings)
            if self._subsystem is None:
                self._subsystem = mailbox_subsystem()
            if listener.protocol == POP:
                return await start_pop3_listener(server.mailboxes, config, sock, tls, implicit_tls, self._subsystem,
                                                 server.sessions, server.greetings)
            return await start_imap_listener(server.mailboxes, config, sock, tls, implicit_tls, self._subsystem,
                                             server.sessions)
        except BaseException:
            sock.close()
            raise


def _reload_certificates(certificates: Certificates) -> None:
    for line in certificates.reload():
        log.info("%s (pid %d)", line, os.getpid())


def _serve(server: MailServer, bound: _Bound, certificates: Certificates) -> None:
    """Every listener and the queue manager of `server` on this process's event loop, until
    SIGTERM/SIGINT; SIGHUP reloads the certificates."""
    https = bound.web.get(True)
    # Plain HTTP sends the sign-in pages to the HTTPS listener, when there is one to send them to.
    app = create_app(server, https.getsockname()[1] if https and server.config.web.https_redirect else None)
    listeners: list[Serving] = [functools.partial(serve_web, app, sock, certificates.server if is_https else None)
                                  for is_https, sock in bound.web.items()]
    listeners.append(_MailListeners(server, bound.bootstrap, certificates).run)
    # The queue manager delivers from the spool (also what other nodes and workers accepted).
    listeners.append(server.delivery.run)
    # Background jobs (propagation, folder auto-clean): every worker looks, one at a time works.
    listeners.append(server.job_runner.run)
    # Mailing-list digests that came due by time (mailsrv.mta.digests: one node sends each).
    listeners.append(server.digests.run)
    _tune_garbage_collector()
    # uvloop's event loop (libuv, in C) costs less per socket event than asyncio's selector loop:
    # +19-34% SMTP msg/s in benchmarks/throughput_smtp.py, where one connection carries one message.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve_all(listeners, functools.partial(_reload_certificates, certificates)))


def _announce_start(config: Config, server: MailServer, certificates: Certificates) -> None:
    """What an operator must know at each start: where the data is, and what is still unsafe."""
    database = make_url(config.effective_database_url).render_as_string(hide_password=True)
    log.info("data directory %s, database %s", config.data_dir, database)
    hostname = str(server.system_settings.values()["smtphostname"])
    if hostname.lower() in ("localhost", "localhost.localdomain") or "." not in hostname:
        log.warning("the host name is '%s': other servers refuse or distrust mail from a server "
                    "greeting with it; set [smtp] hostname (or the smtphostname server setting) to the MX "
                    "name the DNS gives this server", hostname)
    cert_file = certificates.server_files[0]
    if is_self_signed(cert_file):
        log.warning("the TLS certificate %s is self-signed: mail clients and browsers warn or refuse; set "
                    "[tls] cert_file and key_file (contrib/certbot-deploy-hook.sh installs Let's Encrypt's)",
                    cert_file)
    if server.admins.factory_login_unchanged():
        log.warning("the factory login admin/admin is unchanged: anyone who reaches the web listener can "
                    "set this server up; run `mailsrv admin reset` or call SetSystemAdminPassword")


def run(config: Config) -> None:
    """Serve until SIGTERM/SIGINT, then stop every listener (every worker) and close the store."""
    # Before any fork: the workers inherit these. SIGHUP (reload) must not end a process that has
    # not installed its handler yet (the supervisor takes it with sigtimedwait, blocked): it reopens
    # the log file (logrotate), also while starting; the event loop takes it over.
    signal.signal(signal.SIGHUP, lambda _signo, _frame: logs.reopen())
    _return_large_blocks_when_freed()
    _raise_open_files_limit()
    # Bind before opening the store: a taken port or a bad address fails without touching data.
    bound = _bind_all(config)
    try:
        # Every worker counts into files of this directory; a scrape of any of them sums them all.
        metrics.use_directory(config.data_dir / "metrics")
        server = MailServer(config)
        try:
            # Made once, before any fork: a first start writes the self-signed pair. Always: the
            # store may describe a TLS listener at any time.
            certificates = Certificates(config)
            _announce_start(config, server, certificates)
            # pymap writes dovecot-uidlist as a temporary file renamed into the Maildir: the
            # temporary directory must be on the mail filesystem, or the rename fails (EXDEV).
            tempfile.tempdir = str(config.data_dir / "tmp")
            os.makedirs(tempfile.tempdir, 0o700, exist_ok=True)
            description = server.listeners.describe()
            if any(listener.protocol in (POP, IMAP) for listener in (*bound.bootstrap, *description.listeners)):
                # Before any worker: later, a lock may be a live sibling's.
                remove_all_stale_locks(server.store)
            bound.announce()
            if config.server.worker_count == 1:
                _serve(server, bound, certificates)
        finally:
            # Before any fork: nothing of the store (connections, pool) crosses into a worker.
            server.close()
        if config.server.worker_count > 1:
            _supervise(config.server.worker_count, functools.partial(_worker, config, bound, certificates))
    finally:
        for sock in bound.all():
            sock.close()
    log.info("stopped")


# -- workers ---------------------------------------------------------------------------------

_SUPERVISED = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP)
# A worker that ends is started again after this, doubled for each quick end in a row (one that
# ended before _STEADY_SECONDS), at most _MAX_BACKOFF_SECONDS: a worker that cannot start (the
# database down) must not spin the machine.
_FIRST_BACKOFF_SECONDS = 0.5
_MAX_BACKOFF_SECONDS = 30.0
_STEADY_SECONDS = 30.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """SIGKILL this process when the process that forked it ends, however it ends (Linux)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _worker(config: Config, bound: _Bound, certificates: Certificates, parent: int) -> None:
    """A worker's life, after the fork."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _SUPERVISED)
    _die_with_parent()
    if os.getppid() != parent:  # the supervisor ended before the line above
        return
    # recover=False: migrations, reconcile and lock clean-up ran once, before the fork; now a
    # half-done domain may be a live sibling's work in progress.
    server = MailServer(config, recover=False)
    try:
        _serve(server, bound, certificates)
    finally:
        server.close()


@dataclass
class _Slot:
    pid: int = 0
    started: float = 0.0
    backoff: float = 0.0
    due: float = 0.0  # when to start it again (monotonic), after it ended


def _fork(slot: _Slot, index: int, work: Callable[[int], None]) -> None:
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            work(parent)
            code = 0
        except BaseException:
            log.exception("worker %d failed", index)
        finally:
            logging.shutdown()
            os._exit(code)  # never back into the supervisor's code
    slot.pid, slot.started = pid, time.monotonic()
    log.info("worker %d started (pid %d)", index, pid)


def _supervise(count: int, work: Callable[[int], None]) -> None:
    """Run `count` workers until SIGTERM/SIGINT, starting again any that ends; then stop them all."""
    # Signals are taken synchronously (sigtimedwait), so no handler runs between a fork and its
    # bookkeeping; the workers unblock them first thing.
    signal.pthread_sigmask(signal.SIG_BLOCK, _SUPERVISED)
    try:
        slots = [_Slot() for _ in range(count)]
        for index, slot in enumerate(slots):
            _fork(slot, index, work)
        stopping = False
        while stopping is False or any(slot.pid for slot in slots):
            now = time.monotonic()
            waits = [slot.due - now for slot in slots if not slot.pid and not stopping]
            info = signal.sigtimedwait(_SUPERVISED, max(0.0, min(waits, default=1.0)))
            if info is not None and info.si_signo == signal.SIGHUP:
                logs.reopen()
                # Each worker reloads its own copy of the certificates (`_serve`).
                for slot in slots:
                    if slot.pid:
                        os.kill(slot.pid, signal.SIGHUP)
            if info is not None and info.si_signo in (signal.SIGTERM, signal.SIGINT) and not stopping:
                stopping = True
                log.info("stopping %d workers", sum(1 for slot in slots if slot.pid))
                for slot in slots:
                    if slot.pid:
                        os.kill(slot.pid, signal.SIGTERM)
            _reap(slots, stopping)
            if not stopping:
                for index, slot in enumerate(slots):
                    if not slot.pid and slot.due <= time.monotonic():
                        _fork(slot, index, work)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SUPERVISED)


def _reap(slots: list[_Slot], stopping: bool) -> None:
    """Collect the workers that ended; schedule their restart unless stopping."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        for index, slot in enumerate(slots):
            if slot.pid != pid:
                continue
            slot.pid = 0
            metrics.process_ended(pid)
            if stopping:
                break
            now = time.monotonic()
            steady = now - slot.started >= _STEADY_SECONDS
            slot.backoff = _FIRST_BACKOFF_SECONDS if steady or not slot.backoff else \
                min(slot.backoff * 2, _MAX_BACKOFF_SECONDS)
            slot.due = now + slot.backoff
            log.warning("worker %d (pid %d) ended (%s): starting it again in %.1f s", index, pid,
                        _describe(status), slot.backoff)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
