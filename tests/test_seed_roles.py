"""The seed's server roles played end to end (issue 12, "Show"): independent mailsrv servers on
loopback (tests/servers_support.py: each a `mailsrv serve` process with its own data directory and
database, one DNS server run by the test), every role set up over SOAP as an administrator would.

    sender   127.0.0.11  hosts a.test (alice); the final destination of the primary's outbound mail
    primary  127.0.0.12  hosts b.test (bob) and c.test (carol); sends through the two gateways
    backup   127.0.0.13  backup MX (MX 20) for b.test, recipients verified over the primary's API
    gw1      127.0.0.14  outgoing gateway for the primary; incoming gateway (MX) for c.test
    gw2      127.0.0.15  outgoing gateway for the primary

The seed ("Backup MX", "Incoming Gateway", "Outgoing Gateway", "SmartGateway"): a backup MX keeps
the primary's mail while it is down and hands it over once it is back (the admin resets the retry
counts rather than waiting); an incoming gateway answers for a domain and forwards to the primary;
the primary's outbound mail leaves through two gateways in turn and through the one left when the
other stops, nothing bounced or lost.
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest
from contract_clients import ZeepClient, ok
from serve_support import wait_until
from servers_support import ADMIN, LabServer, ServerLab, server_lab
from smtp_peer import free_port


@pytest.fixture
def lab(tmp_path, env) -> Iterator[ServerLab]:
    yield from server_lab(tmp_path, env)


def message(subject: str, sender: str, recipient: str) -> bytes:
    return f"From: {sender}\r\nTo: {recipient}\r\nSubject: {subject}\r\n\r\n{subject}: body\r\n".encode()


def subjects(server: LabServer, address: str) -> list[str]:
    return [re.search(rb"^Subject: (.*)\r$", m, re.M)[1].decode() for m in server.messages(address)]  # type: ignore[index]


def add_incoming_gateway(server: LabServer, **fields: Any) -> None:
    """svcServerAdmin AddIncomingGateway (SOAP: its argument is a structure), `fields` over a plain
    BackupMX without verification."""
    values: dict[str, Any] = {
        "guid": "", "gatewayMode": "BackupMX", "IPAddress": "", "IPStartRange": "", "IPEndRange": "",
        "userVerifyType": "None", "webserviceURL": "", "domainVerifyType": "List", "domainsToForward": [],
        "enableSpamActions": False, "spamLowAction": "None", "spamLowArgs": "", "spamMedAction": "None",
        "spamMedArgs": "", "spamHighAction": "None", "spamHighArgs": "", "smarterMailMode": False,
        "smarterMailURL": "", "authSmarterMailUserName": "", "authSmarterMailPassword": ""}
    values.update(fields)
    wire = {k: {"string": v} if isinstance(v, list) else v for k, v in values.items()}
    ok(ZeepClient(server.base_url).call("svcServerAdmin", "AddIncomingGateway", **ADMIN, newIncomingGateway=wire))


def make_outgoing_gateway(gateway: LabServer, primary: LabServer) -> None:
    """The seed's outgoing gateway: relays for nobody but the primary (on its SMTP whitelist)."""
    gateway.settings("relay=Nobody")
    ok(gateway.soap.call("svcServerAdmin", "SetWhitelistEntry", authUsername=ADMIN["AuthUserName"],
                         authPassword=ADMIN["AuthPassword"], ipAddress=primary.address, ipRangeStart="",
                         ipRangeEnd="", whitelistSMTP=True, whitelistPOP=False, whitelistIMAP=False,
                         description="the primary"))


def rcpt(server: LabServer, recipient: str) -> int:
    """The reply code to RCPT TO at `server` from an outside client."""
    with server.smtp() as smtp:
        smtp.ehlo()
        assert smtp.mail("someone@elsewhere.test")[0] == 250
        return smtp.rcpt(recipient)[0]


def spool_messages(server: LabServer) -> list[dict[str, Any]]:
    """svcSpoolAdmin GetSpoolMessages: what waits in the server's spool."""
    return ok(server.call("svcSpoolAdmin", "GetSpoolMessages", maxResults=100))["Messages"] or []


def gateways_used(destination: LabServer, primary: LabServer) -> dict[str, str]:
    """Subject → the outgoing gateway of each message at alice's: the server that took it from the
    primary (its Received line), which also shows the primary sent from its own address (outboundips)."""
    taken = re.compile(rf"from primary\.lab\.test \(\[{re.escape(primary.address)}\]\)\r\n\tby (\w+)\.lab\.test".encode())
    used = {}
    for content in destination.messages("alice@a.test"):
        [name] = taken.findall(content)
        [subject] = re.findall(rb"^Subject: (.*)\r$", content, re.M)
        used[subject.decode()] = name.decode()
    return used


def test_the_seeds_server_roles(lab: ServerLab) -> None:
    sender, primary = lab.add("sender"), lab.add("primary", start=False)
    # The primary keeps its web address across a restart: the backup asks its API there.
    web_port = free_port()
    primary.config.write_text(primary.config.read_text().replace(f'web = "{primary.address}:0"',
                                                                 f'web = "{primary.address}:{web_port}"'))
    primary.start()
    backup, gw1, gw2 = lab.add("backup"), lab.add("gw1"), lab.add("gw2")
    sender.add_domain("a.test")
    sender.add_user("alice@a.test")
    for domain, user in (("b.test", "bob@b.test"), ("c.test", "carol@c.test")):
        primary.add_domain(domain)
        primary.add_user(user)
    lab.mx("a.test", sender)
    lab.mx("b.test", primary, backup)
    lab.mx("c.test", gw1)  # the incoming gateway is c.test's only MX: the primary is not published

    # Backup MX for b.test (MX 20), handing over to the primary only, verifying recipients over its API.
    add_incoming_gateway(backup, IPAddress=primary.address, domainsToForward=["b.test"],
                         userVerifyType="SmarterMail", smarterMailURL=primary.base_url,
                         authSmarterMailUserName=ADMIN["AuthUserName"], authSmarterMailPassword=ADMIN["AuthPassword"])
    backup.settings("retryminutes=10,10,10,1440")  # without a reset the primary would wait ten minutes
    # Incoming gateway for c.test, forwarding to the primary.
    add_incoming_gateway(gw1, gatewayMode="Gateway", IPAddress=primary.address, domainsToForward=["c.test"])
    # Outgoing gateways: the primary sends through both in turn, from its own address.
    for gateway in (gw1, gw2):
        make_outgoing_gateway(gateway, primary)
        ok(primary.call("svcServerAdmin", "AddGateway", address=f"{gateway.address}:{lab.smtp_port}", enabled=True))
    primary.settings("gatewayenabled=True", "gatewaybalance=RoundRobin", f"outboundips={primary.address}",
                     "retryminutes=1,1,1,1440")

    # -- an incoming gateway forwards to the primary ---------------------------------------------
    sender.send("alice@a.test", ["carol@c.test"], message("via the incoming gateway", "alice@a.test", "carol@c.test"))
    wait_until(lambda: subjects(primary, "carol@c.test") == ["via the incoming gateway"], "carol's mail at the primary")
    [forwarded] = primary.messages("carol@c.test")
    assert b"by gw1.lab.test (mailsrv)" in forwarded  # it came through the gateway, the only MX
    wait_until(lambda: gw1.spool_count() == 0, "the incoming gateway's spool empty")

    # -- recipient verification at the backup, the primary's API answering ------------------------
    assert rcpt(backup, "nobody@b.test") == 550  # the primary says it has no such user
    assert rcpt(backup, "bob@b.test") == 250
    # A gateway relays for the primary only.
    assert rcpt(gw2, "alice@a.test") == 550

    # -- SmartGateway: round robin over both gateways --------------------------------------------
    for number in range(4):
        primary.send("bob@b.test", ["alice@a.test"], message(f"out {number}", "bob@b.test", "alice@a.test"))
    wait_until(lambda: len(sender.messages("alice@a.test")) == 4, "four messages from the primary at alice's")
    assert sorted(gateways_used(sender, primary).values()) == ["gw1", "gw1", "gw2", "gw2"]

    # One gateway stopped: everything goes through the other, nothing bounced, nothing lost.
    gw2.stop()
    for number in range(4, 8):
        primary.send("bob@b.test", ["alice@a.test"], message(f"out {number}", "bob@b.test", "alice@a.test"))
    wait_until(lambda: len(sender.messages("alice@a.test")) == 8, "four more at alice's, gw2 stopped")
    used = gateways_used(sender, primary)
    assert sorted(used) == [f"out {n}" for n in range(8)]
    assert [used[f"out {n}"] for n in range(4, 8)] == ["gw1"] * 4
    wait_until(lambda: primary.spool_count() == 0, "the primary's spool empty")
    assert subjects(primary, "bob@b.test") == []  # no bounce

    # -- backup MX: the primary down ----------------------------------------------------------------
    primary.stop()
    # Its API cannot be asked: an unverified recipient is accepted (the backup must not lose mail).
    assert rcpt(backup, "someone-new@b.test") == 250
    sender.send("alice@a.test", ["bob@b.test"], message("while the primary is down", "alice@a.test", "bob@b.test"))
    # The sender tried MX 10 (refused) and handed it to MX 20: its spool empty, no bounce to alice.
    wait_until(lambda: sender.spool_count() == 0, "the sender's spool empty")
    [kept] = spool_messages(backup)
    assert (kept["Sender"], kept["Recipients"]) == ("alice@a.test", ["bob@b.test"])
    wait_until(lambda: [row[2:] for row in backup.spool_rows()] == [("deferred", 1)],
               "the backup tried the primary once and keeps the message")
    [kept] = spool_messages(backup)
    assert kept["Attempts"] == 1 and not kept["Held"] and kept["LastError"].startswith("4.4.1"), kept
    # Its next attempt is ten minutes away: only the reset below can make it due within the test.
    next_attempt = dt.datetime.fromisoformat(kept["NextAttempt"]).replace(tzinfo=dt.timezone.utc)
    assert next_attempt > dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=8), kept
    assert backup.spool_count() == 1
    assert sorted(subjects(sender, "alice@a.test")) == [f"out {n}" for n in range(8)]  # no bounce

    # -- the primary back: ResetRetryCounts hands the mail over at once --------------------------------
    primary.start()
    ok(backup.call("svcSpoolAdmin", "ResetRetryCounts", messageIDs=[kept["ID"]]))
    wait_until(lambda: subjects(primary, "bob@b.test") == ["while the primary is down"],
               "bob's mail handed over by the backup", timeout=30)
    wait_until(lambda: backup.spool_count() == 0, "the backup's spool empty")
    assert spool_messages(backup) == [] and backup.spool_rows() == []
    [handed] = primary.messages("bob@b.test")
    assert b"by backup.lab.test (mailsrv)" in handed
    assert sorted(subjects(sender, "alice@a.test")) == [f"out {n}" for n in range(8)]  # no bounce
    # Delivered once: nothing more arrives.
    assert subjects(primary, "bob@b.test") == ["while the primary is down"]
