"""Outgoing gateways and SmartGateway (issue 12, items 2 and 3): the svcServerAdmin gateway
operations, and a primary with `gatewayenabled` sending its remote mail through them over real
sockets — SMTP peers on 127.0.0.2/127.0.0.3 standing for gateways, and a real mailsrv gateway
(its own data directory) relaying for the primary only, on to the final destination."""
from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterator

import pytest
from contract_clients import ZeepClient, ok, refused
from smtp_peer import HangingPeer, Peer, free_port, remote_config
from smtp_support import ADMIN as SYSTEM_ADMIN
from smtp_support import DOMAIN, MailHarness, make_harness, send
from web_support import WebHarness

from mailsrv.core.config import parse_config
from mailsrv.core.errors import ResultCode
from mailsrv.directory.address_lists import WHITELIST
from mailsrv.directory.gateways import parse_address
from mailsrv.server import MailServer

ADMIN = {"AuthUserName": SYSTEM_ADMIN[0], "AuthPassword": SYSTEM_ADMIN[1]}
MSG = b"From: <alice@a.test>\r\nTo: <friend@peer.test>\r\nSubject: out\r\n\r\nThrough the gateway\r\n"
COOLDOWN = 1


@pytest.fixture
def primary(tmp_path, port) -> Iterator[MailHarness]:
    # peer.test has no MX record here (the harness's DNS answers SERVFAIL): what leaves does so
    # only through a gateway.
    yield from make_harness(tmp_path, remote_config(port) + f"gateway_cooldown_seconds = {COOLDOWN}\n")


@pytest.fixture
def soap(primary) -> Iterator[ZeepClient]:
    web = WebHarness(primary)
    try:
        yield ZeepClient(web.url)
    finally:
        web.stop()


def sqlite_harness(base, extra: str) -> tuple[Iterator[MailHarness], MailHarness]:
    """A second mailsrv server (a gateway), in its own data directory and its own SQLite database
    even in a PostgreSQL run: two servers sharing one database would be one server's nodes."""
    with pytest.MonkeyPatch.context() as env:
        env.delenv("MAILSRV_TEST_DATABASE_URL", raising=False)
        harness = make_harness(base, extra)
        return harness, next(harness)


def settings(mail: MailHarness, *assignments: str) -> None:
    mail.server.system_settings.set_requested(mail.admin(), list(assignments))


def add(mail: MailHarness, address: str, enabled: bool = True) -> str:
    return mail.server.gateways.add(mail.admin(), address, enabled)


def send_out(mail: MailHarness, count: int = 1, to: str = "friend@peer.test") -> None:
    with mail.authenticated("alice@a.test") as smtp:
        for _ in range(count):
            send(smtp, "alice@a.test", [to], MSG)


def nothing_bounced(mail: MailHarness) -> bool:
    return mail.messages("alice@a.test") == [] and mail.spool_rows() == []


# -- pure rules ------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, parsed, stored", [  # port None: `[delivery] remote_port`
    ("gw.example.com", ("gw.example.com", None), "gw.example.com"),
    ("GW.Example.com:2525", ("gw.example.com", 2525), "gw.example.com:2525"),
    ("gw.example.com:25", ("gw.example.com", 25), "gw.example.com:25"),
    ("192.0.2.7", ("192.0.2.7", None), "192.0.2.7"), ("192.0.2.7:587", ("192.0.2.7", 587), "192.0.2.7:587"),
    ("[2001:db8::1]:26", ("2001:db8::1", 26), "[2001:db8::1]:26"),
    ("2001:db8::1", ("2001:db8::1", None), "[2001:db8::1]"), ("[2001:db8::1]", ("2001:db8::1", None), "[2001:db8::1]")])
def test_gateway_addresses(raw, parsed, stored):
    address = parse_address(raw)
    assert ((address.host, address.port), str(address)) == (parsed, stored)


@pytest.mark.parametrize("raw", ["", "   ", "gw.example.com:0", "gw.example.com:65536", "gw:x", "a b.test",
                                 "[gw.example.com]:25", "[2001:db8::1", "[2001:db8::1]x", "http://gw.test/"])
def test_bad_gateway_addresses(raw):
    with pytest.raises(Exception) as refusal:
        parse_address(raw)
    assert getattr(refusal.value, "code", None) == ResultCode.INVALID_ARGUMENT


# -- the operations --------------------------------------------------------------------------

def listed(soap: ZeepClient) -> list[dict]:
    return ok(soap.call("svcServerAdmin", "ListGateways", **ADMIN))["gateways"] or []


def test_operations_round_trip(soap):
    ok(soap.call("svcServerAdmin", "AddGateway", **ADMIN, address="GW1.example.com", enabled=True))
    ok(soap.call("svcServerAdmin", "AddSmarterMailGateway", **ADMIN, address="192.0.2.9:2525", enabled=False,
                 smUrl="https://gw2.example.com/", smUserName="admin", smPassword="pw"))
    first, second = listed(soap)
    assert (first["gatewayAddress"], first["enabled"], first["isSmarterMailServer"], first["smUrl"] or "") == \
        ("gw1.example.com", True, False, "")
    got = ok(soap.call("svcServerAdmin", "GetGateway", **ADMIN, guid=second["guid"]))
    assert (got["gatewayAddress"], got["enabled"], got["isSmarterMailServer"], got["smUrl"], got["smUserName"],
            got["smPassword"]) == ("192.0.2.9:2525", False, True, "https://gw2.example.com/", "admin", "pw")
    ok(soap.call("svcServerAdmin", "UpdateGateway", **ADMIN, guid=second["guid"], address="gw2.example.com",
                 enabled=True, isSmarterMailServer=False, smUrl="", smUserName="", smPassword=""))
    got = ok(soap.call("svcServerAdmin", "GetGateway", **ADMIN, guid=second["guid"]))
    assert (got["gatewayAddress"], got["enabled"], got["isSmarterMailServer"], got["smUrl"] or "") == \
        ("gw2.example.com", True, False, "")
    ok(soap.call("svcServerAdmin", "RemoveGateway", **ADMIN, guid=first["guid"]))
    assert [g["guid"] for g in listed(soap)] == [second["guid"]]
    code, _ = refused(soap.call("svcServerAdmin", "GetGateway", **ADMIN, guid=first["guid"]))
    assert code == ResultCode.ITEM_NOT_FOUND


def test_bad_input_stores_nothing(soap):
    ok(soap.call("svcServerAdmin", "AddGateway", **ADMIN, address="gw1.example.com", enabled=True))
    [kept] = listed(soap)
    for address in ("", "not a host", "gw.example.com:99999", "[2001:db8::1"):
        code, message = refused(soap.call("svcServerAdmin", "AddGateway", **ADMIN, address=address, enabled=True))
        assert code == ResultCode.INVALID_ARGUMENT and "gateway address" in message
    for url, user in (("ftp://gw.example.com/", "admin"), ("not a url", "admin"), ("", "admin"),
                      ("http://user:pw@gw.example.com/", "admin"), ("http://gw.example.com:99999/", "admin"),
                      ("https://gw.example.com/", "")):
        code, _ = refused(soap.call("svcServerAdmin", "AddSmarterMailGateway", **ADMIN, address="gw2.example.com",
                                    enabled=True, smUrl=url, smUserName=user, smPassword="pw"))
        assert code == ResultCode.INVALID_ARGUMENT, url
    code, _ = refused(soap.call("svcServerAdmin", "AddGateway", **ADMIN, address="GW1.Example.com", enabled=True))
    assert code == ResultCode.NAME_IN_USE
    code, _ = refused(soap.call("svcServerAdmin", "UpdateGateway", **ADMIN, guid=kept["guid"], address="gw1.example.com",
                                enabled=False, isSmarterMailServer=True, smUrl="gopher://x", smUserName="a",
                                smPassword=""))
    assert code == ResultCode.INVALID_ARGUMENT
    for guid in ("", "not-a-guid", "00000000-0000-0000-0000-000000000000"):
        code, _ = refused(soap.call("svcServerAdmin", "RemoveGateway", **ADMIN, guid=guid))
        assert code == ResultCode.ITEM_NOT_FOUND
    assert listed(soap) == [kept]


def test_only_system_administrators(soap, primary):
    ok(soap.call("svcServerAdmin", "AddGateway", **ADMIN, address="gw1.example.com", enabled=True))
    [kept] = listed(soap)
    for login in ({"AuthUserName": f"postmaster@{DOMAIN}", "AuthPassword": "Domain-pass-1"},
                  {"AuthUserName": f"alice@{DOMAIN}", "AuthPassword": "User-pass-123"}):
        calls = [("AddGateway", {"address": "gw9.example.com", "enabled": True}),
                 ("AddSmarterMailGateway", {"address": "gw9.example.com", "enabled": True, "smUrl": "bad",
                                            "smUserName": "", "smPassword": ""}),
                 ("UpdateGateway", {"guid": kept["guid"], "address": "bad address", "enabled": False,
                                    "isSmarterMailServer": False, "smUrl": "", "smUserName": "", "smPassword": ""}),
                 ("RemoveGateway", {"guid": kept["guid"]}), ("GetGateway", {"guid": kept["guid"]}),
                 ("ListGateways", {})]
        for operation, params in calls:
            code, _ = refused(soap.call("svcServerAdmin", operation, **login, **params))
            assert code == ResultCode.PERMISSION_DENIED, (login, operation)
    assert listed(soap) == [kept]


# -- routing through SMTP peers standing for gateways -------------------------------------------

def test_round_robin_uses_both_gateways(primary):
    port = free_port()
    one, two = Peer("127.0.0.2", port), Peer("127.0.0.3", port)
    try:
        add(primary, f"127.0.0.2:{port}")
        add(primary, f"127.0.0.3:{port}")
        settings(primary, "gatewayenabled=True", "gatewaybalance=RoundRobin")
        send_out(primary, 4)
        primary.deliver()
        assert (len(one.arrivals), len(two.arrivals)) == (2, 2)
        assert all(a.recipients == ["friend@peer.test"] for a in one.arrivals + two.arrivals)
        assert nothing_bounced(primary)
    finally:
        one.stop()
        two.stop()


def test_a_gateway_without_a_port_is_dialled_on_the_remote_port(primary, port):
    one = Peer("127.0.0.2", port)  # `[delivery] remote_port`, as for an incoming gateway's primary
    try:
        add(primary, "127.0.0.2")
        settings(primary, "gatewayenabled=True")
        send_out(primary)
        primary.deliver()
        assert len(one.arrivals) == 1 and nothing_bounced(primary)
    finally:
        one.stop()


def test_a_stopped_gateway_passes_its_mail_to_the_other(primary):
    port = free_port()
    two = Peer("127.0.0.3", port)  # 127.0.0.2 has nothing listening: that gateway is down
    try:
        add(primary, f"127.0.0.2:{port}")
        add(primary, f"127.0.0.3:{port}")
        settings(primary, "gatewayenabled=True")
        send_out(primary, 4)
        primary.deliver()
        assert len(two.arrivals) == 4
        assert nothing_bounced(primary)
    finally:
        two.stop()


def test_every_gateway_down_defers_and_bounces_nothing(primary):
    port = free_port()
    add(primary, f"127.0.0.2:{port}")
    add(primary, f"127.0.0.3:{port}")
    settings(primary, "gatewayenabled=True")
    send_out(primary)
    primary.deliver()
    assert primary.spool_rows() == [("friend@peer.test", "remote", "deferred")]
    assert primary.messages("alice@a.test") == []
    # They come back: the mail goes at the next attempt.
    one = Peer("127.0.0.2", port)
    try:
        time.sleep(COOLDOWN)
        primary.clock.advance(dt.timedelta(hours=1))
        primary.deliver()
        assert len(one.arrivals) == 1 and nothing_bounced(primary)
    finally:
        one.stop()


def test_a_hung_gateway_takes_only_its_own_connection_slots(tmp_path):
    """One connection per destination: the first gateway takes a message and never answers it; the
    next message goes through the second gateway meanwhile instead of waiting for that slot."""
    port = free_port()
    for primary in make_harness(tmp_path, "[delivery]\nmax_connections_per_domain = 1\n"):
        hanging, two = HangingPeer("127.0.0.2", port), Peer("127.0.0.3", port)
        queue = primary.server.delivery
        queue.stop_grace = 0.5
        stop = asyncio.Event()
        running = asyncio.run_coroutine_threadsafe(queue.run(stop), primary.loop)
        try:
            add(primary, f"127.0.0.2:{port}")
            add(primary, f"127.0.0.3:{port}")
            settings(primary, "gatewayenabled=True", "gatewaybalance=RoundRobin")
            send_out(primary)
            assert hanging.receiving.wait(30)
            send_out(primary)
            deadline = time.monotonic() + 30
            while not two.arrivals and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(two.arrivals) == 1 and not hanging.dropped.is_set()
        finally:
            primary.loop.call_soon_threadsafe(stop.set)
            running.result(20)
            hanging.stop()
            two.stop()


def test_failover_order_and_cool_down(primary):
    port = free_port()
    two = Peer("127.0.0.3", port)
    one = None
    try:
        add(primary, f"127.0.0.2:{port}")
        add(primary, f"127.0.0.3:{port}")
        settings(primary, "gatewayenabled=True", "gatewaybalance=Failover")
        send_out(primary, 2)
        primary.deliver()
        assert len(two.arrivals) == 2  # the first is down: the second takes it, and the first cools down
        one = Peer("127.0.0.2", port)
        send_out(primary)
        primary.deliver()
        assert (len(one.arrivals), len(two.arrivals)) == (0, 3)  # still cooling down: not asked first
        time.sleep(COOLDOWN + 0.2)
        send_out(primary, 2)
        primary.deliver()
        assert (len(one.arrivals), len(two.arrivals)) == (2, 3)  # back: the first in order takes everything
        assert nothing_bounced(primary)
    finally:
        two.stop()
        if one is not None:
            one.stop()


def test_outbound_ips_are_the_source_in_turn_for_mx_and_gateways(primary, port):
    primary.dns.add({("peer.test", "MX"): ["10 mx1.peer.test."], ("mx1.peer.test", "A"): ["127.0.0.1"]})
    mx = Peer("127.0.0.1", port)
    gateway_port = free_port()
    gateway = Peer("127.0.0.2", gateway_port)
    try:
        settings(primary, "outboundips=127.0.0.4,127.0.0.5")
        for _ in range(2):  # a connection each: a queue run ends by closing the one it kept
            send_out(primary)
            primary.deliver()
        assert sorted(a.peer_ip for a in mx.arrivals) == ["127.0.0.4", "127.0.0.5"]
        add(primary, f"127.0.0.2:{gateway_port}")
        settings(primary, "gatewayenabled=True", "outboundips=127.0.0.6")
        send_out(primary)
        primary.deliver()
        assert [a.peer_ip for a in gateway.arrivals] == ["127.0.0.6"] and len(mx.arrivals) == 2
    finally:
        mx.stop()
        gateway.stop()


def test_gateways_off_or_disabled_means_mx_as_before(primary, port):
    primary.dns.add({("peer.test", "MX"): ["10 mx1.peer.test."], ("mx1.peer.test", "A"): ["127.0.0.1"]})
    mx = Peer("127.0.0.1", port)
    gateway_port = free_port()
    gateway = Peer("127.0.0.2", gateway_port)
    try:
        guid = add(primary, f"127.0.0.2:{gateway_port}")
        send_out(primary)  # gatewayenabled is False by default
        primary.deliver()
        settings(primary, "gatewayenabled=True")
        primary.server.gateways.update(primary.admin(), guid, f"127.0.0.2:{gateway_port}", False, None)
        send_out(primary)  # enabled, but its only gateway is disabled
        primary.deliver()
        assert (len(mx.arrivals), len(gateway.arrivals)) == (2, 0)
    finally:
        mx.stop()
        gateway.stop()


def test_a_change_through_one_node_applies_on_another(primary):
    port = free_port()
    one, two = Peer("127.0.0.2", port), Peer("127.0.0.3", port)
    other = MailServer(parse_config(primary.config_text), primary.clock, recover=False)
    try:
        admin = other.login(*SYSTEM_ADMIN, "127.0.0.1")
        guid = other.gateways.add(admin, f"127.0.0.2:{port}", True)
        other.system_settings.set_requested(admin, ["gatewayenabled=True"])
        send_out(primary)
        primary.deliver()
        other.gateways.update(admin, guid, f"127.0.0.3:{port}", True, None)
        send_out(primary)
        primary.deliver()
        assert (len(one.arrivals), len(two.arrivals)) == (1, 1)
    finally:
        other.close()
        one.stop()
        two.stop()


def test_least_queued_reads_a_mailsrv_gateways_spool_count(primary, tmp_path):
    """Gateway 1 is SmarterMail-type, its smUrl a real mailsrv's web services; gateway 2 a plain
    gateway (our own connections in flight to it: none). Gateway 1 is chosen while its spool is as
    short, gateway 2 once gateway 1 holds messages."""
    port = free_port()
    one, two = Peer("127.0.0.2", port), Peer("127.0.0.3", port)
    stop, counted = sqlite_harness(tmp_path / "counted", "")
    web = WebHarness(counted)
    try:
        primary.server.gateways.add(primary.admin(), f"127.0.0.2:{port}", True, (web.url, *SYSTEM_ADMIN))
        add(primary, f"127.0.0.3:{port}")
        settings(primary, "gatewayenabled=True", "gatewaybalance=LeastQueued")
        primary.server.gateway_router.spool_counts.seconds = 0  # read it at every message here
        send_out(primary)
        primary.deliver()
        assert (len(one.arrivals), len(two.arrivals)) == (1, 0)
        send_out(counted, 2, to="someone@nowhere.test")  # no route there: held in its spool
        counted.deliver()
        assert counted.server.spool.count() == 2
        send_out(primary)
        primary.deliver()
        assert (len(one.arrivals), len(two.arrivals)) == (1, 1)
        # A gateway whose count cannot be read goes after the others too.
        web.stop()
        web = None
        send_out(primary)
        primary.deliver()
        assert (len(one.arrivals), len(two.arrivals)) == (1, 2)
    finally:
        if web is not None:
            web.stop()
        next(stop, None)
        one.stop()
        two.stop()


# -- a real mailsrv outgoing gateway ------------------------------------------------------------

def test_a_mailsrv_primary_sends_through_a_mailsrv_gateway_to_the_destination(primary, tmp_path):
    final_port = free_port()
    final = Peer("127.0.0.1", final_port)
    stop, gateway = sqlite_harness(tmp_path / "gateway", remote_config(final_port))
    try:
        # The gateway: relays for nobody but the primary, which connects from 127.0.0.3.
        gateway.dns.add({("peer.test", "MX"): ["10 mx1.peer.test."], ("mx1.peer.test", "A"): ["127.0.0.1"]})
        settings(gateway, "relay=Nobody")
        gateway.server.address_lists.set_ip_entry(gateway.admin(), WHITELIST, "127.0.0.3", None, None,
                                                  {"smtp": True}, "the primary")
        # The primary: everything remote through the gateway, from 127.0.0.3.
        add(primary, f"127.0.0.1:{gateway.smtp_port}")
        settings(primary, "gatewayenabled=True", "outboundips=127.0.0.3")
        send_out(primary)
        primary.deliver()
        assert nothing_bounced(primary)
        gateway.deliver()
        [arrival] = final.arrivals
        assert (arrival.sender, arrival.recipients) == ("alice@a.test", ["friend@peer.test"])
        assert arrival.content.endswith(MSG) and arrival.content.count(b"Received: ") == 2
        assert gateway.spool_rows() == []
        # Anyone else is refused relaying by the gateway.
        with gateway.client() as smtp:
            smtp.ehlo()
            smtp.mail("someone@elsewhere.test")
            assert smtp.rcpt("friend@peer.test")[0] >= 500
    finally:
        next(stop, None)
        final.stop()
