"""Webmail over HTTP: folders, paging, reading (sanitized HTML, blocked remote images, attachments),
compose/reply/forward through the submission path, and the actions, all seen on the Maildir."""
from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from email import message_from_bytes, policy
from email.message import EmailMessage

import httpx
from smtp_support import DOMAIN, send
from web_support import ALICE, BOB, csrf
from web_support import web  # noqa: F401  (the fixture)

PDF = b"%PDF-1.4 not really a pdf \x00\x01\x02"


def deliver(web, subject: str, body: str = "hello", html: str | None = None,
            attachment: tuple[str, str, bytes] | None = None, to: str = ALICE) -> None:
    """A message from outside, over SMTP into `to`'s inbox."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "Ext <ext@example.org>", to, subject
    message["Message-ID"] = f"<{subject.replace(' ', '-')}@example.org>"
    message.set_content(body)
    if html is not None:
        message.add_alternative(html, subtype="html")
    if attachment is not None:
        name, content_type, data = attachment
        maintype, subtype = content_type.split("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    with web.mail.client() as smtp:
        send(smtp, "ext@example.org", [to], message.as_bytes(policy=policy.SMTP))
    web.mail.deliver()


def keys(page: httpx.Response) -> list[str]:
    return re.findall(r'<input type="checkbox" name="id" value="([^"]+)"', page.text)


def subjects(page: httpx.Response) -> list[str]:
    return re.findall(r'<a href="/Mail/Message\?[^"]+">([^<]*)</a>', page.text)


def files(web, address: str, folder: str = "") -> list[str]:
    """Names in a folder's cur/ and new/ ("" = the inbox), as IMAP would see them."""
    root = web.mail.maildir(address) / (f".{folder}" if folder else "")
    return sorted(os.listdir(root / "cur")) + sorted(os.listdir(root / "new"))


def action(client: httpx.Client, page: httpx.Response, folder: str, what: str, ids: list[str],
           target: str = "") -> httpx.Response:
    return client.post("/Mail/Action", params={"csrf": csrf(page)},
                       data={"folder": folder, "action": what, "id": ids, "target": target})


def test_the_folder_list_shows_unread_counts(web):
    deliver(web, "one")
    deliver(web, "two")
    client = web.signed_in()
    inbox = client.get("/Mail")
    assert re.search(r'>Inbox <span class="unread-count">\(2\)</span>', inbox.text)
    for name in ("Sent", "Drafts", "Trash", "Junk"):
        assert f">{name}</a>" in inbox.text
    client.get("/Mail/Message", params={"folder": "INBOX", "id": keys(inbox)[0]})
    assert re.search(r'>Inbox <span class="unread-count">\(1\)</span>', client.get("/Mail").text)


def test_the_message_list_pages_newest_first(web):
    for n in range(1, 31):
        deliver(web, f"message {n:02d}")
        web.mail.clock.advance(dt.timedelta(seconds=1))
    client = web.signed_in()
    first = client.get("/Mail")
    assert subjects(first) == [f"message {n:02d}" for n in range(30, 5, -1)]
    assert "Page 1 of 2 (30 messages)" in first.text
    second = client.get("/Mail", params={"folder": "INBOX", "page": 2})
    assert subjects(second) == [f"message {n:02d}" for n in range(5, 0, -1)]
    assert 'rel="prev"' in second.text and 'rel="next"' not in second.text


def test_html_is_sanitized_and_remote_images_wait_until_asked(web):
    html = ('<p onclick="steal()">Hi <b>there</b></p><script>alert(1)</script>'
            '<img src="https://tracker.example/pixel.gif" alt="pixel">'
            '<a href="javascript:alert(2)">bad</a> <a href="https://example.org/">good</a>'
            '<iframe src="https://example.org/"></iframe><style>body{}</style>')
    deliver(web, "newsletter", html=html)
    client = web.signed_in()
    key = keys(client.get("/Mail"))[0]
    page = client.get("/Mail/Message", params={"folder": "INBOX", "id": key})
    assert "<p>Hi <b>there</b></p>" in page.text
    for bad in ("<script", "onclick", "javascript:", "<iframe", "<style>body", "tracker.example"):
        assert bad not in page.text
    assert '<a href="https://example.org/" rel="noopener noreferrer">good</a>' in page.text
    assert "Remote images were blocked." in page.text
    assert "img-src 'self';" in page.headers["content-security-policy"]
    shown = client.get("/Mail/Message", params={"folder": "INBOX", "id": key, "images": 1})
    assert '<img src="https://tracker.example/pixel.gif" alt="pixel">' in shown.text
    assert "Remote images were blocked." not in shown.text
    assert "img-src 'self' http: https:;" in shown.headers["content-security-policy"]


def test_attachments_download_as_files(web):
    deliver(web, "report", attachment=("report.pdf", "application/pdf", PDF))
    deliver(web, "page", attachment=("page.html", "text/html", b"<script>alert(1)</script>"))
    client = web.signed_in()
    for key, name, data in zip(keys(client.get("/Mail")), ("page.html", "report.pdf"),
                               (b"<script>alert(1)</script>", PDF), strict=True):
        page = client.get("/Mail/Message", params={"folder": "INBOX", "id": key})
        link = re.search(rf'<a href="(/Mail/Attachment\?[^"]+)" download>{re.escape(name)}</a>', page.text)
        download = client.get(link[1].replace("&amp;", "&"))
        assert download.status_code == 200 and download.content == data
        assert download.headers["content-disposition"] == f"attachment; filename*=UTF-8''{name}"
        # Never rendered on our origin, whatever the sender called it.
        assert download.headers["content-type"] == "application/octet-stream"


def test_compose_with_an_attachment_is_delivered_filed_in_sent_and_counted_as_sent(web):
    client = web.signed_in()
    token = csrf(client.get("/Mail/Compose"))
    answer = client.post("/Mail/Send", params={"csrf": token},
                         data={"to": f"Bob <{BOB}>", "subject": "figures", "body": "see attached"},
                         files={"attachments": ("figures.pdf", PDF, "application/pdf")})
    assert answer.status_code == 303 and "notice=sent" in answer.headers["location"]
    assert "Message sent." in client.get(answer.headers["location"]).text
    web.mail.deliver()
    [received] = web.mail.messages(BOB)
    message = message_from_bytes(received, policy=policy.default)
    assert message["From"] == ALICE and message["Subject"] == "figures"
    assert message.get_body(("plain",)).get_content().strip() == "see attached"
    [attached] = list(message.iter_attachments())
    assert attached.get_filename() == "figures.pdf" and attached.get_content() == PDF
    [sent] = files(web, ALICE, "Sent")
    assert sent.endswith(":2,S")
    sent_bytes = (web.mail.maildir(ALICE) / ".Sent" / "cur" / sent).read_bytes()
    assert received.endswith(sent_bytes)  # what was sent, behind our trace headers
    traffic = web.mail.server.user_activity.traffic(web.mail.admin(), ALICE, None, None)
    assert (traffic.messages_sent, traffic.bytes_sent) == (1, len(sent_bytes))
    assert "figures" in client.get("/Mail", params={"folder": "Sent"}).text


def test_a_reply_threads_and_flags_the_original_as_answered(web):
    deliver(web, "question")
    client = web.signed_in()
    key = keys(client.get("/Mail"))[0]
    form = client.get("/Mail/Compose", params={"mode": "reply", "folder": "INBOX", "id": key})
    assert 'name="subject" value="Re: question"' in form.text
    assert "&gt; hello" in form.text
    assert 'name="in_reply_to" value="&lt;question@example.org&gt;"' in form.text
    answer = client.post("/Mail/Send", params={"csrf": csrf(form)}, data={
        "to": BOB, "subject": "Re: question", "body": "answer",
        "in_reply_to": "<question@example.org>", "references": "<question@example.org>",
        "reply_folder": "INBOX", "reply_id": key})
    assert answer.status_code == 303
    web.mail.deliver()
    [received] = web.mail.messages(BOB)
    assert b"In-Reply-To: <question@example.org>\r\n" in received
    assert files(web, ALICE) == [f"{key}:2,R"]  # answered, still unread: it was never opened


def test_a_forward_carries_the_original_attachments(web):
    deliver(web, "report", attachment=("report.pdf", "application/pdf", PDF))
    client = web.signed_in()
    key = keys(client.get("/Mail"))[0]
    form = client.get("/Mail/Compose", params={"mode": "forward", "folder": "INBOX", "id": key})
    assert 'name="subject" value="Fwd: report"' in form.text
    carried = re.findall(r'name="carry" value="(\d+)" checked', form.text)
    answer = client.post("/Mail/Send", params={"csrf": csrf(form)}, data={
        "to": BOB, "subject": "Fwd: report", "body": "fyi",
        "forward_folder": "INBOX", "forward_id": key, "carry": carried})
    assert answer.status_code == 303
    web.mail.deliver()
    [received] = web.mail.messages(BOB)
    [attached] = list(message_from_bytes(received, policy=policy.default).iter_attachments())
    assert attached.get_filename() == "report.pdf" and attached.get_content() == PDF


def test_sending_to_an_unknown_local_address_is_refused_with_the_reason(web):
    client = web.signed_in()
    answer = client.post("/Mail/Send", params={"csrf": csrf(client.get("/Mail/Compose"))},
                         data={"to": f"nobody@{DOMAIN}", "subject": "x", "body": "y"})
    assert answer.status_code == 400
    assert f"Not sent: &lt;nobody@{DOMAIN}&gt;: no such user here." in answer.text
    assert files(web, ALICE, "Sent") == []


def test_a_refused_send_keeps_its_attachments_for_the_next_try(web):
    client = web.signed_in()
    refused = client.post("/Mail/Send", params={"csrf": csrf(client.get("/Mail/Compose"))},
                          data={"to": f"nobody@{DOMAIN}", "subject": "figures", "body": "see attached"},
                          files={"attachments": ("figures.pdf", PDF, "application/pdf")})
    assert refused.status_code == 400 and "no such user here" in refused.text
    kept = re.findall(r'<input type="checkbox" name="kept" value="([^"]+)" checked> figures.pdf \((\d+) bytes\)',
                      refused.text)
    assert [size for _, size in kept] == [str(len(PDF))]

    # The user corrects the address and sends again, adding a second file.
    answer = client.post("/Mail/Send", params={"csrf": csrf(refused)},
                         data={"to": BOB, "subject": "figures", "body": "see attached", "kept": [kept[0][0]]},
                         files={"attachments": ("notes.txt", b"two\r\n", "text/plain")})
    assert answer.status_code == 303
    web.mail.deliver()
    [received] = web.mail.messages(BOB)
    attached = list(message_from_bytes(received, policy=policy.default).iter_attachments())
    assert [(a.get_filename(), a.get_content_type()) for a in attached] == [
        ("figures.pdf", "application/pdf"), ("notes.txt", "text/plain")]
    assert attached[0].get_content() == PDF

    damaged = client.post("/Mail/Send", params={"csrf": csrf(refused)},
                          data={"to": BOB, "subject": "x", "body": "y", "kept": ["not-a.token"]})
    assert damaged.status_code == 400 and "please attach it again" in damaged.text


def test_delete_moves_to_trash_and_deleting_from_trash_removes_for_good(web):
    deliver(web, "old news")
    client = web.signed_in()
    inbox = client.get("/Mail")
    key = keys(inbox)[0]
    assert action(client, inbox, "INBOX", "delete", [key]).status_code == 303
    assert files(web, ALICE) == [] and files(web, ALICE, "Trash") == [f"{key}:2,"]
    trash = client.get("/Mail", params={"folder": "Trash"})
    assert subjects(trash) == ["old news"]
    action(client, trash, "Trash", "delete", [key])
    assert files(web, ALICE, "Trash") == []


def test_a_mailbox_made_before_the_special_folders_gets_them_on_first_use(web):
    deliver(web, "from an old mailbox")
    shutil.rmtree(web.mail.maildir(ALICE) / ".Trash")
    client = web.signed_in()
    inbox = client.get("/Mail")
    assert ">Trash</a>" in inbox.text
    key = keys(inbox)[0]
    action(client, inbox, "INBOX", "delete", [key])
    assert files(web, ALICE, "Trash") == [f"{key}:2,"]


def test_move_files_the_message_in_the_other_folder(web):
    deliver(web, "spam?")
    client = web.signed_in()
    inbox = client.get("/Mail")
    key = keys(inbox)[0]
    action(client, inbox, "INBOX", "move", [key], target="Junk")
    assert files(web, ALICE) == [] and files(web, ALICE, "Junk") == [f"{key}:2,"]
    assert subjects(client.get("/Mail", params={"folder": "Junk"})) == ["spam?"]


def test_read_and_unread_are_the_maildir_seen_flag(web):
    deliver(web, "flags")
    client = web.signed_in()
    inbox = client.get("/Mail")
    key = keys(inbox)[0]
    assert files(web, ALICE) == [key]  # new/, as delivered
    action(client, inbox, "INBOX", "read", [key])
    assert files(web, ALICE) == [f"{key}:2,S"]
    assert '<tr class="read">' in client.get("/Mail").text
    action(client, inbox, "INBOX", "unread", [key])
    assert files(web, ALICE) == [f"{key}:2,"]
    client.get("/Mail/Message", params={"folder": "INBOX", "id": key})  # opening reads it
    assert files(web, ALICE) == [f"{key}:2,S"]


def test_state_changing_posts_without_the_csrf_token_are_refused(web):
    deliver(web, "keep me")
    client = web.signed_in()
    inbox = client.get("/Mail")
    key = keys(inbox)[0]
    for token in ({}, {"csrf": "forged"}):
        refused = client.post("/Mail/Action", params=token, data={"folder": "INBOX", "action": "delete", "id": key})
        assert refused.status_code == 403
        refused = client.post("/Mail/Send", params=token, data={"to": BOB, "subject": "s", "body": "b"})
        assert refused.status_code == 403
    assert files(web, ALICE) == [key]
    web.mail.deliver()
    assert web.mail.messages(BOB) == []
    # Another user's token does not do either.
    other = web.signed_in(BOB)
    refused = client.post("/Mail/Action", params={"csrf": csrf(other.get("/Mail"))},
                          data={"folder": "INBOX", "action": "delete", "id": key})
    assert refused.status_code == 403 and files(web, ALICE) == [key]


def test_message_and_folder_names_cannot_leave_the_mailbox(web):
    client = web.signed_in()
    for params in ({"folder": "INBOX", "id": "../../../mailsrv.db"}, {"folder": "../..", "id": "x"},
                   {"folder": "INBOX", "id": ".."}):
        assert client.get("/Mail/Message", params=params).status_code == 404
    assert client.get("/Mail", params={"folder": "../../bob/Maildir"}).status_code == 404
