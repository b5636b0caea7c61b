"""mailsrv.mta.bounces.compose without a server: the DSN's MIME structure, its RFC 3464 fields and its bytes."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
from pathlib import Path

from mailsrv.mta.bounces import compose, status_of
from mailsrv.mta.spool import ClaimedRecipient, Deferred, Failed, SpooledMessage

RECEIVED = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
WHEN = "Fri, 02 Jan 2026 04:00:00 +0000"
# 8-bit and a bare LF, as a client may send them.
ORIGINAL = "Received: from client.test\r\n\tby mx.test\r\nSubject: café\nMessage-ID: <m1@a.test>\r\n".encode()


def dsn(failures: list[tuple[ClaimedRecipient, Deferred | Failed]], sender: str = "alice@a.test") -> bytes:
    message = SpooledMessage("m1", Path("unused"), sender, 10, RECEIVED, "")
    return compose("mx.test", message, ORIGINAL, failures, WHEN, "d1")


def recipient(address: str, original: str = "") -> ClaimedRecipient:
    return ClaimedRecipient(1, address, original or address, None, 1)


def test_three_parts_with_per_message_and_per_recipient_fields():
    long_reply = "550 5.1.1 <gone@peer.test>: no such user here " + "and a long explanation " * 5
    raw = dsn([(recipient("gone@peer.test", "carol@a.test"),
                Failed("5.1.1 mx1.peer.test said: " + long_reply, "mx1.peer.test", long_reply)),
               (recipient("late@peer.test"), Deferred("4.4.1 no mail server of peer.test could be reached"))])
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert (message["From"], message["Auto-Submitted"], message["Message-ID"]) == (
        "Mail Delivery System <MAILER-DAEMON@mx.test>", "auto-replied", "<d1@mx.test>")
    assert b"\r\nTo: <alice@a.test>\r\n" in raw
    assert (message.get_content_type(), message.get_param("report-type")) == ("multipart/report", "delivery-status")
    human, report, headers = message.get_payload()
    assert [p.get_content_type() for p in (human, report, headers)] == [
        "text/plain", "message/delivery-status", "text/rfc822-headers"]
    assert "<gone@peer.test>: 5.1.1 mx1.peer.test said: 550" in human.get_content()
    per_message, first, second = report.get_payload()
    assert dict(per_message) == {"Reporting-MTA": "dns; mx.test", "Arrival-Date": "Fri, 02 Jan 2026 03:04:05 +0000"}
    assert dict(first) == {"Final-Recipient": "rfc822; gone@peer.test", "Original-Recipient": "rfc822; carol@a.test",
                           "Action": "failed", "Status": "5.1.1", "Remote-MTA": "dns; mx1.peer.test",
                           "Diagnostic-Code": "smtp; " + " ".join(long_reply.split()), "Last-Attempt-Date": WHEN}
    assert dict(second) == {"Final-Recipient": "rfc822; late@peer.test", "Action": "failed", "Status": "4.4.1",
                            "Diagnostic-Code": "smtp; 4.4.1 no mail server of peer.test could be reached",
                            "Last-Attempt-Date": WHEN}
    assert message.defects == [] and all(part.defects == [] for part in message.walk())


def test_crlf_throughout_and_the_original_headers_byte_for_byte():
    raw = dsn([(recipient("gone@peer.test"), Failed("5.1.1 no such user"))])
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")
    assert ORIGINAL.replace(b"\nMessage", b"\r\nMessage") in raw  # 8-bit kept, the bare LF made CRLF
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


def test_an_internationalised_address_stays_utf8_not_an_encoded_word():
    raw = dsn([(recipient("jörg@peer.test"), Failed("5.1.1 no such user"))], sender="zoë@a.test")
    assert "To: <zoë@a.test>\r\n".encode() in raw and "Final-Recipient: rfc822; jörg@peer.test".encode() in raw
    assert b"=?utf-8?" not in raw


def test_status_is_the_code_the_error_starts_with_else_the_class_default():
    assert status_of(Failed("5.7.1 refused by policy")) == "5.7.1"
    assert status_of(Deferred("4.4.2 the connection broke")) == "4.4.2"
    assert status_of(Failed("the mailbox is gone")) == "5.0.0"
    assert status_of(Deferred("timed out")) == "4.0.0"
    assert status_of(Failed("5.1.1234 not a code")) == "5.0.0"
