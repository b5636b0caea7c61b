"""`mailsrv serve`: every listener of one MailServer in one asyncio process, until SIGTERM/SIGINT.

A listener is a coroutine function taking the process-wide stop event: it serves until the event
is set, then stops gracefully and returns. The web listener is the first; the SMTP, POP3 and IMAP
listeners join the list in `run` the same way.
"""
from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import gc
import ipaddress
import logging
import os
import resource
import signal
import socket
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from mailsrv.access.imap.listener import mailbox_subsystem, remove_all_stale_locks, start_imap_listener
from mailsrv.access.pop3 import start_pop3_listener
from mailsrv.access.smtp import start_listener
from mailsrv.core.config import Config, ConfigError
from mailsrv.core.tls import server_context
from mailsrv.server import MailServer
from services.app import create_app

log = logging.getLogger("mailsrv.serve")

Listener = Callable[[asyncio.Event], Coroutine[Any, Any, None]]

# Bounds how long SIGTERM waits for in-flight requests, so `docker stop` (10 s) never has to kill.
_GRACEFUL_SHUTDOWN_SECONDS = 5


class ListenError(Exception):
    """A listener's address cannot be bound (in use, not local, no permission)."""


def parse_address(value: str, key: str) -> tuple[str, int]:
    """Split "ip:port" or "[ipv6]:port" into an IP literal and a port (0 = any free port)."""
    host, sep, port_text = value.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host
    try:
        # Brackets exactly around IPv6: "::1:9998" could be a port or the address's last group.
        valid_host = ipaddress.ip_address(host).version == (6 if bracketed else 4)
    except ValueError:
        valid_host = False
    if not (sep and valid_host and port_text.isascii() and port_text.isdigit() and int(port_text) <= 65535):
        raise ConfigError(f"configuration key '{key}' must be 'address:port' with an IP address "
                          f"(e.g. 0.0.0.0:9998 or [::1]:9998), not '{value}'")
    return host, int(port_text)


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
    if tls:
        log.info("web listener (HTTPS) on https://%s", format_address(sock.getsockname()))
    else:
        log.info("web listener (SOAP/HTTP) on http://%s", format_address(sock.getsockname()))
    # Whichever comes first: the stop signal, or the web server ending on its own (an error).
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    web.should_exit = True
    await serving


async def serve_tcp(name: str, start: Callable[[], Awaitable[asyncio.Server]], stop: asyncio.Event) -> None:
    """One mail protocol listener (SMTP, IMAP, POP3 …): serve until `stop` is set."""
    listener = await start()
    log.info("%s listener on %s", name, format_address(listener.sockets[0].getsockname()))
    try:
        await stop.wait()
    finally:
        listener.close()


async def _serve_all(listeners: list[Listener]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        # One listener failing cancels the others, and its error ends the process.
        async with asyncio.TaskGroup() as group:
            for listener in listeners:
                group.create_task(listener(stop))
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
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


# [listen] key -> (name in the log, listener, implicit TLS)
_MAILBOX_LISTENERS = {"imap": ("IMAP", start_imap_listener, False), "imaps": ("IMAPS", start_imap_listener, True),
                      "pop3": ("POP3", start_pop3_listener, False), "pop3s": ("POP3S", start_pop3_listener, True)}


def run(config: Config) -> None:
    """Serve until SIGTERM/SIGINT, then stop every listener and close the store."""
    _return_large_blocks_when_freed()
    _raise_open_files_limit()
    # Bind before opening the store: a taken port or a bad address fails without touching data.
    web_sockets = {False: bind(config.listen.web, "listen.web")}  # by "is HTTPS"
    smtp_sockets: dict[bool, socket.socket] = {}  # by "is submission"
    mailbox_sockets: dict[str, socket.socket] = {}  # by [listen] key
    try:
        if config.listen.webs:
            web_sockets[True] = bind(config.listen.webs, "listen.webs")
        for submission, value, key in ((False, config.listen.smtp, "listen.smtp"),
                                       (True, config.listen.submission, "listen.submission")):
            if value:  # an empty address disables that listener
                smtp_sockets[submission] = bind(value, key)
        for name in _MAILBOX_LISTENERS:
            if getattr(config.listen, name):
                mailbox_sockets[name] = bind(getattr(config.listen, name), f"listen.{name}")
        server = MailServer(config)
        try:
            if True in web_sockets or smtp_sockets or mailbox_sockets:
                tls_context = server_context(config)
            app = create_app(server)
            listeners: list[Listener] = [functools.partial(serve_web, app, sock, tls_context if https else None)
                                         for https, sock in web_sockets.items()]
            listeners += [functools.partial(serve_tcp, "submission" if submission else "SMTP", functools.partial(
                start_listener, server.intake, server.auth, config.smtp, sock, submission, tls_context))
                for submission, sock in smtp_sockets.items()]
            if mailbox_sockets:
                # pymap writes dovecot-uidlist as a temporary file renamed into the Maildir: the
                # temporary directory must be on the mail filesystem, or the rename fails (EXDEV).
                tempfile.tempdir = str(config.data_dir / "tmp")
                os.makedirs(tempfile.tempdir, 0o700, exist_ok=True)
                remove_all_stale_locks(server.store)
                subsystem = mailbox_subsystem()
                for name, sock in mailbox_sockets.items():
                    log_name, start, implicit_tls = _MAILBOX_LISTENERS[name]
                    listeners.append(functools.partial(serve_tcp, log_name, functools.partial(
                        start, server.mailboxes, config, sock, tls_context, implicit_tls, subsystem)))
            # The queue manager delivers from the spool (also what other nodes accepted).
            listeners.append(server.delivery.run)
            _tune_garbage_collector()
            asyncio.run(_serve_all(listeners))
        finally:
            server.close()
    finally:
        for sock in (*web_sockets.values(), *smtp_sockets.values(), *mailbox_sockets.values()):
            sock.close()
    log.info("stopped")
