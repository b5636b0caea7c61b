"""Auto-responders over real sockets and Maildirs: once per sender per window, never to lists,
bulk, automatic mail or daemons, the server policy, and exactly once across a crash."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import os

import pytest
from smtp_support import make_harness, send
from smtp_support import mail  # noqa: F401  (the fixture)
from sqlalchemy import select

from mailsrv.store.models import AutoReplySent, ServerSetting

ORIGINAL_ID = "<orig-1@client.test>"


def message(extra_headers: str = "", message_id: str = ORIGINAL_ID) -> bytes:
    return (f"From: Bob <bob@a.test>\r\nTo: alice@a.test\r\nSubject: hello\r\nMessage-ID: {message_id}\r\n"
            f"References: <earlier@client.test>\r\n{extra_headers}\r\nHi Alice\r\n").encode()


def away(mail, address: str = "alice@a.test") -> None:
    mail.server.user_options.set_auto_response(mail.admin(), address, True, "Away until Monday", "I am away.\nRegards")


def set_policy(mail, value: str) -> None:
    with mail.server.store.session() as s:
        s.merge(ServerSetting(key="autoresponders", value=value))  # mailsrv.directory.system_settings


def from_bob(mail, content: bytes) -> None:
    with mail.authenticated("bob@a.test") as smtp:
        send(smtp, "bob@a.test", ["alice@a.test"], content)


def inbound(mail, sender: str, content: bytes) -> None:
    with mail.client() as smtp:
        send(smtp, sender, ["alice@a.test"], content)


def answered(mail) -> list[str]:
    """The senders an auto-reply was spooled for (remote ones leave through remote delivery)."""
    with mail.server.store.session() as s:
        return list(s.execute(select(AutoReplySent.sender)).scalars())


def replies(mail, address: str = "bob@a.test") -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(m, policy=email.policy.default) for m in mail.messages(address)]


def test_one_reply_per_sender_per_window_with_threading_headers(mail):
    away(mail)
    from_bob(mail, message())
    from_bob(mail, message(message_id="<orig-2@client.test>"))
    mail.deliver()
    [reply] = replies(mail)
    assert reply["Return-Path"] == "<>"  # a reply that cannot be delivered must not bounce to alice
    assert (reply["From"], reply["To"], reply["Subject"]) == ("alice@a.test", "bob@a.test", "Away until Monday")
    assert reply["Auto-Submitted"] == "auto-replied"
    # Both messages were finished in one transaction: whichever came first there was answered.
    assert reply["In-Reply-To"] in (ORIGINAL_ID, "<orig-2@client.test>")
    assert reply["References"] == f"<earlier@client.test> {reply['In-Reply-To']}"
    assert reply.get_content() == "I am away.\r\nRegards\r\n"  # stored as sent: CRLF
    assert len(mail.messages("alice@a.test")) == 2
    # The second message's prepared reply was dropped, file and all.
    assert mail.spool_rows() == [] and os.listdir(mail.data_dir / "spool") == []

    mail.clock.advance(dt.timedelta(hours=23))
    from_bob(mail, message(message_id="<orig-3@client.test>"))
    mail.deliver()
    assert len(replies(mail)) == 1
    mail.clock.advance(dt.timedelta(hours=1, seconds=1))  # the day since the first reply is over
    from_bob(mail, message(message_id="<orig-4@client.test>"))
    mail.deliver()
    assert [r["In-Reply-To"] for r in replies(mail)][1:] == ["<orig-4@client.test>"]


def test_a_remote_sender_is_answered_through_the_spool(mail):
    away(mail)
    inbound(mail, "ext@example.org", message("Auto-Submitted: no\r\n"))
    mail.deliver()
    assert answered(mail) == ["ext@example.org"]


def test_the_window_comes_from_the_configuration(tmp_path):
    for harness in make_harness(tmp_path, "[autoreply]\nwindow_days = 0\n"):
        away(harness)
        from_bob(harness, message())
        harness.deliver()
        from_bob(harness, message(message_id="<orig-2@client.test>"))
        harness.deliver()
        assert len(replies(harness)) == 2


@pytest.mark.parametrize("sender, headers", [
    ("<>", ""),
    ("ext@example.org", "List-Id: Friends <friends.example.org>\r\n"),
    ("ext@example.org", "List-Unsubscribe: <mailto:leave@example.org>\r\n"),
    ("ext@example.org", "Precedence: bulk\r\n"),
    ("ext@example.org", "Precedence: junk\r\n"),
    ("ext@example.org", "Precedence: list\r\n"),
    ("ext@example.org", "Auto-Submitted: auto-generated\r\n"),
    ("ext@example.org", "Auto-Submitted: auto-replied; owner=x@example.org\r\n"),
    ("ext@example.org", "Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n"),
    ("MAILER-DAEMON@example.org", ""),
    ("postmaster@example.org", ""),
    ("owner-friends@example.org", ""),
    ("friends-request@example.org", ""),
])
def test_never_answered(mail, sender, headers):
    away(mail)
    inbound(mail, sender, message(headers))
    mail.deliver()
    assert len(mail.messages("alice@a.test")) == 1
    assert answered(mail) == []


def test_replies_do_not_loop_between_two_responders(mail):
    away(mail)
    away(mail, "bob@a.test")
    from_bob(mail, message())
    mail.deliver()
    # alice answered bob; bob's responder sees Auto-Submitted and stays quiet.
    assert len(replies(mail)) == 1 and len(mail.messages("alice@a.test")) == 1


@pytest.mark.parametrize("policy, replied", [("Enabled", True), ("Disabled", False),
                                             # An authenticated sender counts as verified.
                                             ("RequireSPF", True)])
def test_server_policy(mail, policy, replied):
    away(mail)
    set_policy(mail, policy)
    from_bob(mail, message())
    mail.deliver()
    assert len(replies(mail)) == (1 if replied else 0)


def test_require_spf_answers_only_senders_whose_spf_passed(mail):
    mail.dns.add({("pass.example", "TXT"): ['"v=spf1 ip4:127.0.0.1 -all"'],
                  ("fail.example", "TXT"): ['"v=spf1 ip4:192.0.2.1 -all"'],
                  ("nospf.example", "A"): ["192.0.2.7"]})
    away(mail)
    set_policy(mail, "RequireSPF")
    for sender in ("someone@pass.example", "someone@fail.example", "someone@nospf.example"):
        inbound(mail, sender, message())
    mail.deliver()
    assert len(mail.messages("alice@a.test")) == 3
    assert answered(mail) == ["someone@pass.example"]


def test_a_crash_between_delivery_and_its_record_sends_one_reply(mail):
    away(mail)
    from_bob(mail, message())
    server = mail.server
    [job] = server.spool.claim("crashing-node", 10, dt.timedelta(minutes=10))
    target = server.delivery.targets[job.kind]
    mail.call(target.deliver_batch([job]))  # the Maildir copy and the reply's file are written …
    mail.restart()  # … and the node dies before finish records either
    mail.clock.advance(dt.timedelta(minutes=11))  # its lease runs out
    mail.deliver()
    mail.deliver()
    assert len(mail.messages("alice@a.test")) == 1
    assert len(replies(mail)) == 1
    mail.server.spool.sweep(dt.timedelta(0))  # the dead node's unused reply file is swept
    assert os.listdir(mail.data_dir / "spool") == []
