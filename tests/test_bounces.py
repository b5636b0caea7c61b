"""Delivery status notifications over real sockets: a 5xx bounces at once, a peer that stays down
bounces after the last attempt of the schedule, and the bounce policy, SPF and loop rules."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from smtp_peer import Peer, remote_config
from smtp_support import DOMAIN, MailHarness, make_harness, send

MSG = b"From: Alice <alice@a.test>\r\nSubject: for a friend\r\nMessage-ID: <m1@a.test>\r\n\r\nHello\r\n"


@pytest.fixture
def mail(tmp_path, port) -> Iterator[MailHarness]:
    for harness in make_harness(tmp_path, remote_config(port)):
        harness.dns.add({("peer.test", "MX"): ["10 mx1.peer.test."], ("mx1.peer.test", "A"): ["127.0.0.1"],
                         # Remote senders' domains: SPF for the policy tests, mail routed to the peer.
                         ("pass.example", "TXT"): ['"v=spf1 ip4:127.0.0.1 -all"'],
                         ("pass.example", "MX"): ["10 mx1.peer.test."],
                         ("fail.example", "TXT"): ['"v=spf1 ip4:192.0.2.1 -all"'],
                         ("fail.example", "MX"): ["10 mx1.peer.test."]})
        # carol forwards everything to the peer: how an unauthenticated sender's mail goes remote.
        harness.add_user(DOMAIN, "carol", forwarding_addresses=["gone@peer.test"], delete_on_forward=True)
        yield harness


@pytest.fixture
def peer(port) -> Iterator[Peer]:
    peer = Peer("127.0.0.1", port)
    peer.handler.refuse["gone@peer.test"] = "550 5.1.1 <gone@peer.test>: no such user"
    yield peer
    peer.stop()


def set_bouncing(mail: MailHarness, value: str) -> None:
    mail.server.system_settings.update({"bouncing": value})


def dsns(mail: MailHarness, address: str = "alice@a.test") -> list[EmailMessage]:
    return [email.message_from_bytes(m, policy=email.policy.default) for m in mail.messages(address)]


def from_alice(mail: MailHarness, recipients: list[str]) -> str:
    with mail.authenticated("alice@a.test") as smtp:
        return send(smtp, "alice@a.test", recipients, MSG)


def inbound(mail: MailHarness, sender: str, content: bytes = MSG) -> None:
    with mail.client() as smtp:
        send(smtp, sender, ["carol@a.test"], content)


def test_a_5xx_at_rcpt_bounces_at_once_with_a_delivery_status_report(mail, peer):
    from_alice(mail, ["gone@peer.test", "friend@peer.test"])
    mail.deliver()
    assert [a.recipients for a in peer.arrivals] == [["friend@peer.test"]]
    [dsn] = dsns(mail)
    assert dsn["Return-Path"] == "<>" and dsn["To"].addresses[0].addr_spec == "alice@a.test"
    assert dsn["Auto-Submitted"] == "auto-replied"
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    human, report, headers = dsn.get_payload()
    assert human.get_content_type() == "text/plain" and "<gone@peer.test>" in human.get_content()
    assert report.get_content_type() == "message/delivery-status"
    message_fields, recipient_fields = report.get_payload()
    assert message_fields["Reporting-MTA"] == "dns; mx.test"
    assert message_fields["Arrival-Date"] is not None
    assert recipient_fields["Final-Recipient"] == "rfc822; gone@peer.test"
    assert recipient_fields["Original-Recipient"] is None  # no alias or forwarding in between
    assert (recipient_fields["Action"], recipient_fields["Status"]) == ("failed", "5.1.1")
    assert recipient_fields["Remote-MTA"] == "dns; mx1.peer.test"
    assert recipient_fields["Diagnostic-Code"] == "smtp; 550 5.1.1 <gone@peer.test>: no such user"
    assert headers.get_content_type() == "text/rfc822-headers"
    quoted = headers.get_payload()
    assert "Subject: for a friend" in quoted and "Message-ID: <m1@a.test>" in quoted
    assert quoted.startswith("Received: from client.test ([127.0.0.1])")  # our trace header too
    assert mail.spool_rows() == []  # the DSN is delivered, the original finished


def test_a_forwarded_copy_names_the_original_recipient(mail, peer):
    inbound(mail, "someone@pass.example")
    mail.deliver()
    [dsn_arrival] = peer.arrivals  # the DSN went to the remote sender through the peer
    assert (dsn_arrival.sender, dsn_arrival.recipients) == ("<>", ["someone@pass.example"])
    dsn = email.message_from_bytes(dsn_arrival.content, policy=email.policy.default)
    _, recipient_fields = dsn.get_payload()[1].get_payload()
    assert recipient_fields["Final-Recipient"] == "rfc822; gone@peer.test"
    assert recipient_fields["Original-Recipient"] == "rfc822; carol@a.test"


def test_a_peer_down_for_good_bounces_after_the_last_attempt_only(mail):
    mail.server.system_settings.update({"retryminutes": "10,10,10,1440"})
    from_alice(mail, ["friend@peer.test"])  # nothing listens at mx1.peer.test
    for wait in (10, 10, 10):
        assert mail.deliver() == 1 and dsns(mail) == []
        mail.clock.advance(dt.timedelta(minutes=wait))
    assert mail.deliver() == 1  # attempt 4
    mail.clock.advance(dt.timedelta(minutes=1440) - dt.timedelta(seconds=1))
    assert mail.deliver() == 0 and dsns(mail) == []
    mail.clock.advance(dt.timedelta(seconds=1))
    assert mail.deliver() == 2  # attempt 5, the last; then the DSN it spooled, delivered
    [dsn] = dsns(mail)
    _, recipient_fields = dsn.get_payload()[1].get_payload()
    assert recipient_fields["Final-Recipient"] == "rfc822; friend@peer.test"
    assert (recipient_fields["Action"], recipient_fields["Status"]) == ("failed", "4.4.1")
    assert mail.spool_rows() == []


def test_bouncing_disabled_sends_no_dsn(mail, peer):
    set_bouncing(mail, "Disabled")
    from_alice(mail, ["gone@peer.test"])
    mail.deliver()
    assert dsns(mail) == [] and mail.spool_rows() == []


@pytest.mark.parametrize("sender, bounced", [("someone@pass.example", True), ("someone@fail.example", False),
                                             ("alice@a.test", True)])  # authenticated: verified
def test_require_spf_bounces_only_to_senders_whose_spf_passed(mail, peer, sender, bounced):
    set_bouncing(mail, "RequireSPF")
    if sender == "alice@a.test":
        with mail.authenticated(sender) as smtp:
            send(smtp, sender, ["carol@a.test"], MSG)
    else:
        inbound(mail, sender)
    mail.deliver()
    delivered = [a.recipients for a in peer.arrivals] + [["alice@a.test"]] * len(mail.messages("alice@a.test"))
    assert delivered == ([[sender]] if bounced else [])
    assert mail.spool_rows() == []


@pytest.mark.parametrize("sender, headers", [
    ("<>", ""),
    ("someone@pass.example", "Auto-Submitted: auto-replied\r\n"),
    ("someone@pass.example", 'Content-Type: multipart/report;\r\n report-type="delivery-status"; boundary=b\r\n'),
    # The rule auto-replies follow (mailsrv.mta.loop_guard): list and bulk mail, daemon senders.
    ("someone@pass.example", "List-Id: Friends <friends.pass.example>\r\n"),
    ("someone@pass.example", "Precedence: bulk\r\n"),
    ("postmaster@pass.example", ""),
])
def test_never_a_dsn_to_the_null_sender_or_for_an_automatic_message(mail, peer, sender, headers):
    inbound(mail, sender, headers.encode() + MSG)
    mail.deliver()
    assert peer.arrivals == [] and mail.spool_rows() == []


def test_a_dsn_that_fails_is_dropped(mail, peer):
    # alice forwards everything to the refusing peer: her DSN fails there too, and is not bounced.
    mail.server.user_options.set_forwarding(mail.admin(), "alice@a.test", True, "gone@peer.test")
    from_alice(mail, ["gone@peer.test"])
    mail.deliver()
    assert peer.arrivals == [] and mail.spool_rows() == []


def test_the_policy_is_read_when_the_failure_is_recorded(mail, peer):
    set_bouncing(mail, "Disabled")
    from_alice(mail, ["gone@peer.test"])
    set_bouncing(mail, "Enabled")  # changed after acceptance, before delivery
    mail.deliver()
    assert len(dsns(mail)) == 1
