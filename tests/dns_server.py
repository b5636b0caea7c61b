"""A real authoritative DNS server on loopback UDP, answering from a dict of records.

Tests that exercise MX checks and routing point mailsrv's `[dns] nameservers` at it."""
from __future__ import annotations

import socket
import threading
from collections.abc import Iterable
from contextlib import suppress
from types import TracebackType

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

# The name of every DnsServer's thread: tests/conftest.py checks that none outlives its test.
THREAD_NAME = "DnsServer"


class DnsServer:
    """`records` maps (name, type) to a list of rdata texts, e.g. ("example.com", "MX"): ["10 mx.example.com."],
    ("example.com", "TXT"): [txt("v=spf1 -all")].

    A name without any record is answered with `unknown`: NXDOMAIN, or SERVFAIL to stand for a
    DNS that cannot be reached (the SMTP harness: mail to unknown domains stays deferred). Questions
    for a name in `silent` get no answer at all: the asker times out. `close` it (or use it as a
    context manager) to end its thread."""

    def __init__(self, records: dict[tuple[str, str], list[str]], unknown: int = dns.rcode.NXDOMAIN,
                 bind: tuple[str, int] = ("127.0.0.1", 0), ttl: int = 0) -> None:
        self.records: dict[tuple[str, str], list[str]] = {}
        self.unknown = unknown
        self.silent: set[str] = set()
        # TTL 0 by default: tests change records live, so no resolver may keep an answer (mailsrv's
        # sender checks cache); a benchmark gives a real one.
        self.ttl = ttl
        self.add(records)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(bind)  # a fixed port 53 for a resolver that cannot be told a port (opendkim's)
        self.address = f"{bind[0]}:{self.sock.getsockname()[1]}"
        self._closing = False
        self._thread = threading.Thread(target=self._serve, name=f"{THREAD_NAME} {self.address}", daemon=True)
        self._thread.start()

    def add(self, records: dict[tuple[str, str], list[str]]) -> None:
        """More records (replacing those of the same name and type), live at once."""
        self.records = {**self.records, **{(name.lower().rstrip("."), rtype.upper()): values
                                           for (name, rtype), values in records.items()}}

    def add_zone_lines(self, lines: Iterable[str]) -> None:
        """The records written as zone-file lines, `NAME. IN TYPE DATA`: the lines the DNS check tells an
        administrator to create, so a test creates them as one would."""
        for line in lines:
            name, rtype, data = parse_zone_line(line)
            self.add({(name, rtype): [data]})

    def _answer(self, wire: bytes) -> bytes | None:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text().lower().rstrip(".")
        rtype = dns.rdatatype.to_text(question.rdtype)
        if name in self.silent:
            return None
        values = self.records.get((name, rtype))
        if values:
            response.answer.append(dns.rrset.from_text_list(question.name, self.ttl, dns.rdataclass.IN, rtype, values))
        elif not any(known == name for known, _ in self.records):
            response.set_rcode(self.unknown)
        return response.to_wire()

    def _serve(self) -> None:
        while True:
            try:
                wire, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            if self._closing:
                return
            answer = self._answer(wire)
            if answer is not None:
                self.sock.sendto(answer, peer)

    def close(self) -> None:
        """Stop answering; the thread has ended when this returns. Closing the socket alone left the
        thread blocked in recvfrom, and the port bound, for the rest of the run: shutting its reading
        down wakes it (on an unconnected UDP socket Linux does so, though it says ENOTCONN)."""
        self._closing = True
        with suppress(OSError):
            self.sock.shutdown(socket.SHUT_RD)
        self._thread.join()
        self.sock.close()

    def __enter__(self) -> DnsServer:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def parse_zone_line(line: str) -> tuple[str, str, str]:
    name, _, rest = line.partition(" IN ")
    rtype, _, data = rest.partition(" ")
    return name, rtype, data


def txt(value: str) -> str:
    """`value` as the rdata text of one TXT record: quoted strings of at most 255 characters (a
    2048-bit DKIM key is longer)."""
    return " ".join(f'"{value[i:i + 255]}"' for i in range(0, len(value), 255))
