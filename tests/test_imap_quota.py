"""IMAP QUOTA (RFC 9208): the figures svcUserAdmin's GetUserQuotas gives, over a real IMAP session."""
from __future__ import annotations

import imaplib
from collections.abc import Iterator

import pytest
from contract_clients import HttpClient, ok
from mailbox_support import ALICE, BOB, MailboxHarness, mailbox  # noqa: F401  (the fixture)
from smtp_support import ADMIN, DOMAIN
from web_support import WebHarness


@pytest.fixture
def soap(mailbox: MailboxHarness) -> Iterator[HttpClient]:  # noqa: F811
    web = WebHarness(mailbox)
    try:
        yield HttpClient(web.url, "POST")
    finally:
        web.stop()


def user_quotas(soap: HttpClient) -> dict[str, tuple[int, int]]:
    """GetUserQuotas: user name -> (MaxSpace, CurrentSpace) in bytes."""
    result = ok(soap.call("svcUserAdmin", "GetUserQuotas", AuthUserName=ADMIN[0], AuthPassword=ADMIN[1],
                          DomainName=DOMAIN))
    return {u["UserName"]: (u["MaxSpace"], u["CurrentSpace"]) for u in result["Users"]}


def untagged(client: imaplib.IMAP4, name: str) -> list[bytes]:
    return [line for line in client.untagged_responses.pop(name, []) if line is not None]


def test_getquotaroot_answers_what_getuserquotas_says_after_known_bytes(mailbox, soap):  # noqa: F811
    ok(soap.call("svcUserAdmin", "SetRequestedUserSettings", AuthUserName=ADMIN[0], AuthPassword=ADMIN[1],
                 EmailAddress=ALICE, newSettings=["maxsize=250"]))
    body = b"x" * 70 + b"\r\n"
    for n in range(40):  # ~100 KB in all, so the KiB figure is far from zero
        mailbox.deliver_to(ALICE, b"Subject: quota %d\r\n\r\n" % n + body * 35)
    client = mailbox.imap()
    try:
        typ, data = client.capability()
        assert b"QUOTA" in data[0].split() and b"QUOTA=RES-STORAGE" in data[0].split()
        # Opening the mailbox writes its index files (uidlist), which count too: compare after.
        assert client.select("INBOX")[0] == "OK"
        max_bytes, used_bytes = user_quotas(soap)["alice"]
        assert max_bytes == 250 * 1024 * 1024 and used_bytes > 100 * 1024
        storage = b'"" (STORAGE %d %d)' % (used_bytes // 1024, max_bytes // 1024)
        assert client.getquotaroot("INBOX") == ("OK", [[b'INBOX ""'], [storage]])
        assert client.getquota('""') == ("OK", [storage])

        # One more message: both answers move together.
        mailbox.deliver_to(ALICE, b"Subject: one more\r\n\r\n" + body * 400)
        assert client.noop()[0] == "OK"  # the session sees it (and indexes it)
        _max, used_after = user_quotas(soap)["alice"]
        assert used_after > used_bytes + 28_000
        assert client.getquota('""') == ("OK", [b'"" (STORAGE %d %d)' % (used_after // 1024, max_bytes // 1024)])
    finally:
        client.logout()


def test_an_unlimited_mailbox_lists_no_resource(mailbox, soap):  # noqa: F811
    assert user_quotas(soap)["bob"][0] == 0  # no maxsize, and the domain's maxmailboxsize is unlimited
    client = mailbox.imap(BOB)
    try:
        assert client.getquotaroot("INBOX") == ("OK", [[b'INBOX ""'], [b'"" ()']])
    finally:
        client.logout()


def test_setquota_is_refused_and_unknown_roots_and_folders_are_no(mailbox):  # noqa: F811
    client = mailbox.imap()
    try:
        typ, data = client.setquota('""', "(STORAGE 1)")
        assert typ == "NO" and b"administrator" in data[0]
        assert client.getquota('"other"')[0] == "NO"
        assert client.getquotaroot("Nonexistent")[0] == "NO"
        assert client.getquotaroot("Sent")[0] == "OK"
    finally:
        client.logout()


def test_quota_commands_need_a_login(mailbox):  # noqa: F811
    client = mailbox.imap(login=None)
    try:
        assert client.capability()[0] == "OK"
        # imaplib refuses to send it before login: on the wire.
        client.send(b"q1 GETQUOTAROOT INBOX\r\n")
        assert client.readline() == b"q1 BAD GETQUOTAROOT: Must authenticate first.\r\n"
    finally:
        client.logout()
