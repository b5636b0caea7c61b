"""The billed domain limits over real SMTP sockets (mailsrv.directory.domain_limits, mailsrv.mta.intake):
messages and bandwidth per hour of the domain's authenticated users, bounces received per hour, the
domain's disk quota; exact caps, the next hour, two nodes on one database, the `…enabled` flags;
and who may change them over SOAP."""
from __future__ import annotations

import concurrent.futures
import datetime as dt
import smtplib
from collections.abc import Iterator

import httpx
import pytest
from smtp_support import ADMIN as SYSTEM_ADMIN, DOMAIN, MailHarness, two_nodes
from mailbox_support import mailbox  # noqa: F401  (the fixture)
from smtp_support import mail  # noqa: F401  (the fixture)
from web_support import csrf
from web_support import web  # noqa: F401  (the fixture: SMTP, SOAP and a loopback DNS server)

from contract_clients import HttpClient
from mailsrv.directory.domain_limits import Charge, HourlyCaps, Limit, Usage, hour_of

MSG = b"Subject: limits\r\n\r\nhello\r\n"
HOUR = dt.timedelta(hours=1)


def limit(node: MailHarness, *assignments: str) -> None:
    node.server.domains.set_requested_settings(node.admin(), DOMAIN, list(assignments))


def attempt(smtp: smtplib.SMTP, sender: str, recipient: str, content: bytes = MSG,
            options: tuple[str, ...] = ()) -> tuple[str, int, str]:
    """MAIL, RCPT, DATA as far as they go: (the step that ended it, its code, its text)."""
    smtp.ehlo()
    steps = (("MAIL", lambda: smtp.mail(sender, list(options))), ("RCPT", lambda: smtp.rcpt(recipient)),
             ("DATA", lambda: smtp.data(content)))
    for step, run in steps:
        code, text = run()
        if code != 250 or step == "DATA":
            smtp.rset()
            return step, code, text.decode()
    raise AssertionError("unreachable")


def as_alice(node: MailHarness, recipient: str = "bob@a.test", content: bytes = MSG,
             options: tuple[str, ...] = ()) -> tuple[str, int, str]:
    with node.authenticated("alice@a.test") as smtp:
        return attempt(smtp, "alice@a.test", recipient, content, options)


def bounce(node: MailHarness, recipient: str = "alice@a.test") -> tuple[str, int, str]:
    with node.client() as smtp:
        return attempt(smtp, "<>", recipient)


ACCEPTED = ("DATA", 250)


# -- the pure rule ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("caps", "used", "charge", "crossed"), [
    (HourlyCaps(messages=3), Usage(2), dict(messages_sent=1), None),  # the third of three
    (HourlyCaps(messages=3), Usage(3), dict(messages_sent=1), Limit.MESSAGES),  # the fourth
    (HourlyCaps(messages=0), Usage(10**6), dict(messages_sent=1), None),  # off
    (HourlyCaps(bytes_sent=100), Usage(0, 60), dict(messages_sent=1, bytes_sent=40), None),  # exactly full
    (HourlyCaps(bytes_sent=100), Usage(0, 60), dict(messages_sent=1, bytes_sent=41), Limit.BANDWIDTH),
    (HourlyCaps(bounces=1), Usage(5, 5, 0), dict(bounces_received=1), None),  # sending does not count
    (HourlyCaps(bounces=1), Usage(0, 0, 1), dict(bounces_received=1), Limit.BOUNCES),
    (HourlyCaps(messages=1), Usage(1), dict(bounces_received=1), None),  # a bounce is not a message sent
])
def test_a_charge_crosses_a_cap_only_when_it_would_take_the_hour_over_it(caps, used, charge, crossed):
    assert Charge("a.test", 1, caps, **charge).crossed(used) is crossed


def test_hours_are_utc_hours_since_the_epoch():
    start = dt.datetime(2026, 3, 10, 9, 0, tzinfo=dt.timezone.utc)
    assert hour_of(start) == hour_of(start + dt.timedelta(minutes=59, seconds=59)) != hour_of(start + HOUR)
    assert hour_of(start.astimezone(dt.timezone(dt.timedelta(hours=5)))) == hour_of(start)


# -- over SMTP ---------------------------------------------------------------------------------

def test_messages_per_hour_exact_cap_then_the_next_hour(mail):
    limit(mail, "maxmessagesperhour=3", "maxmessagesperhourenabled=True")
    for _ in range(3):
        assert as_alice(mail)[:2] == ACCEPTED
    step, code, text = as_alice(mail)
    assert (step, code) == ("MAIL", 451) and text == "4.7.1 Domain a.test has reached its message limit per hour (3)"
    assert as_alice(mail, "someone@remote.test")[:2] == ("MAIL", 451)  # whatever the recipient
    # Mail to the domain and from unauthenticated senders is not the domain's sending.
    with mail.client() as smtp:
        assert attempt(smtp, "ext@example.org", "alice@a.test")[:2] == ACCEPTED
    assert len(mail.messages("bob@a.test")) == 3
    mail.clock.advance(HOUR)
    assert as_alice(mail)[:2] == ACCEPTED
    assert len(mail.messages("bob@a.test")) == 4


def test_the_last_slot_goes_to_one_of_two_open_transactions_and_the_other_is_refused_at_data(mail):
    limit(mail, "maxmessagesperhour=2", "maxmessagesperhourenabled=True")
    assert as_alice(mail)[:2] == ACCEPTED
    with mail.authenticated("alice@a.test") as one, mail.authenticated("alice@a.test") as two:
        for smtp in (one, two):  # both pass MAIL and RCPT while one slot is left
            smtp.ehlo()
            assert smtp.mail("alice@a.test")[0] == 250 and smtp.rcpt("bob@a.test")[0] == 250
        assert one.data(MSG)[0] == 250
        code, text = two.data(MSG)
    assert (code, text.decode()) == (451, "4.7.1 Domain a.test has reached its message limit per hour (2)")
    assert len(mail.messages("bob@a.test")) == 2  # the refused one left nothing behind
    assert not list((mail.maildir("bob@a.test") / "tmp").iterdir())


def test_bandwidth_per_hour_counts_the_bytes_sent(mail):
    limit(mail, "maxsmtpoutbandwidthperhour=1", "maxsmtpoutbandwidthperhourenabled=True")
    big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 400  # ~400 KB
    assert as_alice(mail, content=big)[:2] == ACCEPTED
    assert as_alice(mail, content=big)[:2] == ACCEPTED
    # Would cross 1 MB: refused once its size is known, and nothing of it is spooled.
    step, code, text = as_alice(mail, "someone@remote.test", content=big)
    assert (step, code) == ("DATA", 451)
    assert text == "4.7.1 Domain a.test has reached its outgoing bandwidth limit per hour (1 MB)"
    assert mail.spool_rows() == [] and not list((mail.data_dir / "spool").iterdir())
    # With SIZE declared the refusal comes before the upload.
    assert as_alice(mail, content=big, options=(f"SIZE={len(big)}",))[:2] == ("MAIL", 451)
    assert as_alice(mail)[:2] == ACCEPTED  # a small one still fits
    assert len(mail.messages("bob@a.test")) == 3
    mail.clock.advance(HOUR)
    assert as_alice(mail, content=big)[:2] == ACCEPTED


def test_bounces_received_per_hour(mail):
    limit(mail, "maxbouncesreceivedperhour=2", "maxbouncesreceivedperhourenabled=True")
    assert bounce(mail)[:2] == ACCEPTED
    assert bounce(mail, "bob@a.test")[:2] == ACCEPTED
    step, code, text = bounce(mail)
    assert (step, code) == ("RCPT", 450)
    assert text == "4.7.1 Domain a.test has reached its limit of bounces received per hour (2)"
    with mail.client() as smtp:  # mail with a sender is not a bounce
        assert attempt(smtp, "ext@example.org", "alice@a.test")[:2] == ACCEPTED
    mail.clock.advance(HOUR)
    assert bounce(mail)[:2] == ACCEPTED


def test_a_disabled_flag_means_no_limit(mail):
    limit(mail, "maxmessagesperhour=1", "maxsmtpoutbandwidthperhour=1", "maxbouncesreceivedperhour=1")
    for _ in range(3):
        assert as_alice(mail, content=MSG * 30000)[:2] == ACCEPTED  # ~0.9 MB each
        assert bounce(mail)[:2] == ACCEPTED
    # And enabled with 0 is unlimited, as every 0 limit is.
    limit(mail, "maxmessagesperhour=0", "maxmessagesperhourenabled=True")
    assert as_alice(mail)[:2] == ACCEPTED


def test_domain_disk_quota_at_rcpt_and_at_data(mail):
    limit(mail, "maxsize=64")  # KB
    half = b"Subject: half\r\n\r\n" + (b"y" * 998 + b"\r\n") * 36  # ~36 KB
    with mail.client() as smtp:
        assert attempt(smtp, "ext@example.org", "alice@a.test", half)[:2] == ACCEPTED
        step, code, text = attempt(smtp, "ext@example.org", "bob@a.test", half)  # would cross it
        assert (step, code, text) == ("DATA", 452, "4.2.2 Domain a.test is over its disk quota (64 KB)")
        # Declared with SIZE: refused at RCPT.
        assert attempt(smtp, "ext@example.org", "bob@a.test", half, (f"SIZE={len(half)}",))[:2] == ("RCPT", 452)
        assert attempt(smtp, "ext@example.org", "bob@a.test")[:2] == ACCEPTED  # a small one fits
    limit(mail, "maxsize=16")  # now over it: refused at RCPT whatever the size
    with mail.client() as smtp:
        assert attempt(smtp, "ext@example.org", "bob@a.test") == (
            "RCPT", 452, "4.2.2 Domain a.test is over its disk quota (16 KB)")
    assert len(mail.messages("bob@a.test")) == 1 and len(mail.messages("alice@a.test")) == 1
    limit(mail, "maxsize=0")
    with mail.client() as smtp:
        assert attempt(smtp, "ext@example.org", "bob@a.test", half)[:2] == ACCEPTED


def test_the_web_interface_counts_towards_the_same_cap(web):
    limit(web.mail, "maxmessagesperhour=2", "maxmessagesperhourenabled=True")
    client = web.signed_in()

    def send_from_the_web() -> httpx.Response:
        return client.post("/Mail/Send", params={"csrf": csrf(client.get("/Mail/Compose"))},
                           data={"to": "bob@a.test", "subject": "from the web", "body": "hello"})

    assert as_alice(web.mail)[:2] == ACCEPTED
    assert send_from_the_web().status_code < 400
    refused = send_from_the_web()
    assert refused.status_code == 400
    assert "Not sent: Domain a.test has reached its message limit per hour (2)." in refused.text
    assert as_alice(web.mail)[:2] == ("MAIL", 451)
    assert len(web.mail.messages("bob@a.test")) == 2


def test_imap_append_is_refused_over_the_domain_quota(mailbox):
    half = b"Subject: half\r\n\r\n" + (b"y" * 998 + b"\r\n") * 36  # ~36 KB
    imap = mailbox.imap()
    try:
        assert imap.append("INBOX", None, None, half)[0] == "OK"  # no quota yet
        limit(mailbox, "maxsize=64")  # KB: applies to the open session
        status, detail = imap.append("INBOX", None, None, half)
        assert (status, detail) == ("NO", [b"[OVERQUOTA] Domain a.test is over its disk quota (64 KB)"])
        assert imap.append("INBOX", None, None, MSG)[0] == "OK"  # a small one fits
    finally:
        imap.logout()


# -- two nodes on one database ---------------------------------------------------------------------

@pytest.fixture
def nodes(tmp_path) -> Iterator[tuple[MailHarness, MailHarness]]:
    yield from two_nodes(tmp_path)


def test_the_hourly_caps_are_counted_across_nodes(nodes):
    first, second = nodes
    limit(second, "maxmessagesperhour=3", "maxmessagesperhourenabled=True",
          "maxbouncesreceivedperhour=2", "maxbouncesreceivedperhourenabled=True")
    assert as_alice(first)[:2] == ACCEPTED
    assert as_alice(second)[:2] == ACCEPTED
    assert bounce(first)[:2] == ACCEPTED
    # Both nodes have passed MAIL with one message slot left; the commit gives it to one of them.
    with first.authenticated("alice@a.test") as one, second.authenticated("alice@a.test") as two:
        for smtp in (one, two):
            smtp.ehlo()
            assert smtp.mail("alice@a.test")[0] == 250 and smtp.rcpt("bob@a.test")[0] == 250
        assert two.data(MSG)[0] == 250
        assert one.data(MSG)[0] == 451
    assert as_alice(first)[:2] == as_alice(second)[:2] == ("MAIL", 451)
    assert bounce(second)[:2] == ACCEPTED
    assert bounce(first)[:2] == bounce(second)[:2] == ("RCPT", 450)
    first.clock.advance(HOUR)  # one clock for both
    assert as_alice(second)[:2] == bounce(first)[:2] == ACCEPTED
    assert len(first.messages("bob@a.test")) == 4


def test_concurrent_senders_on_two_nodes_get_exactly_the_cap(nodes):
    first, second = nodes
    limit(first, "maxmessagesperhour=5", "maxmessagesperhourenabled=True")

    def send_one(node: MailHarness) -> int:
        return as_alice(node)[1]

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(send_one, [first, second] * 6))
    assert sorted(codes) == [250] * 5 + [451] * 7
    assert len(first.messages("bob@a.test")) == 5
    assert as_alice(second)[:2] == ("MAIL", 451)


# -- who may change them (SOAP) --------------------------------------------------------------------

SOAP_ADMIN = {"AuthUserName": SYSTEM_ADMIN[0], "AuthPassword": SYSTEM_ADMIN[1]}
PRIMARY = {"AuthUserName": f"postmaster@{DOMAIN}", "AuthPassword": "Domain-pass-1"}
BILLED = ["maxsize=1024", "maxmessagesperhour=10", "maxmessagesperhourenabled=True",
          "maxsmtpoutbandwidthperhour=5", "maxsmtpoutbandwidthperhourenabled=True",
          "maxbouncesreceivedperhour=3", "maxbouncesreceivedperhourenabled=True"]
KEYS = [item.split("=")[0] for item in BILLED]


def result(answer: dict) -> tuple[bool, int, str]:
    return answer["Result"], answer["ResultCode"], answer.get("Message", "")


def test_only_a_system_administrator_changes_the_billed_limits(web):
    c = HttpClient(web.url, "GET")

    def current() -> list[str]:
        return c.call("svcDomainAdmin", "GetRequestedDomainSettings", **SOAP_ADMIN, DomainName=DOMAIN,
                      requestedSettings=KEYS)["settingValues"]

    before = current()
    assert before == ["maxsize=0", "maxmessagesperhour=0", "maxmessagesperhourenabled=False",
                      "maxsmtpoutbandwidthperhour=0", "maxsmtpoutbandwidthperhourenabled=False",
                      "maxbouncesreceivedperhour=0", "maxbouncesreceivedperhourenabled=False"]
    for item in BILLED:  # each key alone, beside one the domain administrator may change: nothing applied
        ok, code, message = result(c.call("svcDomainAdmin", "SetRequestedDomainSettings", **PRIMARY,
                                          DomainName=DOMAIN, newSettings=["listcommandaddress=lists", item]))
        assert (ok, code) == (False, -5) and f"'{item.split('=')[0]}'" in message, message
    ok, code, _ = result(c.call("svcDomainAdmin", "UpdateDomain", **PRIMARY, DomainName=DOMAIN, ServerIP="",
                                ImapPort=143, PopPort=110, SmtpPort=25, MaxAliases=0, MaxDomainSizeInMB=1,
                                MaxDomainUsers=0, MaxMailboxSizeInMB=0, MaxMessageSize=25600, MaxRecipients=200,
                                MaxDomainAliases=0, MaxLists=0, ShowDomainAliasMenu=True,
                                ShowContentFilteringMenu=True, ShowSpamMenu=True, ShowStatsMenu=True,
                                RequireSmtpAuthentication=True, ShowListMenu=True, ListCommandAddress=""))
    assert (ok, code) == (False, -5)
    ok, code, _ = result(c.call("svcDomainAdmin", "SetRequestedDomainDefaults", **PRIMARY,
                                newSettings=["defaultmaxmessagesperhour=0"]))
    assert (ok, code) == (False, -5)
    assert current() == before
    assert c.call("svcDomainAdmin", "GetRequestedDomainSettings", **SOAP_ADMIN, DomainName=DOMAIN,
                  requestedSettings=["listcommandaddress"])["settingValues"] == ["listcommandaddress=stserv"]

    # The system administrator may; the domain administrator may then echo them unchanged.
    assert result(c.call("svcDomainAdmin", "SetRequestedDomainSettings", **SOAP_ADMIN, DomainName=DOMAIN,
                         newSettings=BILLED))[0] is True
    assert current() == BILLED
    assert result(c.call("svcDomainAdmin", "SetRequestedDomainSettings", **PRIMARY, DomainName=DOMAIN,
                         newSettings=[*BILLED, "listcommandaddress=lists"]))[0] is True
    # Lowering is a change too: only the system administrator grants.
    ok, code, message = result(c.call("svcDomainAdmin", "SetRequestedDomainSettings", **PRIMARY,
                                      DomainName=DOMAIN, newSettings=["maxmessagesperhourenabled=False"]))
    assert (ok, code) == (False, -5) and "'maxmessagesperhourenabled'" in message
    assert current() == BILLED
