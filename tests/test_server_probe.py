"""Testing a gateway or primary (`mailsrv.mta.server_probe`, `mailsrv gateway test`) against real
peers on loopback: a mailsrv (SMTP with STARTTLS and its SOAP API), an aiosmtpd peer without TLS, a
closed port, a server that never greets and one that refuses."""
from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from serve_support import MAILSRV
from smtp_peer import Peer, free_port
from smtp_support import ADMIN, DOMAIN, MailHarness, make_harness, send
from web_support import WebHarness

from mailsrv import __version__
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.directory.product import PRODUCT_NAME
from mailsrv.mta.server_probe import ApiLogin, parse_address, probe_server


@pytest.mark.parametrize("text, expected", [
    ("192.0.2.1", ("192.0.2.1", 25)), ("192.0.2.1:2525", ("192.0.2.1", 2525)),
    ("[2001:db8::1]:587", ("2001:db8::1", 587)), ("[::1]", ("::1", 25)), ("2001:db8::1", ("2001:db8::1", 25)),
    ("gw.example.com", ("gw.example.com", 25)), (" gw.example.com:26 ", ("gw.example.com", 26)),
])
def test_server_addresses(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["", ":25", "gw.example.com:0", "gw.example.com:65536", "gw:x", "[::1",
                                  "[::1]25", "user@gw.example.com", "http://gw.example.com"])
def test_malformed_server_addresses_are_refused(text):
    with pytest.raises(MailsrvError) as refused:
        parse_address(text)
    assert refused.value.code == ResultCode.INVALID_ARGUMENT


@pytest.fixture
def mailsrv_peer(tmp_path) -> Iterator[tuple[MailHarness, str]]:
    """A mailsrv with its SMTP listener and its web API: (harness, base URL)."""
    for mail in make_harness(tmp_path):
        web = WebHarness(mail)
        try:
            yield mail, web.url
        finally:
            web.stop()


def test_a_mailsrv_peer_answers_smtp_tls_version_and_spool_count(mailsrv_peer):
    mail, url = mailsrv_peer
    mail.dns.add({("peer.test", "MX"): ["10 mx.peer.test."], ("mx.peer.test", "A"): ["127.0.0.1"]})
    with mail.authenticated("alice@a.test") as smtp:  # one message waiting for a peer that is not there
        send(smtp, "alice@a.test", ["friend@peer.test"], b"Subject: waiting\r\n\r\nbody\r\n")

    found = probe_server(f"127.0.0.1:{mail.smtp_port}", ApiLogin(url, *ADMIN), timeout=5)

    assert found.reachable and found.smtp_error == "" and found.tls_error == ""
    assert found.greeting.startswith("220 mx.test")
    assert found.ehlo[0] == "mx.test" and "STARTTLS" in found.ehlo
    assert found.starttls_offered and found.tls_negotiated and found.tls_version.startswith("TLS")
    assert found.connect_ms is not None and found.round_trip_ms is not None and found.round_trip_ms < 5000
    assert (found.product_name, found.product_version) == (PRODUCT_NAME, __version__)
    assert found.spool_count == 1 and found.api_error == "" and found.spool_error == ""


def test_a_wrong_api_login_is_reported_and_smtp_still_tested(mailsrv_peer):
    mail, url = mailsrv_peer
    found = probe_server(f"127.0.0.1:{mail.smtp_port}", ApiLogin(url, ADMIN[0], "wrong"), timeout=5, try_tls=False)
    assert found.reachable and found.starttls_offered and not found.tls_negotiated
    assert found.api_error.startswith("GetProductInfo refused (code ") and found.spool_count is None
    # A domain administrator logs in but may not read the server's spool.
    found = probe_server(f"127.0.0.1:{mail.smtp_port}", ApiLogin(url, f"postmaster@{DOMAIN}", "Domain-pass-1"),
                         timeout=5, try_tls=False)
    assert found.spool_count is None and (found.api_error or found.spool_error)


def test_an_api_that_is_not_there_is_reported(mailsrv_peer):
    mail, _ = mailsrv_peer
    found = probe_server(f"127.0.0.1:{mail.smtp_port}", ApiLogin(f"http://127.0.0.1:{free_port()}", *ADMIN), timeout=5)
    assert found.reachable
    assert "GetProductInfo: cannot reach http://127.0.0.1:" in found.api_error


def test_a_peer_without_tls():
    port = free_port()
    peer = Peer("127.0.0.1", port)
    try:
        found = probe_server(f"127.0.0.1:{port}", timeout=5)
    finally:
        peer.stop()
    assert found.reachable and found.ehlo and not found.starttls_offered and not found.tls_negotiated
    assert found.smtp_error == found.tls_error == ""


def test_a_closed_port_is_unreachable():
    found = probe_server(f"127.0.0.1:{free_port()}", timeout=5)
    assert not found.reachable and "connect (127.0.0.1 port " in found.smtp_error
    assert "refused" in found.smtp_error.lower()


def silent_server(greeting: bytes = b"") -> tuple[socket.socket, int]:
    """A listener that accepts, sends `greeting` (nothing: it never greets) and then stays silent."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn)
            conn.sendall(greeting)
    threading.Thread(target=serve, daemon=True).start()
    return listener, listener.getsockname()[1]


def test_a_server_that_never_greets_times_out():
    listener, port = silent_server()
    try:
        started = time.monotonic()
        found = probe_server(f"127.0.0.1:{port}", timeout=1)
        assert time.monotonic() - started < 4
    finally:
        listener.close()
    assert not found.reachable and found.smtp_error.startswith("greeting (127.0.0.1 port ")
    assert "no answer within the timeout" in found.smtp_error


def test_a_server_that_greets_and_then_hangs_times_out_at_ehlo():
    listener, port = silent_server(b"220 slow.test ESMTP\r\n")
    try:
        found = probe_server(f"127.0.0.1:{port}", timeout=1)
    finally:
        listener.close()
    assert found.reachable and found.ehlo == []
    assert found.smtp_error.startswith("EHLO (127.0.0.1 port ")
    assert found.smtp_error.endswith("no answer within the timeout")


def test_a_refusing_greeting_is_reported():
    listener, port = silent_server(b"554 5.3.2 no service\r\n")
    try:
        found = probe_server(f"127.0.0.1:{port}", timeout=2)
    finally:
        listener.close()
    assert not found.reachable and found.smtp_error == "greeting refused: 554 5.3.2 no service"


def test_a_host_name_is_resolved_through_the_configured_dns(mailsrv_peer):
    mail, _ = mailsrv_peer
    mail.dns.add({("gw.peer.test", "A"): ["127.0.0.1"]})
    found = probe_server(f"gw.peer.test:{mail.smtp_port}", nameservers=[mail.dns.address], timeout=5)
    assert found.ip == "127.0.0.1" and found.reachable
    found = probe_server("nowhere.peer.test", nameservers=[mail.dns.address], timeout=5)
    assert not found.reachable and found.smtp_error.startswith("cannot resolve nowhere.peer.test")


def gateway_test(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MAILSRV, "gateway", "test", *args], env=env, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def test_the_gateway_test_command(mailsrv_peer, env):
    mail, url = mailsrv_peer
    done = gateway_test(f"127.0.0.1:{mail.smtp_port}", "--soap-url", url, "--user", ADMIN[0],
                        "--password", ADMIN[1], env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "greeting:   220 mx.test" in done.stdout
    assert "STARTTLS:   offered, negotiated TLS" in done.stdout
    assert f"product:    {PRODUCT_NAME} {__version__}" in done.stdout and "spool:      0 messages" in done.stdout

    done = gateway_test(f"127.0.0.1:{mail.smtp_port}", "--soap-url", url, "--user", ADMIN[0],
                        "--password", "wrong", "--no-tls", env=env)
    assert done.returncode == 1 and "API error: GetProductInfo refused" in done.stdout
    assert "STARTTLS:   offered\n" in done.stdout


def test_the_gateway_test_command_fails_for_a_closed_port_or_a_bad_address(env):
    done = gateway_test(f"127.0.0.1:{free_port()}", "--timeout", "3", env=env)
    assert done.returncode == 1 and "SMTP error: connect (127.0.0.1 port" in done.stdout
    done = gateway_test("gw.example:99999", env=env)
    assert done.returncode == 2 and "the port must be 1-65535" in done.stderr
    done = gateway_test("gw.example", "--soap-url", "http://gw.example:9998", env=env)
    assert done.returncode == 2 and "go together" in done.stderr


def test_an_ipv6_peer_in_brackets():
    try:
        with socket.create_server(("::1", 0), family=socket.AF_INET6) as sock:
            port = sock.getsockname()[1]
    except OSError:
        pytest.skip("this machine has no IPv6 loopback")
    peer = Peer("::1", port)
    try:
        found = probe_server(f"[::1]:{port}", timeout=5)
    finally:
        peer.stop()
    assert (found.host, found.ip, found.port) == ("::1", "::1", port)
    assert found.reachable and found.smtp_error == ""
