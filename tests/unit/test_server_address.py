"""The one parser of a server's address (`mailsrv.core.names.server_address`) and the policies its
callers put around it: default ports, the field named in the refusal, IP-only listen addresses."""
from __future__ import annotations

import pytest

from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.core.names import ServerAddress, server_address
from mailsrv.directory.forwarding_blocks import target_address
from mailsrv.directory.gateways import Gateway
from mailsrv.mta.outgoing_gateways import _hop
from mailsrv.mta.server_probe import parse_address as probe_address


@pytest.mark.parametrize("raw, host, port, text", [
    ("192.0.2.1", "192.0.2.1", None, "192.0.2.1"),
    ("192.0.2.1:2525", "192.0.2.1", 2525, "192.0.2.1:2525"),
    (" 192.0.2.1:25 ", "192.0.2.1", 25, "192.0.2.1:25"),
    ("[2001:DB8:0::1]:587", "2001:db8::1", 587, "[2001:db8::1]:587"),
    ("[::1]", "::1", None, "[::1]"),
    ("2001:db8::1", "2001:db8::1", None, "[2001:db8::1]"),  # bare IPv6: no port
    ("::1:25", "::1:25", None, "[::1:25]"),  # an address, not ::1 port 25
    ("Mail.Example.COM", "mail.example.com", None, "mail.example.com"),
    ("mail.example.com:65535", "mail.example.com", 65535, "mail.example.com:65535"),
    ("mail.example.com:1", "mail.example.com", 1, "mail.example.com:1"),
    ("bücher.example", "xn--bcher-kva.example", None, "xn--bcher-kva.example"),
])
def test_server_address_forms(raw, host, port, text):
    address = server_address(raw)
    assert (address.host, address.port, str(address)) == (host, port, text)
    assert server_address(str(address)) == address


@pytest.mark.parametrize("raw", [
    "", "   ", None, ":25", "gw.example.com:", "gw.example.com:0", "gw.example.com:65536", "gw.example.com:-1",
    "gw.example.com:x", "gw.example.com:٢٥", "gw.example.com: 25", "gw .example.com", "a b.test", "gw:25",
    "localhost", "[2001:db8::1", "[2001:db8::1]25", "[2001:db8::1]:", "[::1]:0", "[192.0.2.1]:25", "[192.0.2.1]",
    "[gw.example.com]:25", "2001:db8::1:25:99999", "300.1.1.1", "300.1.1.1:25", "user@gw.example.com",
    "http://gw.example.com", "-x-.test", "gw.123",
])
def test_malformed_server_addresses_are_refused(raw):
    with pytest.raises(MailsrvError) as refused:
        server_address(raw, "gateway address")
    assert refused.value.code == ResultCode.INVALID_ARGUMENT and "gateway address" in refused.value.message


def test_ip_only_and_port_zero_for_listeners():
    assert server_address("0.0.0.0:0", ip_only=True, port_zero=True) == ServerAddress("0.0.0.0", 0)
    assert server_address("[::]:25", ip_only=True) == ServerAddress("::", 25)
    with pytest.raises(MailsrvError, match="must be an IP address"):
        server_address("mail.example.com:25", ip_only=True)
    with pytest.raises(MailsrvError, match="0-65535"):
        server_address("127.0.0.1:65536", port_zero=True)


def test_ip_is_the_host_only_when_it_is_an_address():
    assert ServerAddress("2001:db8::1", 25).ip == "2001:db8::1"
    assert ServerAddress("mail.example.com", 25).ip is None


def test_the_probe_defaults_to_port_25():
    assert probe_address("gw.example.com") == ("gw.example.com", 25)
    assert probe_address("[::1]:2525") == ("::1", 2525)


def test_forwarding_block_targets_keep_ipv6_brackets():
    assert target_address("[2001:db8::1]:25") == "[2001:db8::1]:25"
    assert target_address("2001:db8::1") == "[2001:db8::1]"
    assert target_address("Relay.Example.com:2525") == "relay.example.com:2525"
    with pytest.raises(MailsrvError, match="target server"):
        target_address("relay.example.com:0")


def test_a_gateway_without_a_port_is_dialled_on_the_default_port():
    plain = Gateway("g", "gw.example.com", "gw.example.com", None, True, None)
    assert (_hop(plain, 2525).host, _hop(plain, 2525).port, _hop(plain, 2525).address) == ("gw.example.com", 2525, None)
    given = Gateway("g", "[2001:db8::1]:26", "2001:db8::1", 26, True, None)
    assert (_hop(given, 2525).port, _hop(given, 2525).address) == (26, "2001:db8::1")
