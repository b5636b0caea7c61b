"""Folder auto-clean: rules over SOAP (svcServerAdmin), applied by the periodic job to real Maildirs."""
from __future__ import annotations

import datetime as dt
import os

import pytest
from contract_clients import HttpClient, make_client, ok
from mailbox_support import MailboxHarness, mailbox  # noqa: F401  (the fixture: IMAP and POP3 too)
from smtp_support import ADMIN as SYSTEM_ADMIN
from smtp_support import DOMAIN
from web_support import web  # noqa: F401  (the fixture: SMTP, SOAP and a loopback DNS server)

from mailsrv.mailstore.disk_usage import used_bytes
from mailsrv.mailstore.folders import INBOX, Mailbox

ADMIN = {"authUsername": SYSTEM_ADMIN[0], "authPassword": SYSTEM_ADMIN[1]}
DOMAIN_ADMIN = {"authUsername": f"postmaster@{DOMAIN}", "authPassword": "Domain-pass-1"}
ALICE, BOB = f"alice@{DOMAIN}", f"bob@{DOMAIN}"
KB = 1024


def add_rule(c, folder: str, type_: str, before: int = 0, after: int = 0, days: int = 0, enabled: bool = True,
             auth: dict = ADMIN) -> dict:
    return c.call("svcServerAdmin", "AddFolderAutocleanRule", **auth, folder=folder, enableRule=enabled,
                  type=type_, sizeBeforeAutoClean=before, sizeAfterClean=after, mailAgeInDays=days)


def list_rules(c) -> list[dict]:
    return ok(c.call("svcServerAdmin", "ListFolderAutoCleanRules", **ADMIN))["Rules"] or []


def message(subject: str, size: int = 0) -> bytes:
    return f"From: x@example.org\r\nSubject: {subject}\r\n\r\n".encode() + b"x" * size + b"\r\n"


def subjects(mailbox: Mailbox, folder: str) -> list[str]:
    page = mailbox.page(folder, 1, 1000)
    return sorted(m.subject for m in page.messages)


@pytest.fixture
def c(web):
    return HttpClient(web.url, "GET")


def run_autoclean(mail) -> None:
    mail.server.autoclean.schedule()
    mail.server.jobs.run_until_idle("test-node")


def test_old_trash_goes_new_trash_and_the_inbox_stay(web, c):
    mail = web.mail
    now = mail.clock.now()
    alice, bob = Mailbox(mail.maildir(ALICE)), Mailbox(mail.maildir(BOB))
    for box in (alice, bob):
        box.add("Trash", message("old trash"), "S", now - dt.timedelta(days=40))
        box.add("Trash", message("recent trash"), "S", now - dt.timedelta(days=29))
        box.add(INBOX, message("old inbox"), "", now - dt.timedelta(days=400))
        box.add("Junk", message("old junk"), "", now - dt.timedelta(days=400))
    rule_id = ok(add_rule(c, "Deleted Items", "age", days=30))["Message"]
    assert list_rules(c) == [{"Enabled": True, "ID": rule_id, "SizeBeforeCleanInMB": 0, "SizeAfterCleanInMB": 0,
                              "MailAgeInDays": 30, "Type": "Age"}]
    usage = used_bytes(mail.maildir(ALICE))

    run_autoclean(mail)
    for box in (alice, bob):
        assert subjects(box, "Trash") == ["recent trash"]
        assert subjects(box, INBOX) == ["old inbox"] and subjects(box, "Junk") == ["old junk"]
    assert used_bytes(mail.maildir(ALICE)) < usage
    job = mail.server.jobs.latest("autoclean")
    assert (job.state, job.done, job.total) == ("Finished", 3, 3)  # postmaster, alice, bob

    # Periodic: not again before the interval ([autoclean] interval_minutes, 60) has passed.
    bob.add("Trash", message("older still"), "S", now - dt.timedelta(days=50))
    run_autoclean(mail)
    assert mail.server.jobs.latest("autoclean").id == job.id and "older still" in subjects(bob, "Trash")
    mail.clock.advance(dt.timedelta(minutes=61))
    run_autoclean(mail)
    assert mail.server.jobs.latest("autoclean").id != job.id
    assert subjects(bob, "Trash") == ["recent trash"]


def test_a_folder_over_its_size_loses_its_oldest_messages_until_under_the_target(web, c):
    mail = web.mail
    now = mail.clock.now()
    alice = Mailbox(mail.maildir(ALICE))
    for day in range(5):  # 5 x 300 KB: over 1 MB; the two oldest go to get down to 1 MB
        alice.add("Junk", message(f"junk {day}", 300 * KB), "", now - dt.timedelta(days=10 - day))
    small = Mailbox(mail.maildir(BOB))
    small.add("Junk", message("small", 100 * KB), "", now - dt.timedelta(days=30))
    ok(add_rule(c, "junk", "Size", before=1, after=1))
    run_autoclean(mail)
    assert subjects(alice, "Junk") == ["junk 2", "junk 3", "junk 4"]
    assert subjects(small, "Junk") == ["small"]  # under the limit: nothing goes


def test_a_disabled_rule_cleans_nothing_and_a_deleted_one_is_gone(web, c):
    mail = web.mail
    alice = Mailbox(mail.maildir(ALICE))
    alice.add("Trash", message("old"), "S", mail.clock.now() - dt.timedelta(days=90))
    rule_id = ok(add_rule(c, "Trash", "Age", days=1, enabled=False))["Message"]
    run_autoclean(mail)
    assert subjects(alice, "Trash") == ["old"] and mail.server.jobs.latest("autoclean") is None
    ok(c.call("svcServerAdmin", "DeleteFolderAutoCleanRule", **ADMIN, id=rule_id))
    assert list_rules(c) == []
    gone = c.call("svcServerAdmin", "DeleteFolderAutoCleanRule", **ADMIN, id=rule_id)
    assert gone["Result"] is False and gone["ResultCode"] == -36


@pytest.mark.parametrize("folder, type_, before, after, days, code", [
    ("INBOX", "Age", 0, 0, 30, -16), ("", "Age", 0, 0, 30, -16), ("Bad.", "Age", 0, 0, 30, -16),
    ("Trash", "Sometimes", 0, 0, 30, -16), ("Trash", "Age", 0, 0, 0, -13), ("Trash", "Age", 0, 0, -1, -13),
    ("Junk", "Size", 10, 11, 0, -13), ("Junk", "Size", 0, 0, 0, -13), ("Junk", "Size", 10, -1, 0, -13),
])
def test_bad_rules_are_refused_and_nothing_is_stored(web, c, folder, type_, before, after, days, code):
    result = add_rule(c, folder, type_, before, after, days)
    assert result["Result"] is False and result["ResultCode"] == code, result
    assert list_rules(c) == []


def test_one_rule_per_folder_and_type(web, c):
    ok(add_rule(c, "Trash", "Age", days=30))
    ok(add_rule(c, "Trash", "Size", before=100, after=50))
    again = add_rule(c, "trash", "age", days=7)
    assert again["Result"] is False and again["ResultCode"] == -45
    assert sorted(r["Type"] for r in list_rules(c)) == ["Age", "Size"]


def test_only_system_administrators_manage_rules(web, c):
    rule_id = ok(add_rule(c, "Trash", "Age", days=30))["Message"]
    for auth in (DOMAIN_ADMIN, {"authUsername": ALICE, "authPassword": "User-pass-123"}):
        for operation, params in (("AddFolderAutocleanRule", dict(folder="Junk", enableRule=True, type="Age",
                                                                  sizeBeforeAutoClean=0, sizeAfterClean=0,
                                                                  mailAgeInDays=1)),
                                  ("DeleteFolderAutoCleanRule", {"id": rule_id}), ("ListFolderAutoCleanRules", {})):
            result = c.call("svcServerAdmin", operation, **auth, **params)
            assert result["Result"] is False and result["ResultCode"] == -5, (operation, result)
    assert [r["ID"] for r in list_rules(c)] == [rule_id]


def test_a_mailbox_without_the_folder_is_left_as_it_is(web, c):
    mail = web.mail
    trash = mail.maildir(ALICE) / ".Trash"
    for part in ("cur", "new", "tmp"):
        os.rmdir(trash / part)
    os.rmdir(trash)
    ok(add_rule(c, "Trash", "Age", days=1))
    run_autoclean(mail)
    assert not trash.exists()
    assert mail.server.jobs.latest("autoclean").state == "Finished"


def test_an_imap_session_sees_the_cleaned_messages_vanish(mailbox: MailboxHarness) -> None:
    now = mailbox.clock.now()
    box = Mailbox(mailbox.maildir(ALICE))
    box.add("Trash", message("old"), "S", now - dt.timedelta(days=40))
    box.add("Trash", message("recent"), "S", now - dt.timedelta(days=2))
    client = mailbox.imap()
    assert client.select("Trash") == ("OK", [b"2"])
    mailbox.server.autoclean.add(mailbox.admin(), "Trash", True, "Age", 0, 0, 30)
    run_autoclean(mailbox)
    typ, data = client.noop()
    assert typ == "OK"
    typ, data = client.uid("SEARCH", "ALL")
    assert data == [b"2"]  # the old one (UID 1) is gone, the recent one keeps its UID
    typ, data = client.status("Trash", "(MESSAGES)")
    assert b"MESSAGES 1" in data[0]
    client.logout()


@pytest.mark.parametrize("kind", ["soap11", "soap12"])
def test_rules_over_soap(web, kind):
    client = make_client(kind, web.url)
    rule_id = ok(client.call("svcServerAdmin", "AddFolderAutocleanRule", **ADMIN, folder="Junk E-Mail",
                             enableRule=True, type="Size", sizeBeforeAutoClean=500, sizeAfterClean=400,
                             mailAgeInDays=0))["Message"]
    rules = ok(client.call("svcServerAdmin", "ListFolderAutoCleanRules", **ADMIN))["Rules"]
    assert rules == [{"Enabled": True, "ID": rule_id, "SizeBeforeCleanInMB": 500, "SizeAfterCleanInMB": 400,
                      "MailAgeInDays": 0, "Type": "Size"}]
    ok(client.call("svcServerAdmin", "DeleteFolderAutoCleanRule", **ADMIN, id=rule_id))
    assert not ok(client.call("svcServerAdmin", "ListFolderAutoCleanRules", **ADMIN))["Rules"]
