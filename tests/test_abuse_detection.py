"""Abuse detection (mailsrv.directory.abuse, mailsrv.mta.filtering.abuse) over real sockets: rules
added over SOAP, the blocks they set at connect, RCPT and login on SMTP, POP3 and IMAP, their expiry
on the ManualClock, RequestStatus's `blockedaddresses`, GetBlockedAddresses and UnblockAddress,
and the internal-spammer notification mail."""
from __future__ import annotations

import datetime as dt
import imaplib
import poplib
import smtplib
import socket
from collections.abc import Iterator

import pytest
from conftest import web_listener
from contract_clients import ZeepClient, ok
from mailbox_support import MailboxHarness
from serve_support import wait_until
from smtp_support import ADMIN, USER_PASSWORD, MailHarness, first_line, make_harness, send
from sqlalchemy import func, select

from mailsrv.core.errors import ResultCode
from mailsrv.store.models import AbuseCounter

SA = "svcServerAdmin"
AUTH = {"authUsername": ADMIN[0], "authPassword": ADMIN[1]}
BODY = b"From: bob@a.test\r\nSubject: hi\r\n\r\nHello.\r\n"


class Harness(MailboxHarness):
    """SMTP, POP3 and IMAP with the web listener: rules are added and blocks lifted over SOAP."""

    def soap(self, operation: str, **params):  # type: ignore[no-untyped-def]
        return self.zeep.call(SA, operation, **AUTH, **params)

    def smtp_from(self, source: str) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.smtp_port, local_hostname="client.test", timeout=60,
                            source_address=(source, 0))

    def greeting(self, source: str) -> bytes:
        """The first line a new SMTP connection from `source` reads."""
        with socket.create_connection(("127.0.0.1", self.smtp_port), timeout=30, source_address=(source, 0)) as sock:
            return sock.makefile("rb").readline()

    def status(self, key: str = "blockedaddresses") -> str:
        [pair] = ok(self.zeep.call(SA, "RequestStatus", AuthUserName=ADMIN[0], AuthPassword=ADMIN[1],
                                   reqStats=[key]))["KeyValuePairs"]
        return pair.split("=", 1)[1]

    def blocked(self) -> list[tuple[str, str, str]]:
        return [(b["Address"], b["Service"], b["Kind"])
                for b in ok(self.soap("GetBlockedAddresses"))["Addresses"] or []]


@pytest.fixture
def abuse(tmp_path) -> Iterator[Harness]:
    for harness in make_harness(tmp_path, kind=Harness):
        with web_listener(harness.server) as url:
            harness.zeep = ZeepClient(url)  # type: ignore[attr-defined]
            yield harness


def refused(result: dict, code: ResultCode) -> None:
    assert (result["Result"], result["ResultCode"]) == (False, int(code)), result


def test_a_harvesting_burst_is_blocked_then_the_block_expires(abuse):
    ok(abuse.soap("AddHarvestingAbuseDetectionRule", timeframe=10, badSessionsBeforeBlock=3, timeToBlock=30,
                  description="dictionary attacks"))
    with abuse.smtp_from("127.0.0.7") as smtp:
        smtp.ehlo()
        assert smtp.mail("x@remote.test")[0] == 250
        assert smtp.rcpt("nobody1@a.test")[0] == 550
        assert smtp.rcpt("nobody2@a.test")[0] == 550
        code, text = smtp.rcpt("nobody3@a.test")  # the third unknown recipient reaches the threshold
        assert code == 421 and b"abuse detection" in text
        assert smtp.rcpt("alice@a.test")[0] == 421  # the rest of the session is refused too
    # New connections from that address are refused before the greeting; others are not.
    assert abuse.greeting("127.0.0.7").startswith(b"421 4.7.0 Blocked by abuse detection")
    assert abuse.greeting("127.0.0.8").startswith(b"220 ")
    assert abuse.status() == "1"
    assert abuse.blocked() == [("127.0.0.7", "SMTP", "Harvesting")]
    # Thirty minutes later the block has run out by itself.
    abuse.clock.advance(dt.timedelta(minutes=31))
    assert abuse.status() == "0" and abuse.blocked() == []
    with abuse.smtp_from("127.0.0.7") as smtp:
        send(smtp, "x@remote.test", ["alice@a.test"], BODY)


def test_dos_connections_past_the_threshold_are_refused_at_connect_and_the_block_can_be_lifted(abuse):
    ok(abuse.soap("AddDOSAbuseDetectionRule", service="SMTP", timeframe=1, connectionsBeforeBlock=3, timeToBlock=60,
                  description="flood"))
    [rule] = ok(abuse.soap("GetDOSAbuseDetectionRules"))["Rules"]
    assert (rule["Service"], rule["Timeframe"], rule["ConnectionsBeforeBlock"], rule["TimeToBlock"]) == \
        ("SMTP", 1, 3, 60)
    for _ in range(3):
        assert abuse.greeting("127.0.0.9").startswith(b"220 ")
    assert abuse.greeting("127.0.0.9").startswith(b"421 4.7.0 ")
    assert abuse.status() == "1"
    # A whitelisted client is never counted nor refused.
    ok(abuse.soap("SetWhitelistEntry", ipAddress="127.0.0.10", ipRangeStart="", ipRangeEnd="", whitelistSMTP=True,
                  whitelistPOP=False, whitelistIMAP=False, description=""))
    for _ in range(5):
        assert abuse.greeting("127.0.0.10").startswith(b"220 ")
    # Lifted by the administrator: the address gets in again (its count forgotten).
    ok(abuse.soap("UnblockAddress", address="127.0.0.9"))
    assert abuse.status() == "0"
    assert abuse.greeting("127.0.0.9").startswith(b"220 ")
    refused(abuse.soap("UnblockAddress", address="127.0.0.9"), ResultCode.NOT_BLOCKED)


def test_dos_connections_to_two_nodes_add_up_once_each_has_written_its_counts(abuse):
    """Each node counts connections in memory and writes them within FLUSH_SECONDS; a node decides
    on the store's count plus its own, so the block comes at the threshold over both nodes."""
    ok(abuse.soap("AddDOSAbuseDetectionRule", service="SMTP", timeframe=10, connectionsBeforeBlock=4,
                  timeToBlock=60, description="flood"))
    second = MailHarness(abuse.data_dir, abuse.clock)  # another node on the same store
    try:
        for _ in range(2):
            assert abuse.greeting("127.0.0.9").startswith(b"220 ")

        def stored() -> int:
            with abuse.server.store.reading() as s:
                return int(s.execute(select(func.sum(AbuseCounter.count))
                                     .where(AbuseCounter.subject == "127.0.0.9")).scalar() or 0)
        wait_until(lambda: stored() == 2, "the first node writes its two connections")
        for _ in range(2):  # the third and the fourth, on the other node
            assert first_line(second.smtp_port, "127.0.0.9")[0].startswith(b"220 ")
        line, closed = first_line(second.smtp_port, "127.0.0.9")
        assert line.startswith(b"421 4.7.0 Blocked by abuse detection") and closed
        assert abuse.greeting("127.0.0.9").startswith(b"421 4.7.0 ")  # the block is the store's: every node's
        assert abuse.blocked() == [("127.0.0.9", "SMTP", "DOS")]
    finally:
        second.close()


def test_brute_force_counts_failures_across_smtp_pop_and_imap_and_its_block_refuses_at_connect(abuse):
    # Every client here is 127.0.0.1: the administrator, inside its own IP restriction, is never blocked.
    ok(abuse.soap("AddIPRestrictionToSystemAdmin", adminUsername=ADMIN[0], ipAddressOrRange="127.0.0.1",
                  restrictionDescription="this machine"))
    # The default rule is the [security] numbers until a brute-force rule is stored.
    [default] = ok(abuse.soap("GetBruteForceAbuseDetectionRules"))["Rules"]
    assert (default["UniqueID"], default["Service"], default["FailuresBeforeBlock"]) == ("default", "All", 20)
    ok(abuse.soap("AddAbuseDetectionRule", abuseDetectionType="BruteForce", service="All", action="Block",
                  timeFrame=10, occurencesBeforeTrigger=3, timeToBlock=15, emailAddressToNotify="",
                  description="three strikes"))
    [rule] = ok(abuse.soap("GetBruteForceAbuseDetectionRules"))["Rules"]
    assert rule["UniqueID"] != "default" and rule["FailuresBeforeBlock"] == 3
    smtp = abuse.authenticated  # over the submission port, with STARTTLS
    with pytest.raises(smtplib.SMTPAuthenticationError):
        smtp("alice@a.test", "wrong-1")
    with pytest.raises(poplib.error_proto):
        abuse.pop3("alice@a.test", "wrong-2")
    with pytest.raises(imaplib.IMAP4.error):
        abuse.imap("alice@a.test", "wrong-3")
    # Three failures from 127.0.0.1 over three protocols: the right password is refused everywhere.
    assert abuse.blocked() == [("127.0.0.1", "All", "BruteForce")]
    with pytest.raises(smtplib.SMTPConnectError, match="Blocked by abuse detection"):  # SMTP: at connect
        smtp("bob@a.test", USER_PASSWORD)
    # POP3 and IMAP too: a new connection gets the refusal instead of the greeting, and is closed.
    for port, refusal in ((abuse.ports["pop3"], b"-ERR "), (abuse.ports["imap"], b"* BYE ")):
        line, closed = first_line(port, "127.0.0.1")
        assert line.startswith(refusal + b"Blocked by abuse detection until ") and closed
    abuse.clock.advance(dt.timedelta(minutes=16))
    abuse.imap("bob@a.test", USER_PASSWORD).logout()
    abuse.pop3("bob@a.test", USER_PASSWORD).quit()
    smtp("bob@a.test", USER_PASSWORD).quit()


def test_an_internal_spammer_is_reported_to_the_admin_by_mail_and_its_sending_blocked(abuse):
    ok(abuse.soap("AddAbuseDetectionRule", abuseDetectionType="InternalSpammer", service="SMTP",
                  action="NotifyAndBlock", timeFrame=60, occurencesBeforeTrigger=3, timeToBlock=120,
                  emailAddressToNotify="alice@a.test", description="outbound flood"))
    [rule] = ok(abuse.soap("GetInternalSpammerNotificationAbuseDetectionRules"))["Rules"]
    assert (rule["MessagesBeforeNotify"], rule["EmailAddressToNotify"]) == (3, "alice@a.test")
    with abuse.authenticated("bob@a.test") as smtp:
        for _ in range(3):
            send(smtp, "bob@a.test", ["carol@remote.test"], BODY)
        code, text = smtp.mail("bob@a.test")
        assert code == 550 and b"blocked by abuse detection" in text
    abuse.deliver()
    [notice] = [m for m in abuse.messages("alice@a.test") if b"Abuse detection" in m]
    assert b"Subject: Abuse detection: bob@a.test sent 3 messages" in notice
    assert b"outbound flood" in notice and b"blocked for 120 minutes" in notice
    assert abuse.blocked() == [("bob@a.test", "SMTP", "InternalSpammer")]
    ok(abuse.soap("UnblockAddress", address="bob@a.test"))
    with abuse.authenticated("bob@a.test") as smtp:
        send(smtp, "bob@a.test", ["carol@remote.test"], BODY)


def test_rules_round_trip_and_bad_rules_are_refused(abuse):
    ok(abuse.soap("AddAbuseDetectionRule", abuseDetectionType="Bounces", service="", action="Notify", timeFrame=60,
                  occurencesBeforeTrigger=50, timeToBlock=0, emailAddressToNotify="alice@a.test", description="b"))
    ok(abuse.soap("AddHarvestingAbuseDetectionRule", timeframe=5, badSessionsBeforeBlock=10, timeToBlock=20,
                  description="h"))
    rules = ok(abuse.soap("GetAbuseDetectionRules", filter=""))["Rules"]
    assert [(r["Description"], r["Action"], r["OccurencesBeforeTrigger"]) for r in rules] == \
        [("Bounces: b", "Notify", 50), ("Harvesting: h", "Block", 10), ("BruteForce: The [security] lock-out "
                                                                        "(no brute-force rule is stored)", "Block", 20)]
    [bounces] = ok(abuse.soap("GetBouncesAbuseDetectionRules"))["Rules"]
    assert (bounces["BounceThreshold"], bounces["EmailAddressToNotify"]) == (50, "alice@a.test")
    assert [r["Description"] for r in ok(abuse.soap("GetAbuseDetectionRules", filter="harvesting"))["Rules"]] == \
        ["Harvesting: h"]
    ok(abuse.soap("DeleteAbuseDetectionRule", id=bounces["UniqueID"]))
    assert not ok(abuse.soap("GetBouncesAbuseDetectionRules"))["Rules"]
    refused(abuse.soap("DeleteAbuseDetectionRule", id=bounces["UniqueID"]), ResultCode.ITEM_NOT_FOUND)
    refused(abuse.soap("DeleteAbuseDetectionRule", id="default"), ResultCode.PROTECTED_OBJECT)
    base = dict(service="SMTP", action="Block", timeFrame=5, occurencesBeforeTrigger=3, timeToBlock=5,
                emailAddressToNotify="", description="")
    refused(abuse.soap("AddAbuseDetectionRule", **{**base, "abuseDetectionType": "Phishing"}),
            ResultCode.ABUSE_KIND_UNKNOWN)
    refused(abuse.soap("AddAbuseDetectionRule", abuseDetectionType="DOS", **{**base, "service": "FTP"}),
            ResultCode.ABUSE_SERVICE_UNKNOWN)
    refused(abuse.soap("AddAbuseDetectionRule", abuseDetectionType="DOS", **{**base, "action": "Explode"}),
            ResultCode.ABUSE_ACTION_UNKNOWN)
    refused(abuse.soap("AddAbuseDetectionRule", abuseDetectionType="DOS", **{**base, "timeFrame": 0}),
            ResultCode.VALUE_OUT_OF_RANGE)
    refused(abuse.soap("AddAbuseDetectionRule", abuseDetectionType="Bounces", **{**base, "action": "Notify"}),
            ResultCode.INVALID_ADDRESS)
    refused(abuse.zeep.call(SA, "GetDOSAbuseDetectionRules", authUsername="alice@a.test",
                            authPassword=USER_PASSWORD), ResultCode.PERMISSION_DENIED)
