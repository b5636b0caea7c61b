"""The list server over real sockets: posts reach subscribers on two local domains and a peer with the
list's headers, who may post (subscribers only, whitelist, kill list), bounces disabling a subscriber,
moderation by reply, expiry of held posts, and no loops."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import email.utils
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from contract_clients import ZeepClient, ok
from smtp_peer import Peer, remote_config
from smtp_support import ADMIN as SYSTEM_ADMIN
from smtp_support import DOMAIN, MailHarness, make_harness, send
from sqlalchemy import select
from web_support import WebHarness

from mailsrv.directory.domains import get_domain
from mailsrv.mailstore.disk import FAULT_POINT_VARIABLE
from mailsrv.mta.list_commands import OneClick
from mailsrv.mta.list_server import BOUNCE_THRESHOLD, TAKEN, ListRules, rewrite
from mailsrv.mta.recipients import POST, DomainInfo, ListAddress
from mailsrv.store.models import (
    KILLLIST,
    SUBSCRIBER,
    WHITELIST,
    ListHold,
    ListMember,
    MailingList,
)

OTHER = "b.test"
POST_TEXT = (b"From: Olga Outside <olga@elsewhere.example>\r\nTo: team@a.test\r\nSubject: Hello all\r\n"
             b"Message-ID: <p1@elsewhere.example>\r\n\r\nA post.\r\n")


@pytest.fixture
def mail(tmp_path, port) -> Iterator[MailHarness]:
    for harness in make_harness(tmp_path, remote_config(port)):
        harness.dns.add({("peer.test", "MX"): ["10 mx1.peer.test."], ("mx1.peer.test", "A"): ["127.0.0.1"]})
        harness.server.domains.add(harness.admin(), OTHER, "", "postmaster", "Domain-pass-1", "", "", {})
        harness.add_user(OTHER, "carol")
        yield harness


@pytest.fixture
def peer(port) -> Iterator[Peer]:
    peer = Peer("127.0.0.1", port)
    yield peer
    peer.stop()


def make_list(mail: MailHarness, moderator: str = "", members: dict[str, list[str]] | None = None,
              **keys: object) -> int:
    members = members if members is not None else {
        SUBSCRIBER: ["alice@a.test", "carol@b.test", "friend@peer.test"]}
    with mail.server.store.session() as s:
        team = MailingList(domain_id=get_domain(s, DOMAIN).id, name="team", moderator=moderator,
                           description="The team", settings={"whocanpost": "anyone", **keys})
        s.add(team)
        s.flush()
        for kind, addresses in members.items():
            s.add_all(ListMember(list_id=team.id, kind=kind, address=a) for a in addresses)
        return team.id


def parsed(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def post(mail: MailHarness, sender: str, content: bytes = POST_TEXT, to: str = "team@a.test") -> tuple[int, bytes]:
    """The answer to RCPT, or to DATA when RCPT was accepted."""
    with mail.client() as smtp:
        smtp.ehlo()
        assert smtp.mail(sender)[0] == 250
        code, reply = smtp.rcpt(to)
        if code != 250:
            return code, reply
        return smtp.data(content)


def member(mail: MailHarness, address: str) -> ListMember:
    with mail.server.store.session() as s:
        row = s.execute(select(ListMember).where(ListMember.address == address,
                                                 ListMember.kind == SUBSCRIBER)).scalar_one()
        s.expunge(row)
        return row


def test_a_post_reaches_every_subscriber_with_the_list_headers(mail, peer):
    make_list(mail, prependsubject=True, subject="[Team]", replytolist=True, listreplytoaddress="LISTADDRESS")
    assert post(mail, "olga@elsewhere.example")[0] == 250
    mail.deliver()
    for address in ("alice@a.test", "carol@b.test"):
        [raw] = mail.messages(address)
        assert re.match(rb"Return-Path: <team-bounces\+[a-z2-7.]+@a\.test>\r\n", raw)  # this copy's VERP address
        m = parsed(raw)
        assert m["Subject"] == "[Team] Hello all"
        assert m["Reply-To"] == "team@a.test"
        assert m["From"] == "Olga Outside <olga@elsewhere.example>"
        assert m["List-Id"] == "The team <team.a.test>"
        assert m["List-Post"] == "<mailto:team@a.test>"
        assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        mailto, url = [v.strip(" <>") for v in m["List-Unsubscribe"].split(",")]
        assert mailto == "mailto:team-unsubscribe@a.test"
        assert url.startswith("https://a.test/List/Unsubscribe?token=")
        # Each copy's link takes off its own subscriber.
        assert mail.server.one_click.check(url.partition("?token=")[2]) == OneClick("team@a.test", address, True)
        assert m["Precedence"] == "list" and m["X-Loop"] == "team@a.test"
        assert m.get_content().strip() == "A post."
    [arrival] = peer.arrivals
    assert arrival.sender.startswith("team-bounces+") and arrival.recipients == ["friend@peer.test"]
    assert parsed(arrival.content)["Subject"] == "[Team] Hello all"
    assert mail.spool_rows() == []


def test_a_list_built_over_soap_as_a_panel_does_receives_a_post(mail, peer):
    """svcMailListAdmin as SolidCP calls it (bare name, then the full address), then a post over SMTP:
    the three subscribers on two local domains and a remote one each get it with the list headers."""
    web = WebHarness(mail)
    try:
        c = ZeepClient(web.url)
        auth = {"AuthUserName": SYSTEM_ADMIN[0], "AuthPassword": SYSTEM_ADMIN[1], "DomainName": DOMAIN}
        ok(c.call("svcMailListAdmin", "AddList", **auth, ListName="crew", Moderator="", Description="The crew"))
        ok(c.call("svcMailListAdmin", "SetRequestedListSettings", **auth, ListName="crew@a.test",
                  newSettings=["whocanpost=subscribersonly", "prependsubject=True", "subject=[Crew]",
                               "password="]))
        ok(c.call("svcMailListAdmin", "SetSubscriberList", **auth, ListName="crew@a.test",
                  Subscribers=["alice@a.test", "carol@b.test", "friend@peer.test"]))
    finally:
        web.stop()
    assert post(mail, "olga@elsewhere.example", to="crew@a.test")[0] == 550  # not a subscriber
    with mail.authenticated("carol@b.test") as smtp:  # a subscriber posts, logged in as her domain requires
        send(smtp, "carol@b.test", ["crew@a.test"],
             b"From: Carol <carol@b.test>\r\nTo: crew@a.test\r\nSubject: Hello all\r\n\r\nA post.\r\n")
    mail.deliver()
    for address in ("alice@a.test", "carol@b.test"):
        [raw] = mail.messages(address)
        m = parsed(raw)
        assert m["Subject"] == "[Crew] Hello all" and m["List-Id"] == "The crew <crew.a.test>"
        assert m["List-Post"] == "<mailto:crew@a.test>" and m["Precedence"] == "list"
    [arrival] = peer.arrivals
    assert arrival.recipients == ["friend@peer.test"] and parsed(arrival.content)["X-Loop"] == "crew@a.test"


def member_list(mail: MailHarness) -> int:
    with mail.server.store.session() as s:
        return s.execute(select(MailingList.id)).scalar_one()


def test_subscribers_only_refuses_others_and_honours_the_whitelist_and_kill_list(mail, peer):
    make_list(mail, whocanpost="subscribersonly",
              members={SUBSCRIBER: ["alice@a.test", "friend@peer.test"], WHITELIST: ["wanda@elsewhere.example"],
                       KILLLIST: ["friend@peer.test"]})
    code, reply = post(mail, "olga@elsewhere.example")
    assert code == 550 and b"only subscribers may post" in reply
    code, reply = post(mail, "friend@peer.test")  # subscribed, but on the kill list
    assert code == 550 and b"not allowed to post" in reply
    assert post(mail, "wanda@elsewhere.example")[0] == 250
    mail.deliver()
    assert len(mail.messages("alice@a.test")) == 1


def test_a_new_list_answers_for_the_next_transaction(mail):
    code, reply = post(mail, "olga@elsewhere.example")  # the unknown answer is cached...
    assert code == 550 and b"no such user" in reply
    make_list(mail)  # ...until mailing_lists raises the directory generation
    assert post(mail, "olga@elsewhere.example")[0] == 250


def test_disabled_list_and_size_cap(mail):
    make_list(mail, maxmessagesize=1)
    code, reply = post(mail, "olga@elsewhere.example", POST_TEXT + b"".join([b"y" * 70 + b"\r\n"] * 30))
    assert code == 552
    with mail.server.store.session() as s:
        s.execute(MailingList.__table__.update().values(settings={"disabled": True}))
    assert post(mail, "olga@elsewhere.example")[0] == 550


def test_password_in_the_subject_is_required_and_removed(mail):
    make_list(mail, members={SUBSCRIBER: ["alice@a.test"]}, requirepassword=True, password="s3cret")
    code, reply = post(mail, "olga@elsewhere.example")
    assert code == 550 and b"requires its password" in reply
    assert post(mail, "olga@elsewhere.example", POST_TEXT.replace(b"Subject: ", b"Subject: [s3cret] "))[0] == 250
    mail.deliver()
    [raw] = mail.messages("alice@a.test")
    assert parsed(raw)["Subject"] == "Hello all"


def dsn(recipient: str, status: str = "5.1.1") -> bytes:
    return (b"From: MAILER-DAEMON@peer.test\r\nTo: team-bounces@a.test\r\nSubject: Undelivered\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n"
            b"--b\r\nContent-Type: text/plain\r\n\r\nFailed.\r\n"
            b"--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; peer.test\r\n\r\n"
            + f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: {status}\r\n".encode()
            + b"\r\n--b--\r\n")


def test_a_bouncing_subscriber_is_disabled_after_the_threshold(mail, peer):
    make_list(mail)
    with mail.client() as smtp:
        send(smtp, "", ["team-bounces@a.test"], dsn("friend@peer.test", "4.4.1").replace(b"failed", b"delayed"))
        for _ in range(BOUNCE_THRESHOLD - 2):
            send(smtp, "", ["team-bounces@a.test"], dsn("friend@peer.test"))
        assert not member(mail, "friend@peer.test").disabled
        send(smtp, "", ["team-bounces+friend=peer.test@a.test"], b"Subject: VERP bounce\r\n\r\nGone.\r\n")
    state = member(mail, "friend@peer.test")
    assert state.bounces == BOUNCE_THRESHOLD - 2 and not state.disabled  # an unsigned tag names nobody
    with mail.client() as smtp:
        send(smtp, "", ["team-bounces@a.test"], dsn("friend@peer.test"))
    with mail.client() as smtp:
        send(smtp, "", ["team-bounces@a.test"], dsn("friend@peer.test"))
    assert member(mail, "friend@peer.test").disabled
    assert post(mail, "olga@elsewhere.example")[0] == 250
    mail.deliver()
    assert peer.arrivals == [] and len(mail.messages("alice@a.test")) == 1


def test_each_remote_copy_is_its_own_transaction_with_its_own_sender(mail, peer):
    """Two subscribers at one remote domain: two transactions (the envelope senders differ), each copy
    with its subscriber's List-Unsubscribe, and with `listtoaddress` SUBSCRIBERADDRESS its To."""
    make_list(mail, members={SUBSCRIBER: ["friend@peer.test", "other@peer.test"]}, listtoaddress="SUBSCRIBERADDRESS")
    assert post(mail, "olga@elsewhere.example")[0] == 250
    mail.deliver()
    arrivals = sorted(peer.arrivals, key=lambda a: a.recipients)
    assert [a.recipients for a in arrivals] == [["friend@peer.test"], ["other@peer.test"]]
    assert len({a.sender for a in arrivals}) == 2 and all(a.sender.startswith("team-bounces+") for a in arrivals)
    links = [parsed(a.content)["List-Unsubscribe"] for a in arrivals]
    assert links[0] != links[1]
    assert [parsed(a.content).get_all("To") for a in arrivals] == [["friend@peer.test"], ["other@peer.test"]]
    for arrival, link in zip(arrivals, links):
        token = link.split(",")[1].strip(" <>").partition("?token=")[2]
        assert mail.server.one_click.check(token).address == arrival.recipients[0]
    assert mail.spool_rows() == []


def test_a_plain_bounce_to_a_copys_verp_address_counts_for_its_subscriber(mail, peer):
    """A broken MTA's "undeliverable" text names nobody; the copy's own envelope sender does, even
    with its local part lower- or upper-cased on the way; a forged or other list's tag counts nothing."""
    make_list(mail)
    assert post(mail, "olga@elsewhere.example")[0] == 250
    mail.deliver()
    [arrival] = peer.arrivals
    local, _, domain = arrival.sender.partition("@")
    assert len(local) < 80
    plain = b"From: postmaster@peer.test\r\nSubject: Undeliverable\r\n\r\nYour message could not be delivered.\r\n"
    token = local.partition("+")[2]
    with mail.client() as smtp:
        send(smtp, "", [f"team-bounces+{token[:-2]}zz@{domain}"], plain)  # forged
        send(smtp, "postmaster@peer.test", [arrival.sender], plain)  # not a bounce: someone answering
        send(smtp, "", [f"{local.upper()}@{domain}"], plain)
        # A delay report to the address is no failure.
        send(smtp, "", [arrival.sender], dsn("friend@peer.test", "4.4.1").replace(b"failed", b"delayed"))
    assert member(mail, "friend@peer.test").bounces == 1
    with mail.client() as smtp:
        for _ in range(BOUNCE_THRESHOLD - 1):
            send(smtp, "", [arrival.sender], plain)
    assert member(mail, "friend@peer.test").disabled and not member(mail, "alice@a.test").disabled


def test_a_subscriber_our_delivery_fails_for_is_counted_and_disabled_without_a_dsn(mail, peer):
    make_list(mail, members={SUBSCRIBER: ["alice@a.test", "gone@peer.test", "friend@peer.test"]})
    peer.handler.refuse["gone@peer.test"] = "550 5.1.1 <gone@peer.test>: no such user"
    for sent in range(1, BOUNCE_THRESHOLD + 2):
        assert post(mail, "olga@elsewhere.example")[0] == 250
        mail.deliver()
        assert len(mail.messages("alice@a.test")) == sent  # no DSN among them
    state = member(mail, "gone@peer.test")
    assert state.disabled and state.bounces == BOUNCE_THRESHOLD
    assert [a.recipients for a in peer.arrivals] == [["friend@peer.test"]] * (BOUNCE_THRESHOLD + 1)
    assert not member(mail, "friend@peer.test").disabled and mail.spool_rows() == []


def notice_of(mail: MailHarness) -> EmailMessage:
    mail.deliver()
    [raw] = mail.messages("bob@a.test")
    return parsed(raw)


def test_a_moderator_approves_a_held_post_by_replying(mail, peer):
    make_list(mail, moderator="bob@a.test", whocanpost="subscribersonly")
    assert post(mail, "olga@elsewhere.example")[0] == 250  # held, not refused: the list has a moderator
    notice = notice_of(mail)
    assert mail.messages("alice@a.test") == [] and peer.arrivals == []
    approve = notice["Reply-To"]
    assert approve.startswith("team-moderate+") and "only subscribers may post" in notice.get_body().get_content()
    with mail.authenticated("bob@a.test") as smtp:
        send(smtp, "bob@a.test", [approve], b"Auto-Submitted: auto-replied\r\nSubject: Out of office\r\n\r\naway\r\n")
        mail.deliver()
        assert mail.messages("alice@a.test") == []  # an out-of-office answer approves nothing
        send(smtp, "bob@a.test", [approve], b"Subject: Re: " + notice["Subject"].encode() + b"\r\n\r\nok\r\n")
    mail.deliver()
    [raw] = mail.messages("alice@a.test")
    assert parsed(raw)["From"] == "Olga Outside <olga@elsewhere.example>"
    assert [a.recipients for a in peer.arrivals] == [["friend@peer.test"]]
    with mail.server.store.session() as s:
        assert s.execute(select(ListHold)).first() is None
    assert list((mail.data_dir / "list-holds").iterdir()) == []


def test_a_moderator_rejects_a_held_post_and_a_forged_token_does_nothing(mail, peer):
    make_list(mail, moderator="bob@a.test", whocanpost="subscribersonly")
    assert post(mail, "olga@elsewhere.example")[0] == 250
    notice = notice_of(mail)
    reject = re.search(r"send any message to (\S+)\.\r?\n", notice.get_body().get_content()).group(1)
    approve = notice["Reply-To"]
    forged = approve.replace("+", "+x", 1)
    with mail.authenticated("bob@a.test") as smtp:
        send(smtp, "bob@a.test", [forged], b"Subject: forged\r\n\r\nok\r\n")
        send(smtp, "bob@a.test", [reject], b"Subject: no\r\n\r\nno\r\n")
        send(smtp, "bob@a.test", [approve], b"Subject: Re: too late\r\n\r\nok\r\n")
    mail.deliver()
    assert mail.messages("alice@a.test") == [] and peer.arrivals == []


def test_the_password_in_an_approved_header(mail):
    make_list(mail, members={SUBSCRIBER: ["alice@a.test"]}, requirepassword=True, password="s3cret")
    assert post(mail, "olga@elsewhere.example", b"Approved: s3cret\r\n" + POST_TEXT)[0] == 250
    mail.deliver()
    [raw] = mail.messages("alice@a.test")
    assert parsed(raw)["Approved"] is None and parsed(raw)["Subject"] == "Hello all"


def test_a_held_post_expires(mail, peer):
    make_list(mail, moderator="bob@a.test", whocanpost="subscribersonly")
    assert post(mail, "olga@elsewhere.example")[0] == 250
    approve = notice_of(mail)["Reply-To"]
    mail.clock.advance(dt.timedelta(days=8))
    with mail.authenticated("bob@a.test") as smtp:
        send(smtp, "bob@a.test", [approve], b"Subject: Re: late\r\n\r\nok\r\n")
    mail.deliver()
    assert mail.messages("alice@a.test") == [] and peer.arrivals == []
    with mail.server.store.session() as s:
        assert s.execute(select(ListHold)).first() is None


def test_a_list_never_answers_or_reposts_automatic_mail(mail, peer):
    make_list(mail)
    code, reply = post(mail, "")
    assert code == 550 and b"null sender" in reply
    auto = POST_TEXT.replace(b"Subject:", b"Auto-Submitted: auto-replied\r\nSubject:")
    looped = POST_TEXT.replace(b"Subject:", b"X-Loop: team@a.test\r\nSubject:")
    bulk = POST_TEXT.replace(b"Subject:", b"Precedence: bulk\r\nSubject:")
    for content in (auto, looped, bulk):
        assert post(mail, "olga@elsewhere.example", content)[0] == 250  # taken and dropped: no bounce either
    mail.deliver()
    assert mail.messages("alice@a.test") == [] and peer.arrivals == [] and mail.spool_rows() == []


# -- the rewrite, a pure rule ----------------------------------------------------------------

DOMAIN_INFO = DomainInfo(1, "a.test", "/nowhere", True, 0, 0, False, "")


@pytest.mark.parametrize("keys, expected", [
    ({"listfromaddress": "LISTADDRESS"}, {"From": "Olga Outside via team <team@a.test>"}),
    ({"listtoaddress": "LISTADDRESS"}, {"To": "team@a.test"}),
    ({"replytolist": True, "listreplytoaddress": "POSTERADDRESS"}, {"Reply-To": "olga@elsewhere.example"}),
    ({"prependsubject": True}, {"Subject": "[team] Hello all"}),
    ({"prependsubject": True, "subject": "[x]"}, {"Subject": "[x] Hello all"}),
])
def test_rewrite_follows_the_list_keys(keys, expected):
    route = ListAddress("team@a.test", 1, "team", POST, "", "", DOMAIN_INFO, keys)
    out = parsed(rewrite(POST_TEXT, route, ListRules.of(keys), "", ""))
    for name, value in expected.items():
        assert out[name] == value
    assert out.get_all("Subject") and len(out.get_all("Subject")) == 1
    again = parsed(rewrite(rewrite(POST_TEXT, route, ListRules.of(keys), "", ""), route, ListRules.of(keys), "", ""))
    assert again["Subject"] == out["Subject"] and len(again.get_all("List-Id")) == 1


# -- one decision for the whole message ------------------------------------------------------

# A second process on the same configuration that takes one message through the engine's intake, as
# the SMTP listener does (RCPT checks, then DATA), and is killed by the fault point once a list has
# prepared its take (files written), before anything is committed.
CHILD = """
import asyncio, datetime, sys
from mailsrv.core.clock import ManualClock
from mailsrv.core.config import parse_config
from mailsrv.mta.intake import Submission
from mailsrv.server import MailServer
server = MailServer(parse_config(sys.argv[1]), ManualClock(datetime.datetime.fromisoformat(sys.argv[2])))

async def main():
    intake = server.intake
    await intake.begin()
    client = intake.client("192.0.2.7", None)
    sender, content, recipients = sys.argv[3], sys.argv[4].encode(), sys.argv[5:]
    accepted = []
    for address in recipients:
        accepted.append((address, await intake.check_recipient(client, sender, None, accepted, address, len(content))))
    await intake.submit(Submission(sender=sender, content=content, accepted=accepted, own_domain=None, actor=None,
                                   client_ip="192.0.2.7", helo="client.test",
                                   trace=lambda message_id, now: f"Received: by test id {message_id}\\r\\n"))

asyncio.run(main())
"""


def crash_in_the_lists_take(mail: MailHarness, sender: str, recipients: list[str]) -> None:
    mail.stop()
    try:
        child = subprocess.run([sys.executable, "-c", CHILD, mail.config_text, mail.clock.now().isoformat(),
                                sender, POST_TEXT.decode(), *recipients],
                               env={**os.environ, FAULT_POINT_VARIABLE: TAKEN}, capture_output=True, timeout=120)
    finally:
        mail.start()
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()


def test_a_list_and_other_recipients_are_taken_together_or_not_at_all(mail, peer):
    """The client had no 250 when the list's take failed: nothing was taken, neither for bob nor for
    the list, so its retry delivers each copy once."""
    make_list(mail)
    crash_in_the_lists_take(mail, "olga@elsewhere.example", ["bob@a.test", "team@a.test"])
    mail.deliver()
    assert mail.messages("bob@a.test") == [] and mail.messages("alice@a.test") == [] and peer.arrivals == []
    assert mail.spool_rows() == []
    with mail.client() as smtp:  # the client's retry
        send(smtp, "olga@elsewhere.example", ["bob@a.test", "team@a.test"], POST_TEXT)
    mail.deliver()
    assert len(mail.messages("bob@a.test")) == 1
    assert len(mail.messages("alice@a.test")) == 1 and len(mail.messages("carol@b.test")) == 1
    assert [a.recipients for a in peer.arrivals] == [["friend@peer.test"]]


def test_a_held_post_and_its_notice_are_one_commit(mail, peer):
    """A crash while holding a post leaves neither a hold nor a notice (never a hold the moderator
    does not hear of); the retry holds it once, with one notice."""
    make_list(mail, moderator="bob@a.test", whocanpost="subscribersonly")
    crash_in_the_lists_take(mail, "olga@elsewhere.example", ["team@a.test"])
    mail.deliver()
    with mail.server.store.session() as s:
        assert s.execute(select(ListHold)).first() is None
    assert mail.messages("bob@a.test") == [] and mail.spool_rows() == []
    assert post(mail, "olga@elsewhere.example")[0] == 250  # the retry
    notice = notice_of(mail)
    with mail.server.store.session() as s:
        [hold] = s.execute(select(ListHold)).scalars()
    assert hold.sender == "olga@elsewhere.example"
    with mail.authenticated("bob@a.test") as smtp:
        send(smtp, "bob@a.test", [notice["Reply-To"]], b"Subject: Re: ok\r\n\r\nok\r\n")
    mail.deliver()
    assert len(mail.messages("alice@a.test")) == 1 and [a.recipients for a in peer.arrivals] == [["friend@peer.test"]]
