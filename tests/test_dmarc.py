"""SPF and DMARC at acceptance (mailsrv.mta.filtering.dmarc): every unauthenticated message's
verdicts in one Authentication-Results header, and what a DMARC failure does under `dmarcaction`.

The senders' SPF and DMARC records are in the harness's loopback DNS; the harness answers names it
does not know with SERVFAIL (a DNS failure), so a name that must have "no record" is given another type."""
from __future__ import annotations

import os

import dkim
import pytest
from dns_server import txt
from smtp_support import MailHarness, mail, send  # noqa: F401 (the fixture)

from mailsrv.mta.filtering.dmarc import DmarcPermError, Record, aligned, from_domain, parse_record


def message(sender: str) -> bytes:
    return (f"From: Someone <{sender}>\r\nTo: alice@a.test\r\nSubject: pay this invoice\r\n"
            "Date: Tue, 10 Mar 2026 09:30:15 +0000\r\nMessage-ID: <x@y>\r\n\r\nPlease pay.\r\n").encode()


def publish(mail: MailHarness, domain: str, spf: str | None = None, dmarc: str | None = None) -> None:
    """`domain`'s SPF and DMARC records; None publishes the name without one (NOERROR, no TXT)."""
    mail.dns.add({(domain, "TXT"): [txt(spf)] if spf else [], (domain, "A"): ["192.0.2.9"],
                  (f"_dmarc.{domain}", "TXT"): [txt(dmarc)] if dmarc else [],
                  (f"_dmarc.{domain}", "A"): ["192.0.2.9"]})


def deliver(mail: MailHarness, sender: str, content: bytes | None = None) -> tuple[str, bytes]:
    """(folder, header of the stored copy, unfolded) of a message from `sender` to alice."""
    with mail.client() as smtp:
        send(smtp, sender, ["alice@a.test"], content or message(sender))
    maildir = mail.maildir("alice@a.test")
    [(folder, path)] = [(folder, path) for folder in ("", ".Junk") for path in (maildir / folder / "new").iterdir()]
    stored = path.read_bytes()
    os.unlink(path)
    return folder, stored.split(b"\r\n\r\n", 1)[0].replace(b"\r\n\t", b" ")


def results(head: bytes) -> str:
    [line] = [line for line in head.split(b"\r\n") if line.startswith(b"Authentication-Results:")]
    return line.decode()


def set_action(mail: MailHarness, action: str) -> None:
    mail.server.system_settings.update({"dmarcaction": action})


def test_an_spf_fail_shows_spf_fail_and_an_aligned_spf_pass_passes_dmarc(mail):
    publish(mail, "example.org", spf="v=spf1 ip4:192.0.2.1 -all")
    folder, head = deliver(mail, "ext@example.org")
    assert results(head) == ("Authentication-Results: mx.test; spf=fail smtp.mailfrom=ext@example.org; "
                             "dkim=none; dmarc=none header.from=example.org")
    assert folder == ""
    publish(mail, "bank.test", spf="v=spf1 ip4:127.0.0.1 -all", dmarc="v=DMARC1; p=reject")
    set_action(mail, "Reject")
    folder, head = deliver(mail, "billing@bank.test")
    assert "spf=pass smtp.mailfrom=billing@bank.test" in results(head)
    assert "dmarc=pass (p=reject dis=none) header.from=bank.test" in results(head) and folder == ""


def test_a_spoofed_sender_of_a_reject_domain_is_refused_550(mail):
    publish(mail, "bank.test", spf="v=spf1 ip4:192.0.2.1 -all", dmarc="v=DMARC1; p=reject; rua=mailto:d@bank.test")
    set_action(mail, "Reject")
    with mail.client() as smtp:
        smtp.ehlo()
        assert smtp.mail("ceo@bank.test")[0] == 250 and smtp.rcpt("alice@a.test")[0] == 250
        code, reply = smtp.data(message("ceo@bank.test"))
    assert code == 550 and reply.startswith(b"5.7.1 Message refused: the DMARC policy of bank.test")
    maildir = mail.maildir("alice@a.test")
    assert not list(maildir.glob("new/*")) and not list(maildir.glob(".Junk/new/*"))
    assert mail.server.spool.count() == 0


def test_quarantine_files_into_junk_and_reject_too_under_the_default_action(mail):
    publish(mail, "shop.test", spf="v=spf1 -all", dmarc="v=DMARC1; p=quarantine")
    folder, head = deliver(mail, "sales@shop.test")
    assert folder == ".Junk"
    assert "dmarc=fail (p=quarantine dis=quarantine) header.from=shop.test" in results(head)
    publish(mail, "bank.test", spf="v=spf1 -all", dmarc="v=DMARC1; p=reject")
    assert deliver(mail, "ceo@bank.test")[0] == ".Junk"  # dmarcaction Quarantine: nothing refused


def test_pct_applies_the_next_milder_policy_to_the_unsampled(mail):
    publish(mail, "bank.test", spf="v=spf1 -all", dmarc="v=DMARC1; p=reject; pct=0")
    set_action(mail, "Reject")
    folder, head = deliver(mail, "ceo@bank.test")
    assert folder == ".Junk" and "dmarc=fail (p=reject dis=quarantine)" in results(head)


def test_an_aligned_dkim_signature_passes_where_spf_fails_relaxed_but_not_strict(mail):
    from test_dkim import external_key
    private, public = external_key()
    mail.dns.add({("k._domainkey.mail.bank.test", "TXT"): [txt(f"v=DKIM1; k=ed25519; p={public}")]})
    body = message("ceo@bank.test")
    signed = dkim.sign(body, b"k", b"mail.bank.test", private, canonicalize=(b"relaxed", b"relaxed"),
                       signature_algorithm=b"ed25519-sha256") + body
    set_action(mail, "Reject")
    publish(mail, "bank.test", spf="v=spf1 -all", dmarc="v=DMARC1; p=reject")
    folder, head = deliver(mail, "ceo@bank.test", signed)
    assert "dkim=pass header.d=mail.bank.test" in results(head) and "dmarc=pass" in results(head)
    publish(mail, "bank.test", spf="v=spf1 -all", dmarc="v=DMARC1; p=quarantine; adkim=s")
    folder, head = deliver(mail, "ceo@bank.test", signed)
    assert folder == ".Junk" and "dmarc=fail (p=quarantine dis=quarantine)" in results(head)


def test_a_subdomain_takes_the_organizational_domains_sp(mail):
    publish(mail, "news.bank.test", spf="v=spf1 -all")
    publish(mail, "bank.test", dmarc="v=DMARC1; p=none; sp=quarantine")
    folder, head = deliver(mail, "letters@news.bank.test")
    assert folder == ".Junk" and "dmarc=fail (p=quarantine dis=quarantine) header.from=news.bank.test" in results(head)


def test_mark_and_none_deliver_to_the_inbox(mail):
    publish(mail, "bank.test", spf="v=spf1 -all", dmarc="v=DMARC1; p=reject")
    set_action(mail, "Mark")
    folder, head = deliver(mail, "ceo@bank.test")
    assert folder == "" and b"\r\nX-DMARC: fail; policy=reject; disposition=reject\r\n" in head + b"\r\n"
    set_action(mail, "None")
    folder, head = deliver(mail, "ceo@bank.test")
    assert folder == "" and "dmarc=fail" in results(head) and b"X-DMARC" not in head
    mail.server.system_settings.update({"dmarcaction": "Off", "spfcheck": False, "dkimverify": False})
    folder, head = deliver(mail, "ceo@bank.test")
    assert folder == "" and b"Authentication-Results" not in head


def test_malformed_records_and_dns_failures_are_results_never_refusals(mail):
    set_action(mail, "Reject")
    publish(mail, "broken.test", spf="v=spf1 -all", dmarc="v=DMARC1; p=obliterate")
    folder, head = deliver(mail, "x@broken.test")
    assert folder == "" and "dmarc=permerror (p='obliterate' is not a policy) header.from=broken.test" in results(head)
    publish(mail, "broken.test", spf="v=spf1 -all", dmarc="v=DMARC1; p=reject; pct=lots")
    assert "dmarc=permerror (pct='lots' is not 0-100)" in results(deliver(mail, "x@broken.test")[1])
    # Nothing published for unknown.test: the harness's DNS fails (SERVFAIL) for SPF and DMARC alike.
    folder, head = deliver(mail, "x@unknown.test")
    assert folder == "" and results(head) == ("Authentication-Results: mx.test; spf=temperror "
                                              "smtp.mailfrom=x@unknown.test; dkim=none; "
                                              "dmarc=temperror (DNS NoNameservers) header.from=unknown.test")
    # No usable From header: nothing to align with.
    folder, head = deliver(mail, "x@broken.test", b"Subject: no from\r\n\r\nhi\r\n")
    assert folder == "" and "dmarc=permerror (no single From domain)" in results(head)


def test_a_sender_domains_answers_are_taken_from_the_cache_while_their_ttl_lasts(mail):
    """The checks of a domain's later messages are answered from the resolver's cache (on the event
    loop, mailsrv.core.dns.CacheView): the same verdicts as from DNS, even once DNS fails."""
    mail.dns.ttl = 300
    publish(mail, "bank.test", spf="v=spf1 ip4:127.0.0.1 -all", dmarc="v=DMARC1; p=reject")
    publish(mail, "shop.test", spf="v=spf1 -all", dmarc="v=DMARC1; p=quarantine")
    passed, junk = deliver(mail, "billing@bank.test"), deliver(mail, "sales@shop.test")
    assert "spf=pass" in results(passed[1]) and "dmarc=pass (p=reject dis=none)" in results(passed[1])
    assert junk[0] == ".Junk" and "dmarc=fail (p=quarantine dis=quarantine)" in results(junk[1])
    mail.dns.records = {}  # from now on every question fails (SERVFAIL)
    for _ in range(2):  # the cached answers, then the results worked out from them (mailsrv.core.dns.Memo)
        assert results(deliver(mail, "billing@bank.test")[1]) == results(passed[1])
        folder, head = deliver(mail, "sales@shop.test")
        assert folder == ".Junk" and results(head) == results(junk[1])


@pytest.mark.parametrize(("header", "domain"), [
    (b"From: a@b.example\r\nTo: x@y.example", "b.example"),
    (b"Subject: hi\r\nFROM: \"Q, x\"\r\n\t<e@F.example.>", "f.example"),  # folded, any case
    (b"From: a@b.example\r\nFrom: c@d.example", None),  # two From domains
    (b"From: a@b.example, c@B.example", "b.example"),
    (b"From : a@b.example", None),  # not a From field
    (b"From someone Tue Mar 10 09:30:15 2026\r\nFrom: a@c.example", "c.example"),  # an mbox line
    (b" folded first\r\nFrom: a@c.example", "c.example"),
    (b"From: \xc3\xa9 <a@d.example>", "d.example"),  # 8-bit
    (b"To: x@y.example", None),
])
def test_the_from_domain_is_the_header_parsers(header, domain):
    assert from_domain(header + b"\r\n\r\nFrom: body@e.example\r\n") == domain


def test_record_parsing_and_alignment():
    assert parse_record("v=DMARC1; p=Reject; sp=none; pct=20; adkim=s", subdomain=False) == \
        Record("reject", 20, strict_dkim=True)
    assert parse_record("v=DMARC1;p=reject;sp=none", subdomain=True).policy == "none"
    for bad in ("v=DMARC1", "v=DMARC1; p=reject; pct=101", "v=DMARC1; p=none; aspf=x"):
        with pytest.raises(DmarcPermError):
            parse_record(bad, subdomain=False)
    assert aligned("mail.bank.test", "bank.test", strict=False) and not aligned("mail.bank.test", "bank.test", True)
    assert not aligned("bank.test", "evil.test", strict=False)


def test_trusted_clients_are_not_judged(tmp_path):
    from smtp_support import make_harness
    for mail in make_harness(tmp_path, 'relay_networks = ["127.0.0.0/8"]\n'):
        publish(mail, "bank.test", spf="v=spf1 -all", dmarc="v=DMARC1; p=reject")
        set_action(mail, "Reject")
        folder, head = deliver(mail, "ceo@bank.test")  # from our own network: as OpenDMARC's IgnoreHosts
        assert folder == "" and b"Authentication-Results" not in head
