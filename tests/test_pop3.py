"""POP3 on real loopback sockets with poplib: TLS and logins, the commands, one mailbox shared with IMAP."""
from __future__ import annotations

import base64
import poplib
import re

import pytest
from sqlalchemy import select

from mailsrv.mailstore.folders import Mailbox
from mailsrv.store.models import User
from mailbox_support import ALICE, BOB, MailboxHarness, mailbox, message  # noqa: F401
from smtp_support import USER_PASSWORD


def test_capabilities_before_and_after_stls(mailbox: MailboxHarness) -> None:
    client = mailbox.pop3(login=None, tls=False)
    capabilities = client.capa()
    assert {"STLS", "TOP", "UIDL", "USER", "SASL"} <= capabilities.keys()
    assert capabilities["SASL"] == ["PLAIN"]
    client.stls(context=mailbox.client_tls())
    assert "STLS" not in client.capa()
    client.user(ALICE)
    assert client.pass_(USER_PASSWORD).startswith(b"+OK")
    client.quit()


def test_implicit_tls_port(mailbox: MailboxHarness) -> None:
    mailbox.deliver_to(ALICE, message("over pop3s"))
    client = mailbox.pop3s()
    client.user(ALICE)
    client.pass_(USER_PASSWORD)
    assert client.stat()[0] == 1
    client.quit()


def test_sasl_plain_with_and_without_initial_response(mailbox: MailboxHarness) -> None:
    token = base64.b64encode(f"\0{ALICE}\0{USER_PASSWORD}".encode()).decode()
    client = mailbox.pop3(login=None)
    assert client._shortcmd(f"AUTH PLAIN {token}").startswith(b"+OK")
    client.quit()
    client = mailbox.pop3(login=None)
    client._putcmd("AUTH PLAIN")
    assert client._getline()[0].startswith(b"+")
    assert client._shortcmd(token).startswith(b"+OK")
    client.quit()


def test_wrong_password_answers_like_unknown_user_and_disabled_users_cannot_log_in(
        mailbox: MailboxHarness) -> None:
    answers = []
    for login, password in ((ALICE, "wrong"), ("nobody@a.test", USER_PASSWORD)):
        client = mailbox.pop3(login=None)
        client.user(login)
        with pytest.raises(poplib.error_proto) as failure:
            client.pass_(password)
        answers.append(str(failure.value))
        client.quit()
    assert answers[0] == answers[1]
    with mailbox.server.store.session() as s:
        bob = s.execute(select(User).where(User.name == "bob")).scalar_one()
        bob.settings = {**bob.settings, "isenabled": False}
    client = mailbox.pop3(login=None)
    client.user(BOB)
    with pytest.raises(poplib.error_proto) as failure:
        client.pass_(USER_PASSWORD)
    assert str(failure.value) == answers[0]
    client.quit()


def test_list_retr_top_with_crlf_and_dot_stuffing(mailbox: MailboxHarness) -> None:
    mailbox.deliver_to(ALICE, message("first", "line one\r\n.leading dot\r\nline three\r\n"))
    mailbox.deliver_to(ALICE, message("second"))
    client = mailbox.pop3()
    count, total = client.stat()
    _, listing, _ = client.list()
    sizes = [int(line.split()[1]) for line in listing]
    assert count == 2 and sum(sizes) == total
    _, lines, octets = client.retr(1)
    # poplib strips the CRLFs and the stuffed dots: CRLF joined, it is the message as stored.
    web = Mailbox(mailbox.maildir(ALICE))
    first = next(s.key for s in web.page("INBOX", 1).messages if s.subject == "first")
    assert b"\r\n".join(lines) + b"\r\n" == web.read("INBOX", first)
    assert len(b"\r\n".join(lines) + b"\r\n") == sizes[0]
    assert b".leading dot" in lines
    _, top, _ = client.top(1, 1)
    assert top[-2:] == [b"", b"line one"]
    client.quit()


def test_deletions_happen_only_at_quit_and_imap_and_web_see_them(mailbox: MailboxHarness) -> None:
    for subject in ("keep", "drop"):
        mailbox.deliver_to(ALICE, message(subject))
    client = mailbox.pop3()
    client.dele(2)
    with pytest.raises(poplib.error_proto):
        client.retr(2)
    assert client.stat()[0] == 1
    # The connection drops without QUIT: nothing is deleted.
    client.sock.close()
    client = mailbox.pop3()
    assert client.stat()[0] == 2
    client.dele(2)
    client.rset()
    assert client.stat()[0] == 2
    client.dele(2)
    client.quit()
    imap = mailbox.imap()
    imap.select("INBOX")
    typ, data = imap.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert [re.search(rb"Subject: (\w+)", item[1])[1] for item in data if isinstance(item, tuple)] == [b"keep"]
    imap.logout()
    assert [s.subject for s in Mailbox(mailbox.maildir(ALICE)).page("INBOX", 1).messages] == ["keep"]


def test_uidl_is_imap_uidvalidity_and_uid_and_survives_flag_changes(mailbox: MailboxHarness) -> None:
    for subject in ("a", "b", "c"):
        mailbox.deliver_to(ALICE, message(subject))
    imap = mailbox.imap()
    imap.select("INBOX")
    uid_validity = imap.response("UIDVALIDITY")[1][-1].decode()
    imap.uid("STORE", "2", "+FLAGS", r"(\Seen \Flagged)")
    imap.logout()
    client = mailbox.pop3()
    _, listing, _ = client.uidl()
    assert listing == [f"{n} {uid_validity}.{n}".encode() for n in (1, 2, 3)]
    client.dele(1)
    client.quit()
    client = mailbox.pop3()
    assert client.uidl()[1] == [f"{n} {uid_validity}.{n + 1}".encode() for n in (1, 2)]
    assert client.uidl(1) == f"+OK 1 {uid_validity}.2".encode()
    client.quit()


def test_users_see_only_their_own_mail(mailbox: MailboxHarness) -> None:
    mailbox.deliver_to(ALICE, message("for alice"))
    client = mailbox.pop3(BOB)
    assert client.stat() == (0, 0)
    client.quit()
