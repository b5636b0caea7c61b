"""The auto-responder's own rules without a server: who is never answered, and what the reply says."""
from __future__ import annotations

import datetime as dt
import email
import email.policy

import pytest

from mailsrv.mta.autoreply import compose, refusal
from mailsrv.mailstore.headers import parse_headers

WHEN = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def reply(subject: str = "Away", body: str = "I am away.\n", original: bytes = b"") -> email.message.EmailMessage:
    raw = compose("alice@a.test", "bob@b.test", subject, body, parse_headers(original), WHEN, "mx.test")
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF, like everything in the spool
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


@pytest.mark.parametrize("sender, headers, refused", [
    ("bob@b.test", b"Subject: hi\r\n", None),
    ("alice@a.test", b"", "own address"),
    ("Alice@A.TEST", b"", "own address"),
    ("", b"", "null sender"),
    ("bob@b.test", b"Auto-Submitted: auto-replied\r\n", "automatic message"),
    ("bob@b.test", b"Precedence: list\r\n", "bulk mail"),
    ("bob@b.test", b"List-Id: <l.b.test>\r\n", "mailing list"),
])
def test_who_is_never_answered(sender, headers, refused):
    assert refusal(sender, "alice@a.test", parse_headers(headers)) == refused


def test_the_reply_is_marked_automatic_and_threads_onto_the_original():
    message = reply(original=b"Message-ID: <m2@b.test>\r\nReferences: <m0@b.test> <m1@b.test>\r\n"
                             b"In-Reply-To: <m1@b.test>\r\n")
    assert (message["From"], message["To"], message["Subject"]) == ("alice@a.test", "bob@b.test", "Away")
    assert message["Auto-Submitted"] == "auto-replied"
    assert (message["In-Reply-To"], message["References"]) == ("<m2@b.test>", "<m0@b.test> <m1@b.test> <m2@b.test>")
    assert message["Message-ID"].endswith("@mx.test>")


def test_without_references_the_thread_is_in_reply_to_then_the_original():
    message = reply(original=b"Message-ID: <m2@b.test>\r\nIn-Reply-To: <m1@b.test>\r\n")
    assert message["References"] == "<m1@b.test> <m2@b.test>"


def test_an_original_without_message_id_gets_no_threading_headers():
    message = reply(original=b"Subject: hi\r\n")
    assert message["In-Reply-To"] is None and message["References"] is None


def test_the_subject_is_one_line_whatever_was_stored():
    message = reply(subject="Away\r\nBcc: everyone@b.test\n  until Monday")
    assert message["Subject"] == "Away Bcc: everyone@b.test until Monday" and message["Bcc"] is None
    assert reply(subject=" \r\n ")["Subject"] == "Automatic reply"


def test_the_body_is_utf8_text():
    message = reply(body="Je suis absente — à lundi.\n")
    assert message.get_content_type() == "text/plain" and message.get_content_charset() == "utf-8"
    assert message.get_content() == "Je suis absente — à lundi.\r\n"
