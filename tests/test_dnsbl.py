"""DNS blocklists (mailsrv.mta.filtering.dnsbl) against a real DNS server on loopback
(tests/dns_server.py): a listed client refused at RCPT from the configured score, or scored into the
spam decision below it; zones that fail or answer outside 127/8 list nothing; the SOAP setting."""
from __future__ import annotations

import os

from contract_clients import ZeepClient, ok
from smtp_support import ADMIN, MailHarness, make_harness, send, two_nodes, soap, mail  # noqa: F401  (fixtures)

from mailsrv.mta.filtering.dnsbl import query_name

AUTH = {"AuthUserName": ADMIN[0], "AuthPassword": ADMIN[1]}
MESSAGE = b"From: Ext <ext@example.org>\r\nTo: alice@a.test\r\nSubject: hello\r\n\r\nHi.\r\n"
LISTED = "1.0.0.127"  # the test client, 127.0.0.1, reversed


def antispam(soap: ZeepClient, *settings: str) -> None:
    ok(soap.call("svcSpamAdmin", "SetAntispamOptions", **AUTH, newSettings=list(settings)))


def folder(mail: MailHarness, name: str = "") -> list[bytes]:
    new = mail.maildir("alice@a.test") / name / "new"
    return [(new / f).read_bytes() for f in sorted(os.listdir(new))] if new.exists() else []


def test_query_names_reverse_octets_and_nibbles():
    assert query_name("192.0.2.99", "bl.example.org") == "99.2.0.192.bl.example.org"
    assert query_name("2001:db8::1", "bl.example.org") == \
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.example.org"
    assert query_name("::ffff:192.0.2.99", "bl.example.org") == "99.2.0.192.bl.example.org"


def test_a_listed_client_is_refused_at_rcpt_from_the_refusal_score(mail, soap):
    mail.dns.add({(f"{LISTED}.bl.test", "A"): ["127.0.0.2"], (f"{LISTED}.other.test", "A"): ["127.0.0.4"]})
    antispam(soap, "rbls=bl.test=3,other.test=2,clean.test=9", "rblrefusescore=5")
    with mail.client() as smtp:
        smtp.ehlo()
        assert smtp.mail("ext@example.org")[0] == 250
        code, text = smtp.rcpt("alice@a.test")
    assert code == 554 and text.startswith(b"5.7.1") and b"bl.test" in text and b"other.test" in text
    assert b"clean.test" not in text
    # An authenticated client is not looked up.
    with mail.authenticated("bob@a.test") as smtp:
        send(smtp, "bob@a.test", ["alice@a.test"], MESSAGE.replace(b"ext@example.org", b"bob@a.test"))


def test_below_the_refusal_score_the_listing_scores_the_message(mail, soap):
    mail.dns.add({(f"{LISTED}.bl.test", "A"): ["127.0.0.2"]})
    antispam(soap, "rbls=bl.test=25", "rblrefusescore=0")
    with mail.client() as smtp:
        send(smtp, "ext@example.org", ["alice@a.test"], MESSAGE)
    mail.deliver()
    # 25 reaches the high threshold (20): the default action files it into Junk.
    [junk] = folder(mail, ".Junk")
    assert b"X-Spam-RBL: bl.test (score 25)\r\n" in junk and b"X-Spam-Score: 25.0\r\n" in junk
    assert b"X-Spam-Status: Yes, score=25.0 level=high\r\n" in junk


def test_failing_zones_and_answers_outside_127_list_nothing(mail, soap):
    # broken.test is unknown to the DNS server, which answers SERVFAIL; odd.test answers a public address.
    mail.dns.add({(f"{LISTED}.odd.test", "A"): ["192.0.2.1"]})
    antispam(soap, "rbls=broken.test=10,odd.test=10", "rblrefusescore=1", "rbltimeoutms=500")
    with mail.client() as smtp:
        send(smtp, "ext@example.org", ["alice@a.test"], MESSAGE)
    mail.deliver()
    [stored] = folder(mail)
    assert b"X-Spam-RBL" not in stored and b"X-Spam-Status: No, score=0.0\r\n" in stored


def test_a_change_on_one_node_applies_on_the_other(tmp_path):
    for first, second in two_nodes(tmp_path):
        for node in (first, second):
            node.dns.add({(f"{LISTED}.bl.test", "A"): ["127.0.0.2"]})
        with second.client() as smtp:  # read before the change
            send(smtp, "ext@example.org", ["alice@a.test"], MESSAGE)
        first.server.content_filters.set_antispam(first.admin(), ["rbls=bl.test=5", "rblrefusescore=5"])
        with second.client() as smtp:
            smtp.ehlo()
            smtp.mail("ext@example.org")
            assert smtp.rcpt("alice@a.test")[0] == 554


def test_trusted_clients_are_neither_refused_nor_scored(tmp_path):
    for mail in make_harness(tmp_path, 'relay_networks = ["127.0.0.0/8"]\n'):
        mail.dns.add({(f"{LISTED}.bl.test", "A"): ["127.0.0.2"]})
        mail.server.content_filters.set_antispam(mail.admin(), ["rbls=bl.test=25", "rblrefusescore=5"])
        with mail.client() as smtp:
            send(smtp, "ext@example.org", ["alice@a.test"], MESSAGE)
        mail.deliver()
        [stored] = folder(mail)
        assert b"X-Spam" not in stored
