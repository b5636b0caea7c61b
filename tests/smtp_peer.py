"""A remote mail server for the delivery tests: a real aiosmtpd listener on a loopback address.

Remote delivery dials every MX on one port (`[delivery] remote_port`), so peers standing for
different MX hosts share a port and differ by loopback address (127.0.0.1, 127.0.0.2, …): an
address with nothing listening on that port is a host that is down. `remote_config` points the
harness at the port; its DNS (`MailHarness.dns`) names the hosts.
"""
from __future__ import annotations

import asyncio
import random
import socket
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from mailsrv.core.tls import ensure_self_signed


# The kernel takes outgoing connections' source ports from this range: a port chosen below it cannot
# be taken by one of the server's own connections (from 127.0.0.3, say) between the choice and the
# bind, which a port the kernel handed out from the range could.
_EPHEMERAL_FIRST = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
_ports = random.SystemRandom()


def free_port() -> int:
    """A port nothing listens on at 127.0.0.1 now, outside the ephemeral range (peers bind it on
    other loopback addresses too)."""
    while True:
        port = _ports.randrange(10_000, _EPHEMERAL_FIRST)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def remote_config(port: int) -> str:
    return f"[delivery]\nremote_port = {port}\n"


@dataclass(frozen=True)
class Arrival:
    sender: str
    recipients: list[str]
    content: bytes
    tls: bool
    peer_ip: str = ""  # the address the sending server connected from


@dataclass
class PeerHandler:
    refuse: dict[str, str] = field(default_factory=dict)  # RCPT address -> its reply
    arrivals: list[Arrival] = field(default_factory=list)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.arrivals.append(Arrival(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content or b"",
                                     session.ssl is not None, session.peer[0] if session.peer else ""))
        return "250 2.0.0 queued"


class SlowPeer(PeerHandler):
    """A peer that takes its time to answer DATA: until the test opens `gate`."""

    def __init__(self) -> None:
        super().__init__()
        self.receiving, self.gate = threading.Event(), threading.Event()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.receiving.set()
        await asyncio.to_thread(self.gate.wait, 60)
        return await super().handle_DATA(server, session, envelope)


class Peer:
    """An SMTP server on `address`:`port`, offering STARTTLS when given a certificate directory."""

    def __init__(self, address: str, port: int, tls_dir: Path | None = None, handler: PeerHandler | None = None) -> None:
        self.handler = handler or PeerHandler()
        self.server_names: list[str | None] = []  # the name each TLS client asked for (SNI), None: none
        tls = None
        if tls_dir is not None:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            pem = ensure_self_signed(tls_dir, "peer.test")
            tls.load_cert_chain(pem, pem)
            tls.sni_callback = lambda _socket, name, _context: self.server_names.append(name)
        self.controller = Controller(self.handler, hostname=address, port=port, tls_context=tls,
                                     require_starttls=False)
        self.controller.start()

    @property
    def arrivals(self) -> list[Arrival]:
        return self.handler.arrivals

    def stop(self) -> None:
        self.controller.stop()


class HangingPeer:
    """A peer that takes a whole message and then never answers it, on `address`:`port`, and
    notices when the client hangs up: `receiving` is set once the message is in, `dropped` once
    the client closed the connection."""

    def __init__(self, address: str, port: int) -> None:
        self.receiving, self.dropped = threading.Event(), threading.Event()
        self._listener = socket.create_server((address, port))
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"220 hanging.test ESMTP\r\n")
            in_data = False
            for line in lines:
                if in_data:
                    if line == b".\r\n":
                        self.receiving.set()  # and no reply, ever
                    continue
                verb = line[:4].upper()
                if verb == b"EHLO":
                    conn.sendall(b"250-hanging.test\r\n250 8BITMIME\r\n")
                elif verb == b"DATA":
                    conn.sendall(b"354 go on\r\n")
                    in_data = True
                else:
                    conn.sendall(b"250 OK\r\n")
        self.dropped.set()  # the client closed its side

    def stop(self) -> None:
        self._listener.close()
