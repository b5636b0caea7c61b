"""Listening sockets that every worker process of every node binds for itself (SO_REUSEPORT).

Each worker binds the mail listeners it serves with SO_REUSEPORT and the kernel spreads the
connections over them; a worker that closes its socket (StopServices, a deleted port) stops
accepting at once, and once every worker has closed it the port refuses connections. A socket
bound the same way without listen() reserves a port number (the `mailsrv serve` process holds one
for each `[listen]` address given with port 0) without taking connections. A foreign socket on the
port (bound without SO_REUSEPORT) makes the bind fail with EADDRINUSE, as it should.
"""
from __future__ import annotations

import socket


def family_of(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def bind_shared(host: str, port: int, listen: bool = True) -> socket.socket:
    """A TCP socket bound with SO_REUSEPORT (listening unless `listen` is False); OSError as bind
    raises it (EADDRINUSE, EACCES for a privileged port, EADDRNOTAVAIL for an address not local).

    Its proto is IPPROTO_TCP so that asyncio sets TCP_NODELAY on accepted connections (see
    mailsrv.serve.tcp_listener)."""
    family = family_of(host)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(socket.SOMAXCONN)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_problem(host: str, port: int) -> str | None:
    """Why `host:port` cannot be bound here (None: it can), tried without taking it."""
    try:
        bind_shared(host, port, listen=False).close()
    except OSError as exc:
        return exc.strerror or str(exc)
    return None
