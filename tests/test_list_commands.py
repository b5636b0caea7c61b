"""List commands by mail over real SMTP and Maildirs (subscribe with confirmation, unsubscribe,
help, the list's disable* settings, silence towards automatic mail), one-click unsubscribe over
HTTP, and digests."""
from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import email
import email.policy
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from email.message import EmailMessage

import pytest
from conftest import web_listener
from smtp_support import DOMAIN, send
from smtp_support import mail  # noqa: F401  (the fixture)
from sqlalchemy import select

from mailsrv.core.config import parse_config
from mailsrv.directory.domains import get_domain
from mailsrv.mta.list_addresses import parse
from mailsrv.mta.list_commands import command_lines
from mailsrv.server import MailServer
from mailsrv.store.models import DIGEST, SUBSCRIBER, DigestPost, ListMember, MailingList

BOB = f"bob@{DOMAIN}"
COMMANDS = f"lists@{DOMAIN}"


def add_list(mail, name: str = "news", **list_settings) -> int:
    with mail.server.store.session() as s:
        domain = get_domain(s, DOMAIN)
        domain.settings = {**domain.settings, "listcommandaddress": "lists"}
        mailing_list = MailingList(domain_id=domain.id, name=name, moderator="", description="All the news",
                                   settings=list_settings)
        s.add(mailing_list)
        s.flush()
        return mailing_list.id


def members(mail, list_id: int) -> list[tuple[str, str]]:
    with mail.server.store.session() as s:
        return [tuple(row) for row in s.execute(select(ListMember.kind, ListMember.address)
                                                .where(ListMember.list_id == list_id).order_by(ListMember.address))]


def write(mail, to: str, subject: str, body: str = "", sender: str = BOB, headers: str = "") -> None:
    mail.clock.advance(dt.timedelta(seconds=1))  # Maildir names sort by time: each write's answers come after
    content = f"From: {sender or 'MAILER-DAEMON@x.test'}\r\nTo: {to}\r\nSubject: {subject}\r\n{headers}\r\n{body}\r\n"
    with (mail.authenticated(sender) if sender == BOB else mail.client()) as smtp:
        send(smtp, sender, [to], content.encode())
    mail.deliver()


def inbox(mail, address: str = BOB) -> list[EmailMessage]:
    return [email.message_from_bytes(m, policy=email.policy.default) for m in mail.messages(address)]


def test_command_address_forms():
    assert parse("lists", "Lists") == ("", "", "")
    assert parse("news-subscribe", "lists") == ("news", "subscribe", "")
    assert parse("My-List-Help", "lists") == ("my-list", "help", "")
    assert parse("news-confirm+AbC.dE_f", "lists") == ("news", "confirm", "AbC.dE_f")
    assert parse("news-confirm", "lists") is None and parse("news-subscribe+x", "lists") is None
    assert parse("alice", "lists") is None


def test_command_lines_skip_quotes_and_stop_at_end():
    message = email.message_from_bytes(
        b"Subject: Re: confirm T1\r\n\r\nsubscribe news digest\r\n> unsubscribe news\r\nhello\r\n"
        b"HELP\r\nend\r\nunsubscribe news\r\n", policy=email.policy.default)
    assert command_lines(message) == [["confirm", "T1"], ["subscribe", "news", "digest"], ["HELP"]]


def test_subscribe_with_confirmation_round_trip(mail):
    list_id = add_list(mail, sendsubscribe=True)
    write(mail, COMMANDS, "subscribe news")
    report, confirmation = sorted(inbox(mail), key=lambda m: m["Subject"])
    assert report["Subject"] == "Re: subscribe news" and "confirmation was sent" in report.get_content()
    assert confirmation["Subject"].startswith("confirm ") and confirmation["Reply-To"] == COMMANDS
    assert confirmation["Auto-Submitted"] == "auto-replied" and confirmation["Return-Path"] == "<>"
    assert members(mail, list_id) == []  # not before the confirmation

    write(mail, confirmation["Reply-To"], f"Re: {confirmation['Subject']}", "> quoted text\r\n")
    assert members(mail, list_id) == [(SUBSCRIBER, BOB)]
    answers = {str(m["Subject"]): m.get_content() for m in inbox(mail)}
    assert "is now subscribed to news@a.test" in answers[f"Re: {confirmation['Subject']}"]
    assert "All the news" in answers["Welcome to news@a.test"]  # sendsubscribe

    # The same token again changes nothing and says so; an altered one is refused.
    token = confirmation["Subject"].split()[1]
    write(mail, f"news-confirm+{token}@{DOMAIN}", "")
    write(mail, COMMANDS, "confirm " + token[:-2] + ("aa" if not token.lower().endswith("aa") else "bb"))
    *_, reused, forged = inbox(mail)
    assert "already subscribed" in reused.get_content()
    assert "invalid or expired" in forged.get_content()
    assert members(mail, list_id) == [(SUBSCRIBER, BOB)]


def test_confirmation_expires(mail):
    list_id = add_list(mail)
    write(mail, f"news-subscribe@{DOMAIN}", "please", "subscribe news digest")
    [confirmation] = confirmations(mail)
    mail.clock.advance(dt.timedelta(days=8))
    write(mail, COMMANDS, confirmation["Subject"])
    assert "invalid or expired" in inbox(mail)[-1].get_content()
    assert members(mail, list_id) == []


def confirmations(mail) -> list[EmailMessage]:
    return [m for m in inbox(mail) if m["Subject"].startswith("confirm ")]


def test_digest_subscription_by_body_and_confirmed_unsubscribe(mail):
    list_id = add_list(mail, sendunsubscribe=True)
    write(mail, COMMANDS, "", "subscribe news@a.test digest\r\n")
    [confirmation] = confirmations(mail)
    write(mail, COMMANDS, "Re: " + confirmation["Subject"])
    assert members(mail, list_id) == [(DIGEST, BOB)]

    # Leaving is confirmed too: a forged sender cannot take someone off.
    write(mail, f"news-unsubscribe@{DOMAIN}", "")
    assert members(mail, list_id) == [(DIGEST, BOB)]
    [_, confirmation] = confirmations(mail)
    assert "asked to unsubscribe bob@a.test from news@a.test" in confirmation.get_content()
    before = len(inbox(mail))
    write(mail, confirmation["Reply-To"], "Re: " + confirmation["Subject"])
    assert members(mail, list_id) == []
    subjects = sorted(str(m["Subject"]) for m in inbox(mail)[before:])
    assert subjects == ["Goodbye from news@a.test", "Re: " + confirmation["Subject"]]
    write(mail, confirmation["Reply-To"], "Re: " + confirmation["Subject"])  # used again
    assert "not subscribed to news@a.test; nothing was changed" in inbox(mail)[-1].get_content()
    write(mail, COMMANDS, "unsubscribe news")
    assert "is not subscribed" in inbox(mail)[-1].get_content()


def test_help_and_unknown_list(mail):
    add_list(mail)
    write(mail, f"news-help@{DOMAIN}", "")
    assert "subscribe LIST [digest]" in inbox(mail)[-1].get_content()
    write(mail, COMMANDS, "hello there", "what can I do?")  # nothing recognised: the help
    assert "subscribe LIST [digest]" in inbox(mail)[-1].get_content()
    write(mail, COMMANDS, "subscribe nosuch")
    assert "There is no list nosuch at a.test" in inbox(mail)[-1].get_content()
    with mail.client() as smtp:  # a list's command addresses exist only for lists that do
        smtp.ehlo()
        smtp.mail("carol@remote.test")
        assert smtp.rcpt(f"nosuch-subscribe@{DOMAIN}")[0] == 550


def test_command_address_only_where_there_are_lists(mail):
    list_id = add_list(mail)
    with mail.client() as smtp:
        smtp.ehlo()
        smtp.mail("carol@remote.test")
        assert smtp.rcpt(COMMANDS)[0] == 250
    with mail.server.store.session() as s:
        s.delete(s.get(MailingList, list_id))
    with mail.client() as smtp:  # no list left: it would only answer forged senders
        smtp.ehlo()
        smtp.mail("carol@remote.test")
        assert smtp.rcpt(COMMANDS)[0] == 550


@pytest.mark.parametrize("key, command, answer", [
    ("disablelistcommand", "subscribe news", "Commands by mail are disabled for news@a.test"),
    ("disablelistcommand", "unsubscribe news", "Commands by mail are disabled for news@a.test"),
    ("disablesubscribecommand", "subscribe news", "Subscribing by mail is disabled for news@a.test"),
    ("allowunsubscribe", "unsubscribe news", "Unsubscribing by mail is not allowed for news@a.test"),
])
def test_list_settings_refuse_commands(mail, key, command, answer):
    list_id = add_list(mail, **{key: key != "allowunsubscribe"})
    with mail.server.store.session() as s:
        s.add(ListMember(list_id=list_id, kind=SUBSCRIBER, address=BOB))
    write(mail, COMMANDS, command)
    [reply] = inbox(mail)
    assert answer in reply.get_content()
    assert members(mail, list_id) == [(SUBSCRIBER, BOB)]


@pytest.mark.parametrize("sender, headers", [
    ("", ""),
    (BOB, "Auto-Submitted: auto-replied\r\n"),
    (BOB, "Precedence: bulk\r\n"),
    (BOB, "Precedence: list\r\n"),
    ("owner-x@remote.test", ""),
])
def test_automatic_mail_is_never_answered(mail, sender, headers):
    list_id = add_list(mail)
    with mail.server.store.session() as s:
        s.add(ListMember(list_id=list_id, kind=SUBSCRIBER, address=BOB))
    write(mail, COMMANDS, "help", sender=sender, headers=headers)
    write(mail, f"news-unsubscribe@{DOMAIN}", "", sender=sender, headers=headers)
    assert inbox(mail) == [] and mail.spool_rows() == []
    assert members(mail, list_id) == [(SUBSCRIBER, BOB)]


def http(url: str, data: bytes | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data, {"Content-Type": "application/x-www-form-urlencoded"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_one_click_unsubscribe_over_http(mail):
    list_id = add_list(mail)
    closed = add_list(mail, "closed", allowunsubscribe=False)
    with mail.server.store.session() as s:
        s.add_all([ListMember(list_id=list_id, kind=SUBSCRIBER, address=BOB),
                   ListMember(list_id=list_id, kind=DIGEST, address=BOB),
                   ListMember(list_id=list_id, kind=SUBSCRIBER, address="carol@remote.test"),
                   ListMember(list_id=closed, kind=SUBSCRIBER, address=BOB)])
    token = mail.server.one_click.token(list_id, "Bob@A.test")
    with web_listener(mail.server) as base:
        url = f"{base}/List/Unsubscribe?token={urllib.parse.quote(token)}"
        status, body = http(url)  # a link scanner's GET changes nothing
        assert status == 200 and "Unsubscribe <strong>bob@a.test</strong> from <strong>news@a.test" in body
        assert 'name="List-Unsubscribe" value="One-Click"' in body
        assert len(members(mail, list_id)) == 3
        assert http(url, b"something=else")[0] == 400
        for _ in range(2):  # idempotent
            status, body = http(url, b"List-Unsubscribe=One-Click")
            assert status == 200 and "bob@a.test is no longer subscribed to news@a.test" in body
        assert members(mail, list_id) == [(SUBSCRIBER, "carol@remote.test")]

        for bad in ["", token[:-3] + "abc", mail.server.tokens.sign("list-confirm", f"{list_id}:bob@a.test")]:
            status, body = http(f"{base}/list/unsubscribe?token={urllib.parse.quote(bad)}", b"List-Unsubscribe=One-Click")
            assert status == 400 and "invalid or has expired" in body
        closed_url = f"{base}/List/Unsubscribe?token={mail.server.one_click.token(closed, BOB)}"
        assert http(closed_url, b"List-Unsubscribe=One-Click")[0] == 403
        assert members(mail, closed) == [(SUBSCRIBER, BOB)]
        mail.clock.advance(dt.timedelta(days=366))
        assert http(closed_url)[0] == 400


def test_a_posts_one_click_link_takes_its_own_subscriber_off_and_the_mailto_confirms(mail):
    """Each copy of a post carries its subscriber's link: a mail client's POST (no cookie, no
    confirmation) takes that subscriber off, nobody else; the mailto asks for a confirmation by mail.
    The post goes to the digest of a list in digest mode, not to its digest subscribers."""
    list_id = add_list(mail, digestmode=True)
    with mail.server.store.session() as s:
        s.add_all([ListMember(list_id=list_id, kind=SUBSCRIBER, address=BOB),
                   ListMember(list_id=list_id, kind=SUBSCRIBER, address=f"alice@{DOMAIN}"),
                   ListMember(list_id=list_id, kind=DIGEST, address="carol@remote.test")])
    write(mail, f"news@{DOMAIN}", "Hello", "A post.")
    [posted] = inbox(mail)
    assert posted["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    mailto, url = [v.strip(" <>") for v in posted["List-Unsubscribe"].split(",")]
    assert mailto == f"mailto:news-unsubscribe@{DOMAIN}"
    [alices] = inbox(mail, f"alice@{DOMAIN}")
    assert alices["List-Unsubscribe"] != posted["List-Unsubscribe"]
    with mail.server.store.session() as s:
        assert [p.subject for p in s.execute(select(DigestPost)).scalars()] == ["Hello"]
    path = url.removeprefix(f"https://{DOMAIN}")
    with web_listener(mail.server) as base:
        status, body = http(base + path)  # what a person clicking the link sees: a button
        assert status == 200 and "Unsubscribe <strong>bob@a.test</strong> from <strong>news@a.test" in body
        assert len(members(mail, list_id)) == 3
        status, body = http(base + path, b"List-Unsubscribe=One-Click")  # the mail client's one click
        assert status == 200 and "bob@a.test is no longer subscribed to news@a.test" in body
    assert members(mail, list_id) == [(SUBSCRIBER, f"alice@{DOMAIN}"), (DIGEST, "carol@remote.test")]

    with mail.server.store.session() as s:
        s.add(ListMember(list_id=list_id, kind=SUBSCRIBER, address=BOB))
    write(mail, mailto.removeprefix("mailto:"), "")
    confirmation = next(m for m in reversed(inbox(mail)) if m["Subject"].startswith("confirm "))
    assert "asked to unsubscribe bob@a.test from news@a.test" in confirmation.get_content()
    write(mail, confirmation["Reply-To"], "Re: " + confirmation["Subject"])
    assert members(mail, list_id) == [(SUBSCRIBER, f"alice@{DOMAIN}"), (DIGEST, "carol@remote.test")]


def post(n: int, size: int = 0) -> bytes:
    return (f"From: Carol <carol@remote.test>\r\nTo: news@a.test\r\nSubject: post {n}\r\n"
            f"Message-ID: <post-{n}@remote.test>\r\n\r\nBody of post {n}\r\n{'x' * size}\r\n").encode()


def append_to_digest(mail, mailing_list: MailingList, content: bytes) -> bool:
    """What the list server does with an accepted post of a list (mailsrv.mta.list_server): the digest
    keeps it, committed with the post, then sends the digest if that made it due."""
    digests = mail.server.digests
    kept = digests.keep(mailing_list, content)
    if kept is None:
        return False
    with mail.server.store.session() as s:
        s.add(kept)
    digests.send_if_due(mailing_list.id)
    return True


def digest_list(mail, digestmode: bool = True) -> MailingList:
    list_id = add_list(mail, digestmode=digestmode)
    with mail.server.store.session() as s:
        s.add_all([ListMember(list_id=list_id, kind=DIGEST, address=BOB),
                   ListMember(list_id=list_id, kind=SUBSCRIBER, address=f"alice@{DOMAIN}")])
        mailing_list = s.get(MailingList, list_id)
        s.expunge(mailing_list)
    return mailing_list


def digest_posts(message: EmailMessage) -> list[str]:
    """The subjects of a digest's posts, after checking its RFC 1153-style MIME structure."""
    assert message.get_content_type() == "multipart/mixed"
    toc, digest = message.iter_parts()
    assert toc.get_content_type() == "text/plain" and digest.get_content_type() == "multipart/digest"
    parts = list(digest.iter_parts())
    assert all(part.get_content_type() == "message/rfc822" for part in parts)
    subjects = [part.get_content()["Subject"] for part in parts]
    assert all(f"{n}. {subject} (Carol <carol@remote.test>)" in toc.get_content()
               for n, subject in enumerate(subjects, 1))
    return subjects


def test_digest_after_a_day(mail):
    mailing_list = digest_list(mail)
    for n in (1, 2):
        assert append_to_digest(mail, mailing_list, post(n))
    assert mail.server.digests.send_due() == 0
    mail.clock.advance(dt.timedelta(hours=23))
    assert mail.server.digests.send_due() == 0
    mail.clock.advance(dt.timedelta(hours=1))
    assert mail.server.digests.send_due() == 1
    mail.deliver()
    [digest] = inbox(mail)
    assert digest["Subject"].startswith("news Digest") and digest["List-Id"] == "<news.a.test>"
    assert digest_posts(digest) == ["post 1", "post 2"]
    assert "Body of post 2" in digest.as_string()
    assert mail.messages(f"alice@{DOMAIN}") == []  # a subscriber of each post gets no digest
    assert mail.server.digests.send_due() == 0 and list((mail.data_dir / "digests").rglob("*.eml")) == []


def test_digest_when_it_grows_past_the_size(mail):
    mailing_list = digest_list(mail)
    for n in range(1, 50):
        append_to_digest(mail, mailing_list, post(n))
    mail.deliver()
    assert inbox(mail) == []
    append_to_digest(mail, mailing_list, post(50))  # the 50th post
    mail.deliver()
    [digest] = inbox(mail)
    assert digest_posts(digest) == [f"post {n}" for n in range(1, 51)]
    mail.clock.advance(dt.timedelta(seconds=1))  # Maildir names sort by time
    append_to_digest(mail, mailing_list, post(51, 100 * 1024))  # 100 KB in one post
    mail.deliver()
    assert digest_posts(inbox(mail)[-1]) == ["post 51"]


def test_a_list_not_in_digest_mode_keeps_nothing(mail):
    mailing_list = digest_list(mail, digestmode=False)
    assert not append_to_digest(mail, mailing_list, post(1))
    mail.clock.advance(dt.timedelta(days=2))
    assert mail.server.digests.send_due() == 0


def test_one_node_sends_each_digest(mail):
    mailing_list = digest_list(mail)
    for n in (1, 2, 3):
        append_to_digest(mail, mailing_list, post(n))
    mail.clock.advance(dt.timedelta(days=1))
    other = MailServer(parse_config(mail.config_text), mail.clock)  # a second node on the same store
    try:
        barrier = threading.Barrier(2)

        def node(server: MailServer) -> int:
            barrier.wait()
            return server.digests.send(mailing_list.id)

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            sent = list(pool.map(node, [mail.server, other]))
    finally:
        other.close()
    assert sorted(sent) == [False, True]
    mail.deliver()
    [digest] = inbox(mail)
    assert digest_posts(digest) == ["post 1", "post 2", "post 3"]
    assert os.listdir(mail.data_dir / "spool") == []


def test_every_node_sends_due_digests_from_its_loop(mail):
    mailing_list = digest_list(mail)
    append_to_digest(mail, mailing_list, post(1))
    mail.clock.advance(dt.timedelta(days=1))

    async def one_round() -> None:
        stop = asyncio.Event()
        loop = asyncio.create_task(mail.server.digests.run(stop))
        for _ in range(200):
            if not await asyncio.to_thread(mail.server.digests.due):
                break
            await asyncio.sleep(0.05)
        stop.set()
        await loop
    mail.call(one_round())
    mail.deliver()
    [digest] = inbox(mail)
    assert digest_posts(digest) == ["post 1"]


def test_sweep_removes_the_files_of_a_deleted_lists_posts(mail):
    mailing_list = digest_list(mail)
    append_to_digest(mail, mailing_list, post(1))
    [waiting] = (mail.data_dir / "digests").rglob("*.eml")
    assert mail.server.digests.sweep(dt.timedelta(0)) == 0  # still waiting for its digest
    with mail.server.store.session() as s:
        s.delete(s.get(MailingList, mailing_list.id))
    assert mail.server.digests.sweep() == 0  # too recent: a node may be between file and row
    assert mail.server.digests.sweep(dt.timedelta(0)) == 1 and not waiting.exists()
