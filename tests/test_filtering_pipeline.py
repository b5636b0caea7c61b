"""The filtering pipeline's seam (mailsrv.mta.filtering.pipeline): the stages a check acts at, what
its verdicts do to the SMTP answers and to the bytes in the Maildir, and a check that fails.

The checks here are the smallest that exercise one rule each; the real checks (DKIM, SPF/DMARC,
abuse detection, greylisting, blocklists, SpamAssassin, ClamAV) have tests of their own."""
from __future__ import annotations

import os

import pytest
from smtp_support import SPOOL_ONLY, make_harness, send

from mailsrv.mta.filtering.pipeline import JUNK, Check, Findings, Pipeline
from mailsrv.mta.policy import Reply

MESSAGE = b"From: Ext <ext@example.org>\r\nSubject: hello\r\n\r\nbody\r\n"


class Marks(Check):
    """Files every unauthenticated message into Junk, with its verdicts written in."""
    name = "marks"

    async def data(self, message, findings: Findings) -> Reply | None:
        findings.auth_results.append("spf=pass smtp.mailfrom=ext@example.org")
        findings.headers.append(("X-Spam-Status", "Yes, score=9.0"))
        findings.subject_prefix = "[SPAM] "
        findings.folder = JUNK
        return None


class Refuses(Check):
    name = "refuses"

    async def connect(self, client):
        return Reply(554, "5.7.1", "go away") if client.ip == "127.0.0.2" else None

    async def mail(self, client, sender):
        return Reply(550, "5.7.1", "not you") if sender == "spammer@example.org" else None

    async def rcpt(self, client, sender, recipient, resolution):
        if resolution is None:
            return Reply(421, "4.7.0", "too many unknown recipients")
        return Reply(451, "4.7.1", "greylisted") if recipient.startswith("bob@") else None


class Breaks(Check):
    name = "breaks"

    async def data(self, message, findings):
        raise RuntimeError("a daemon answered garbage")


@pytest.fixture(params=["direct", "spooled"])
def mail(request, tmp_path):
    yield from make_harness(tmp_path, SPOOL_ONLY if request.param == "spooled" else "")


def test_a_junk_verdict_files_the_message_into_junk_with_the_verdicts_above_it(mail):
    mail.server.intake.filters = Pipeline([Breaks(), Marks()])
    with mail.client() as smtp:
        send(smtp, "ext@example.org", ["alice@a.test"], MESSAGE)
    mail.deliver()
    junk = mail.maildir("alice@a.test") / ".Junk" / "new"
    [name] = os.listdir(junk)
    stored = (junk / name).read_bytes()
    assert os.listdir(mail.maildir("alice@a.test") / "new") == []
    head, _, body = stored.partition(b"\r\n\r\n")
    head += b"\r\n"
    assert b"Authentication-Results: mx.test;\r\n\tspf=pass smtp.mailfrom=ext@example.org\r\n" in head
    assert b"X-Spam-Status: Yes, score=9.0\r\n" in head
    assert b"Subject: [SPAM] hello\r\n" in head
    assert body == b"body\r\n"


def test_a_removed_junk_folder_never_costs_the_mail(mail):
    mail.server.intake.filters = Pipeline([Marks()])
    junk = mail.maildir("alice@a.test") / ".Junk"
    for part in ("new", "cur", "tmp"):
        (junk / part).rmdir()
    junk.rmdir()
    with mail.client() as smtp:
        send(smtp, "ext@example.org", ["alice@a.test"], MESSAGE)
    mail.deliver()
    # Filed into the inbox, or into the Junk folder that delivery made again for a mailbox missing it.
    maildir = mail.maildir("alice@a.test")
    assert len(list(maildir.glob("new/*")) + list(maildir.glob(".Junk/new/*"))) == 1


def test_each_stage_answers_with_the_first_refusal(mail):
    mail.server.intake.filters = Pipeline([Refuses()])
    with mail.client() as smtp:
        smtp.ehlo()
        assert smtp.mail("spammer@example.org")[0] == 550
        assert smtp.mail("ext@example.org")[0] == 250
        assert smtp.rcpt("alice@a.test")[0] == 250
        assert smtp.rcpt("bob@a.test")[:2] == (451, b"4.7.1 greylisted")
        assert smtp.rcpt("nobody@a.test")[0] == 421


def test_no_checks_leave_the_message_as_it_came(mail):
    mail.server.intake.filters = Pipeline(())
    with mail.client() as smtp:
        send(smtp, "ext@example.org", ["alice@a.test"], MESSAGE)
    mail.deliver()
    [stored] = mail.messages("alice@a.test")
    assert stored.endswith(b"\r\n" + MESSAGE) and b"Authentication-Results" not in stored


def test_subject_prefix_rules():
    findings = Findings(subject_prefix="[SPAM] ")
    assert findings.apply(b"Subject:hi\r\n\r\nx", "mx") == b"Subject: [SPAM] hi\r\n\r\nx"
    assert findings.apply(b"Subject: [SPAM] hi\r\n\r\nx", "mx") == b"Subject: [SPAM] hi\r\n\r\nx"
    assert findings.apply(b"From: a\r\n\r\nSubject: body\r\n", "mx") == \
        b"Subject: [SPAM]\r\nFrom: a\r\n\r\nSubject: body\r\n"
    assert Findings().apply(b"x", "mx") == b"x"
