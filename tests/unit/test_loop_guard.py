"""The one loop rule (mailsrv.mta.loop_guard) and the header reader it reads (mailsrv.mailstore.headers), without a server."""
from __future__ import annotations

import pytest

from mailsrv.mailstore.headers import HEADER_LIMIT, header_bytes, parse_headers, read_headers
from mailsrv.mta.loop_guard import refusal

PLAIN = b"From: Alice <alice@a.test>\r\nSubject: hi\r\n"


def guard(sender: str, headers: bytes = b"") -> str | None:
    return refusal(sender, parse_headers(headers + PLAIN))


@pytest.mark.parametrize("sender", [
    "", "MAILER-DAEMON@example.org", "mailer-daemon@example.org", "postmaster@example.org",
    "noreply@example.org", "no-reply@example.org", "donotreply@example.org", "nobody@example.org",
    "listserv@example.org", "majordomo@example.org", "bounce@example.org", "bounces@example.org",
    "owner-friends@example.org", "friends-request@example.org", "friends-owner@example.org",
    "friends-bounces@example.org",
])
def test_null_daemon_and_list_senders_are_never_answered(sender):
    assert guard(sender) is not None


@pytest.mark.parametrize("sender", ["alice@a.test", "owner@example.org", "requests@example.org",
                                    "bob@mailer-daemon.example", "postmaster-fan@example.org"])
def test_people_are_answered(sender):
    assert guard(sender) is None


@pytest.mark.parametrize("headers", [
    b"Auto-Submitted: auto-replied\r\n",
    b"Auto-Submitted: auto-generated\r\n",
    b"auto-submitted: Auto-Notified; owner-email=x@example.org\r\n",
    b"Auto-Submitted:\r\n auto-replied\r\n",  # folded
    b"Precedence: bulk\r\n", b"Precedence: junk\r\n", b"Precedence: list\r\n", b"PRECEDENCE: Bulk\r\n",
    b"List-Id: Friends <friends.example.org>\r\n",
    b"List-Unsubscribe: <mailto:leave@example.org>\r\n",
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n",
    b'Content-Type: Multipart/Report;\r\n report-type="Delivery-Status";\r\n boundary="b"\r\n',
])
def test_automatic_bulk_and_list_mail_is_never_answered(headers):
    assert guard("ext@example.org", headers) is not None


@pytest.mark.parametrize("headers", [
    b"",
    b"Auto-Submitted: no\r\n", b"Auto-Submitted: No\r\n",
    b"Precedence: first-class\r\n", b"Precedence: normal\r\n",
    b"Content-Type: multipart/mixed; boundary=b\r\n",
    b"Content-Type: multipart/report; report-type=other; boundary=b\r\n",
    b"X-List-Id-Was: none\r\n",
])
def test_mail_a_person_wrote_is_answered(headers):
    assert guard("ext@example.org", headers) is None


def test_only_the_header_section_counts(tmp_path):
    path = tmp_path / "message"
    path.write_bytes(PLAIN + b"\r\nAuto-Submitted: auto-replied\r\nPrecedence: bulk\r\n")
    assert header_bytes(path) == PLAIN
    assert refusal("ext@example.org", read_headers(path)) is None


def test_a_bare_lf_message_ends_its_headers_at_the_empty_line(tmp_path):
    path = tmp_path / "message"
    path.write_bytes(b"Subject: hi\nPrecedence: bulk\n\nbody\n")
    assert header_bytes(path) == b"Subject: hi\nPrecedence: bulk\n"
    assert refusal("ext@example.org", read_headers(path)) == "bulk mail"


def test_at_most_the_limit_is_read_even_from_one_endless_line(tmp_path):
    path = tmp_path / "message"
    path.write_bytes(b"X-Long: " + b"a" * (2 * HEADER_LIMIT))
    assert len(header_bytes(path)) == HEADER_LIMIT
    # A marker past the limit is not seen: the message is judged on what was read.
    filler = b"X-Filler: " + b"x" * 1000 + b"\r\n"
    path.write_bytes(filler * (HEADER_LIMIT // len(filler) + 1) + b"Precedence: bulk\r\n\r\n")
    assert len(header_bytes(path)) <= HEADER_LIMIT
    assert refusal("ext@example.org", read_headers(path)) is None
