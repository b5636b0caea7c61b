"""What a remote server's answers mean for a message, and the enhanced status codes (RFC 3463) on
ours, without a server: delivered, retried later (deferred) or failed for good."""
from __future__ import annotations

import dns.exception
import dns.rdata
import dns.resolver
import pytest

from mailsrv.mta.remote_delivery import RouteError, _classify, host_addresses, mx_hosts
from mailsrv.access.smtp import with_enhanced_code
from mailsrv.mta.spool import Deferred, Delivered, Failed


@pytest.mark.parametrize("code, text, expected", [
    (250, b"2.0.0 queued", Delivered(relay="mx1.peer.test", reply="250 2.0.0 queued")),
    (550, b"5.1.1 <gone@peer.test>: no such user",
     Failed("5.1.1 mx1.peer.test said: 550 5.1.1 <gone@peer.test>: no such user", "mx1.peer.test",
            "550 5.1.1 <gone@peer.test>: no such user")),
    (554, b"rejected", Failed("5.0.0 mx1.peer.test said: 554 rejected", "mx1.peer.test", "554 rejected")),
    (451, b"4.7.1 greylisted,\n  try again", Deferred("4.7.1 mx1.peer.test said: 451 4.7.1 greylisted, try again",
                                                      "mx1.peer.test", "451 4.7.1 greylisted, try again")),
    (421, "closing", Deferred("4.0.0 mx1.peer.test said: 421 closing", "mx1.peer.test", "421 closing")),
    # The reply code decides the class; an enhanced code of the other class keeps only its detail.
    (450, b"5.2.2 mailbox full", Deferred("4.2.2 mx1.peer.test said: 450 5.2.2 mailbox full", "mx1.peer.test",
                                          "450 5.2.2 mailbox full")),
    (550, b"4.2.2 mailbox full", Failed("5.2.2 mx1.peer.test said: 550 4.2.2 mailbox full", "mx1.peer.test",
                                       "550 4.2.2 mailbox full")),
    (550, b"\xff5.1.1 bad bytes", Failed("5.0.0 mx1.peer.test said: 550 \ufffd5.1.1 bad bytes", "mx1.peer.test",
                                         "550 \ufffd5.1.1 bad bytes")),
])
def test_2xx_is_delivered_4xx_retried_5xx_failed(code, text, expected):
    assert _classify(code, text, "mx1.peer.test") == expected


@pytest.mark.parametrize("status, expected", [
    ("5.1.2", Failed("5.1.2 no way there", "mx1.peer.test", "421 bye")),
    ("5.1.10", Failed("5.1.10 no way there", "mx1.peer.test", "421 bye")),
    # No host answered: deferred, and the destination is dead for now (mailsrv.mta.destinations).
    ("4.4.1", Deferred("4.4.1 no way there", "mx1.peer.test", "421 bye", unreachable=True)),
    ("4.4.3", Deferred("4.4.3 no way there", "mx1.peer.test", "421 bye")),
])
def test_a_route_error_fails_only_when_permanent(status, expected):
    assert RouteError(status, "no way there", "mx1.peer.test", "421 bye").outcome() == expected


class Answers:
    """A resolver with fixed answers: each (name, type) gives records or raises an exception."""

    def __init__(self, answers: dict[tuple[str, str], list[str] | Exception]) -> None:
        self.answers = answers

    def resolve(self, name: str, rdtype: str, search: bool = False) -> list[object]:
        answer = self.answers.get((name, rdtype), dns.resolver.NoAnswer())
        if isinstance(answer, Exception):
            raise answer
        return [dns.rdata.from_text("IN", rdtype, text) for text in answer]


def test_mx_hosts_best_first_and_the_implicit_mx():
    resolver = Answers({("peer.test", "MX"): ["20 b.peer.test.", "10 a.peer.test."]})
    assert mx_hosts(resolver, "peer.test") == ["a.peer.test", "b.peer.test"]
    assert mx_hosts(Answers({}), "peer.test") == ["peer.test"]


@pytest.mark.parametrize("answer, status", [(dns.resolver.NXDOMAIN(), "5.1.2"), (["0 ."], "5.1.10"),
                                            (dns.exception.Timeout(), "4.4.3"),
                                            (dns.resolver.NoNameservers(), "4.4.3")])
def test_a_missing_domain_or_null_mx_fails_and_a_dns_outage_is_retried(answer, status):
    with pytest.raises(RouteError) as raised:
        mx_hosts(Answers({("peer.test", "MX"): answer}), "peer.test")
    assert raised.value.status == status and raised.value.permanent == status.startswith("5")


def test_host_addresses_no_address_is_not_a_dns_outage():
    assert host_addresses(Answers({("mx.peer.test", "A"): dns.resolver.NXDOMAIN()}), "mx.peer.test") == []
    assert host_addresses(Answers({("mx.peer.test", "AAAA"): ["::1"], ("mx.peer.test", "A"): dns.exception.Timeout()}),
                          "mx.peer.test") == ["::1"]
    with pytest.raises(RouteError) as raised:
        host_addresses(Answers({("mx.peer.test", "A"): dns.exception.Timeout()}), "mx.peer.test")
    assert raised.value.status == "4.4.3" and not raised.value.permanent


@pytest.mark.parametrize("reply, expected", [
    ("250 OK", "250 2.0.0 OK"),
    ("250-first line", "250-2.0.0 first line"),
    ("502 Command not implemented", "502 5.5.1 Command not implemented"),
    ("535 Authentication failed", "535 5.7.8 Authentication failed"),
    ("421 closing", "421 4.3.0 closing"),
    ("599 odd", "599 5.0.0 odd"),
    ("550 5.1.1 already has one", "550 5.1.1 already has one"),
    ("354 End data with <CR><LF>.<CR><LF>", "354 End data with <CR><LF>.<CR><LF>"),  # no class for 3xx
    ("not a reply", "not a reply"),
])
def test_our_replies_carry_an_enhanced_status_code(reply, expected):
    assert with_enhanced_code(reply) == expected
