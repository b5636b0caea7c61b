"""DKIM (mailsrv.mta.filtering.dkim): our users' mail signed at acceptance and verified by two
verifiers at the next hop; incoming signatures verified into Authentication-Results.

The keys are published in the test's loopback DNS. The second verifier is OpenDKIM's
`opendkim-testmsg` (Debian opendkim-tools), which asks the system resolver: it runs in a mount
namespace of its own whose /etc/resolv.conf names a loopback DNS server on port 53 (root only)."""
from __future__ import annotations

import base64
import datetime as dt
import os
import random
import shutil
import subprocess
from collections.abc import Iterator

import dkim
import dns.resolver
import pytest
from conftest import unavailable
from dns_server import DnsServer, txt
from smtp_peer import Peer, free_port, remote_config
from smtp_support import MailHarness, make_harness, send

from mailsrv.directory.dkim_keys import ED25519, RSA
from mailsrv.mta.filtering.dkim import verify

MSG = (b"From: Alice <alice@a.test>\r\nTo: friend@peer.test\r\nSubject: signed\r\n"
       b"Date: Tue, 10 Mar 2026 09:30:15 +0000\r\nMessage-ID: <one@a.test>\r\n\r\nHello there\r\n")
OPENDKIM = "/usr/sbin/opendkim-testmsg"


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def mail(tmp_path, port) -> Iterator[MailHarness]:
    yield from make_harness(tmp_path, remote_config(port))


@pytest.fixture
def peer(mail, port) -> Iterator[Peer]:
    mail.dns.add({("peer.test", "MX"): ["10 mx.peer.test."], ("mx.peer.test", "A"): ["127.0.0.1"]})
    peer = Peer("127.0.0.1", port)
    yield peer
    peer.stop()


def publish_key(mail: MailHarness, selector: str, algorithm: str = RSA, size: int = 2048) -> None:
    """A new key for a.test (the domain administrator's GenerateDomainKeysCert), published, signing on."""
    admin = mail.admin()
    view = mail.server.dkim_keys.generate(admin, "a.test", size, selector, algorithm)
    mail.server.domains.update(admin, "a.test", {"enablemailsigning": True})
    mail.dns.add({(f"{selector}._domainkey.a.test", "TXT"): [txt(view.dns_record)]})


def from_alice(mail: MailHarness, content: bytes = MSG) -> None:
    with mail.authenticated("alice@a.test") as smtp:
        send(smtp, "alice@a.test", ["friend@peer.test"], content)


def dkimpy_verifies(mail: MailHarness, content: bytes) -> bool:
    resolver = mail.server.dns

    def txt_record(name: bytes, timeout: float = 5) -> bytes | None:
        try:
            return b"".join(resolver.resolve(name.decode(), "TXT")[0].strings)
        except dns.resolver.NXDOMAIN:
            return None
    return bool(dkim.verify(content, dnsfunc=txt_record))


def opendkim_verdict(mail: MailHarness, content: bytes, tmp_path) -> tuple[int, str]:
    """(exit status, complaint) of opendkim-testmsg verifying `content` against the harness's DNS records."""
    if not os.path.exists(OPENDKIM) or not shutil.which("unshare") or os.geteuid() != 0:
        unavailable("opendkim-testmsg needs opendkim-tools, unshare and root")
    address = f"127.53.{random.randint(1, 254)}.{random.randint(1, 254)}"
    server = DnsServer(dict(mail.dns.records), bind=(address, 53))
    try:
        resolv = tmp_path / "resolv.conf"
        resolv.write_text(f"nameserver {address}\n")
        done = subprocess.run(["unshare", "-m", "sh", "-c", 'mount --bind "$1" /etc/resolv.conf && exec "$2"',
                               "sh", str(resolv), OPENDKIM], input=content, capture_output=True, timeout=60)
    finally:
        server.close()
    return done.returncode, done.stderr.decode(errors="replace")


@pytest.mark.parametrize("algorithm", [RSA, ED25519])
def test_a_relayed_message_verifies_with_dkimpy_and_opendkim(mail, peer, algorithm, tmp_path):
    publish_key(mail, "s2026", algorithm)
    from_alice(mail)
    assert mail.deliver() == 1
    [arrival] = peer.arrivals
    signature = arrival.content.split(b"DKIM-Signature:", 1)[1]
    assert b"d=a.test" in signature and b"s=s2026" in signature and b"c=relaxed/relaxed" in signature
    assert f"a={algorithm}-sha256".encode() in signature
    assert dkimpy_verifies(mail, arrival.content)
    assert opendkim_verdict(mail, arrival.content, tmp_path) == (0, "")
    # Both verifiers really check: a changed body fails them.
    tampered = arrival.content.replace(b"Hello there", b"Hello thera")
    assert not dkimpy_verifies(mail, tampered)
    assert opendkim_verdict(mail, tampered, tmp_path)[1].strip().endswith("Bad signature")


def test_a_key_rotated_while_the_message_waits_in_the_spool_still_verifies(mail, port):
    publish_key(mail, "old")
    mail.dns.add({("peer.test", "MX"): ["10 mx.peer.test."], ("mx.peer.test", "A"): ["127.0.0.1"]})
    from_alice(mail)
    assert mail.deliver() == 1  # nobody listens yet: it stays in the spool
    assert mail.server.spool.count() == 1
    publish_key(mail, "new")  # the old selector's record stays published, as it must
    peer = Peer("127.0.0.1", port)
    try:
        from_alice(mail, MSG.replace(b"<one@", b"<two@"))
        mail.clock.advance(dt.timedelta(minutes=11))  # past the first retry
        mail.deliver()
        arrivals = sorted(peer.arrivals, key=lambda a: b"<two@" in a.content)
    finally:
        peer.stop()
    assert [b"s=old;" in a.content for a in arrivals] == [True, False]
    assert b"s=new;" in arrivals[1].content
    assert all(dkimpy_verifies(mail, a.content) for a in arrivals)


def test_mail_of_a_domain_without_signing_or_without_a_key_goes_unsigned(mail, peer):
    from_alice(mail)  # signing on, no key
    admin = mail.admin()
    mail.server.dkim_keys.generate(admin, "a.test", 2048, "s1")  # a key, signing off
    from_alice(mail, MSG.replace(b"<one@", b"<two@"))
    mail.deliver()
    assert len(peer.arrivals) == 2 and not any(b"DKIM-Signature" in a.content for a in peer.arrivals)


def external_key() -> tuple[bytes, str]:
    """(dkimpy private key, p= value) of a fresh Ed25519 key for example.org."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    key = ed25519.Ed25519PrivateKey.generate()
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw), base64.b64encode(public).decode()


INCOMING = (b"From: Ext <ext@example.org>\r\nTo: alice@a.test\r\nSubject: from outside\r\n"
            b"Date: Tue, 10 Mar 2026 09:30:15 +0000\r\nMessage-ID: <ext@example.org>\r\n\r\nHi Alice\r\n")


def received(mail: MailHarness, content: bytes) -> bytes:
    with mail.client() as smtp:
        send(smtp, "ext@example.org", ["alice@a.test"], content)
    [stored] = mail.messages("alice@a.test")
    return stored.split(b"\r\n\r\n", 1)[0].replace(b"\r\n\t", b" ")


def test_incoming_signed_mail_gets_dkim_pass(mail):
    private, public = external_key()
    mail.dns.add({("ed._domainkey.example.org", "TXT"): [txt(f"v=DKIM1; k=ed25519; p={public}")]})
    signed = dkim.sign(INCOMING, b"ed", b"example.org", private, canonicalize=(b"relaxed", b"relaxed"),
                       signature_algorithm=b"ed25519-sha256") + INCOMING
    head = received(mail, signed)
    assert b"Authentication-Results: mx.test; " in head
    assert b"dkim=pass header.d=example.org header.s=ed header.a=ed25519-sha256" in head


def test_bad_signatures_and_dns_failures_are_results_and_the_mail_is_delivered(mail):
    private, public = external_key()
    mail.dns.add({("ed._domainkey.example.org", "TXT"): [txt(f"v=DKIM1; k=ed25519; p={public}")],
                  ("bad._domainkey.example.org", "TXT"): [txt("v=DKIM1; k=ed25519; p=!!notbase64")],
                  ("nokey._domainkey.example.org", "A"): ["127.0.0.9"]})  # the name, without a TXT record
    good = dkim.sign(INCOMING, b"ed", b"example.org", private, canonicalize=(b"relaxed", b"relaxed"),
                     signature_algorithm=b"ed25519-sha256")
    tampered = good + INCOMING.replace(b"Hi Alice", b"Hi Mallory")
    head = received(mail, tampered)
    assert b"dkim=fail (body hash mismatch) header.d=example.org" in head
    cases = {
        b"DKIM-Signature: this is no signature\r\n": b"dkim=permerror",
        # a selector whose key does not parse, one without a key, one whose DNS fails (SERVFAIL)
        good.replace(b"s=ed;", b"s=bad;"): b"dkim=permerror (key record does not parse)",
        good.replace(b"s=ed;", b"s=nokey;"): b"dkim=permerror (no key for signature)",
        good.replace(b"s=ed;", b"s=gone;"): b"dkim=temperror (DNS NoNameservers)",
    }
    for signature, expected in cases.items():
        os.unlink(next((mail.maildir("alice@a.test") / "new").iterdir()))
        head = received(mail, signature + INCOMING)
        assert expected in head, (signature, head)
    assert verify(mail.server.dns, INCOMING)[0].resinfo() == "dkim=none"


def test_generate_and_get_dkim_cert_over_soap(live_server):
    from contract_clients import HttpClient
    from test_bad_input import ADMIN, DOM, add_domain
    live_server.server.admins.reset_primary(ADMIN["AuthUserName"], ADMIN["AuthPassword"])
    c = HttpClient(live_server.url, "GET")
    add_domain(c, DOM)
    made = c.call("svcDomainAdmin", "GenerateDKIMCert", **ADMIN, DomainName=DOM, KeyType="Ed25519", KeySize=0,
                  selector="ed1")
    assert made["Result"] is True and (made["keyType"], made["selector"]) == ("ed25519", "ed1")
    assert made["dnsRecord"] == f"v=DKIM1; k=ed25519; p={made['publicKey']}"
    assert len(base64.b64decode(made["publicKey"])) == 32 and "BEGIN PRIVATE KEY" in made["privateKey"]
    got = c.call("svcDomainAdmin", "GetDKIMCert", **ADMIN, DomainName=DOM)
    assert {k: got[k] for k in made} == made
    # GenerateDomainKeysCert makes RSA keys, which GetDKIMCert then names.
    rsa = c.call("svcDomainAdmin", "GenerateDomainKeysCert", **ADMIN, DomainName=DOM, KeySize=2048, selector="r1")
    got = c.call("svcDomainAdmin", "GetDKIMCert", **ADMIN, DomainName=DOM)
    assert (got["keyType"], got["publicKey"], got["dnsRecord"]) == ("rsa", rsa["publicKey"],
                                                                    f"v=DKIM1; k=rsa; p={rsa['publicKey']}")
    refused = c.call("svcDomainAdmin", "GenerateDKIMCert", **ADMIN, DomainName=DOM, KeyType="dsa", KeySize=2048,
                     selector="x")
    assert refused["Result"] is False and "not a DKIM key type" in refused["Message"]
