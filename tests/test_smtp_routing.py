"""Who a recipient is, decided at RCPT time from the live store: users, aliases, domain aliases,
catch-alls, forwarding, disabled domains, and the relay policy."""
from __future__ import annotations

import smtplib

import pytest
from smtp_support import DOMAIN, USER_PASSWORD, make_harness, send
from smtp_support import mail  # noqa: F401  (the fixture)
from sqlalchemy import select

from mailsrv.mta.recipients import Deliver, LocalMailbox, RemoteAddress
from mailsrv.store.models import SpoolMessage

MSG = b"Subject: routed\r\n\r\nbody\r\n"


def rcpt(mail, address: str, sender: str = "ext@example.org", **client) -> tuple[int, bytes]:
    with mail.client(**client) as smtp:
        smtp.ehlo()
        assert smtp.mail(sender)[0] == 250
        return smtp.rcpt(address)


def delivered_to(mail, address: str) -> list[bytes]:
    return [m.split(b"\r\n")[1] for m in mail.messages(address)]


def test_an_unknown_local_user_is_refused_with_550_5_1_1(mail):
    assert rcpt(mail, "nobody@a.test") == (550, b"5.1.1 <nobody@a.test>: no such user here")


def test_a_user_added_to_the_store_is_live_for_smtp_at_once(mail):
    assert rcpt(mail, "carol@a.test")[0] == 550
    mail.add_user(DOMAIN, "carol")
    assert rcpt(mail, "carol@a.test")[0] == 250
    actor = mail.admin()
    mail.server.domains.add(actor, "new.test", "", "postmaster", "Domain-pass-1", "", "", {})
    assert rcpt(mail, "postmaster@new.test")[0] == 250


def test_an_alias_fans_out_to_each_mailbox_once(mail):
    mail.server.aliases.add(mail.admin(), DOMAIN, "team", ["alice@a.test", "bob@a.test"])
    mail.server.aliases.add(mail.admin(), DOMAIN, "all", ["team@a.test", "alice@a.test"])
    with mail.client() as smtp:
        send(smtp, "ext@example.org", ["all@a.test", "bob@a.test"], MSG)
    mail.deliver()
    assert delivered_to(mail, "alice@a.test") == [b"Delivered-To: alice@a.test"]
    assert delivered_to(mail, "bob@a.test") == [b"Delivered-To: bob@a.test"]


def test_an_alias_loop_ends_and_still_delivers_to_its_mailboxes(mail):
    actor = mail.admin()
    mail.server.aliases.add(actor, DOMAIN, "ping", ["alice@a.test"])
    mail.server.aliases.add(actor, DOMAIN, "pong", ["ping@a.test", "bob@a.test"])
    mail.server.aliases.update(actor, DOMAIN, "ping", ["pong@a.test", "alice@a.test"])
    with mail.client() as smtp:
        send(smtp, "ext@example.org", ["ping@a.test"], MSG)
    mail.deliver()
    assert len(mail.messages("alice@a.test")) == 1 and len(mail.messages("bob@a.test")) == 1


def test_a_domain_alias_delivers_to_the_domains_mailbox(mail):
    mail.server.domain_aliases.add(mail.admin(), DOMAIN, "alias-a.test", False)
    with mail.client() as smtp:
        send(smtp, "ext@example.org", ["alice@alias-a.test"], MSG)
    mail.deliver()
    assert delivered_to(mail, "alice@a.test") == [b"Delivered-To: alice@a.test"]
    assert rcpt(mail, "nobody@alias-a.test")[0] == 550


def test_the_catch_all_takes_unknown_local_parts_only_while_catch_alls_are_enabled(mail):
    actor = mail.admin()
    mail.server.aliases.add(actor, DOMAIN, "catcher", ["bob@a.test"])
    assert rcpt(mail, "anything@a.test")[0] == 550
    mail.server.aliases.set_catch_all(actor, DOMAIN, "catcher")
    with mail.client() as smtp:
        send(smtp, "ext@example.org", ["anything@a.test"], MSG)
    mail.deliver()
    assert delivered_to(mail, "bob@a.test") == [b"Delivered-To: bob@a.test"]
    assert rcpt(mail, "alice@a.test")[0] == 250  # real users are still themselves
    mail.server.domains.update(actor, DOMAIN, {"enablecatchalls": "Disabled"})
    assert rcpt(mail, "anything@a.test")[0] == 550
    mail.server.domains.update(actor, DOMAIN, {"enablecatchalls": "Enabled"})
    # The server-wide switch (the `catchalls` server setting) wins over the domain's.
    assert rcpt(mail, "anything@a.test")[0] == 250
    mail.server.system_settings.update({"catchalls": "Disabled"})
    assert rcpt(mail, "anything@a.test")[0] == 550


def test_server_wide_catch_alls_off_refuses_over_smtp(tmp_path):
    for mail in make_harness(tmp_path, "allow_catchalls = false\n"):
        actor = mail.admin()
        mail.server.aliases.add(actor, DOMAIN, "catcher", ["bob@a.test"])
        mail.server.aliases.set_catch_all(actor, DOMAIN, "catcher")
        assert rcpt(mail, "anything@a.test")[0] == 550


@pytest.mark.parametrize("delete_copy", [False, True])
def test_forwarding_keeps_or_drops_the_copy_and_spools_the_remote_part(mail, delete_copy):
    mail.add_user(DOMAIN, "carol", forwarding_addresses=["alice@a.test", "carol@elsewhere.example"],
                  delete_on_forward=delete_copy)
    with mail.client() as smtp:
        send(smtp, "ext@example.org", ["carol@a.test"], MSG)
    mail.deliver()
    assert delivered_to(mail, "alice@a.test") == [b"Delivered-To: alice@a.test"]
    assert delivered_to(mail, "carol@a.test") == ([] if delete_copy else [b"Delivered-To: carol@a.test"])
    remote = [row for row in mail.spool_rows() if row[1] == "remote"]
    assert remote == [("carol@elsewhere.example", "remote", "deferred")]
    assert mail.server.spool.count() == 1
    # The forwarded copy is a recipient of the accepted message itself, so it leaves with the
    # original envelope sender (no SRS rewriting).
    with mail.server.store.session() as s:
        assert s.execute(select(SpoolMessage.sender)).scalars().all() == ["ext@example.org"]


def test_resolution_types(mail):
    mail.add_user(DOMAIN, "dave", forwarding_addresses=["x@remote.example"], delete_on_forward=True)
    result = mail.server.resolver.resolve("Dave@A.TEST")
    assert isinstance(result, Deliver) and result.domain is not None and result.domain.name == DOMAIN
    assert result.routes == (RemoteAddress("x@remote.example"),)
    alice = mail.server.resolver.resolve("alice@a.test")
    assert isinstance(alice, Deliver) and isinstance(alice.routes[0], LocalMailbox)
    assert alice.routes[0].address == "alice@a.test"
    outside = mail.server.resolver.resolve("someone@example.net")
    assert outside == Deliver((RemoteAddress("someone@example.net"),), None)


def test_a_disabled_domain_or_mailbox_is_refused(mail):
    actor = mail.admin()
    mail.add_user(DOMAIN, "erin", user_settings={"isenabled": False})
    assert rcpt(mail, "erin@a.test") == (550, b"5.2.1 <erin@a.test>: mailbox disabled")
    mail.server.domains.set_enabled(actor, DOMAIN, False)
    assert rcpt(mail, "alice@a.test") == (550, b"5.2.1 <alice@a.test>: domain disabled")


def test_relaying_is_refused_without_authentication(mail):
    assert rcpt(mail, "someone@example.net") == (550, b"5.7.1 Relaying denied: authenticate first")
    # STARTTLS alone changes nothing.
    assert rcpt(mail, "someone@example.net", tls=True)[0] == 550


@pytest.mark.parametrize("submission", [False, True])
def test_relaying_is_allowed_after_authentication_and_the_remote_copy_waits_in_the_spool(mail, submission):
    with mail.authenticated("alice@a.test", submission=submission) as smtp:
        send(smtp, "alice@a.test", ["someone@example.net"], MSG)
    assert mail.spool_rows() == [("someone@example.net", "remote", "pending")]
    mail.deliver()
    [(address, kind, status)] = mail.spool_rows()
    assert (address, kind, status) == ("someone@example.net", "remote", "deferred")
    assert mail.server.spool.count() == 1


def test_relay_networks_may_relay_without_authentication(tmp_path):
    for mail in make_harness(tmp_path, 'relay_networks = ["127.0.0.0/8"]\n'):
        with mail.client() as smtp:
            send(smtp, "alice@a.test", ["someone@example.net"], MSG)  # and may use a local sender
        assert mail.spool_rows() == [("someone@example.net", "remote", "pending")]


def test_require_smtp_authentication_refuses_unauthenticated_local_senders(mail):
    with mail.client() as smtp:
        smtp.ehlo()
        assert smtp.mail("alice@a.test") == (530, b"5.7.0 Authentication required to send as alice@a.test")
        assert smtp.mail("<>")[0] == 250  # bounces are never refused for this
    with mail.authenticated("bob@a.test", submission=False) as smtp:
        send(smtp, "bob@a.test", ["bob@a.test"], MSG)
        assert smtp.mail("alice@a.test")[0] == 553  # authenticated, but not as alice
    mail.server.domains.update(mail.admin(), DOMAIN, {"requiresmtpauthentication": False})
    with mail.client() as smtp:
        send(smtp, "alice@a.test", ["bob@a.test"], MSG)
        # Still no relaying for it: claiming a local sender is not authenticating.
        smtp.ehlo()
        smtp.mail("alice@a.test")
        assert smtp.rcpt("someone@example.net")[0] == 550


def test_a_failed_auth_does_not_open_the_relay(mail):
    with mail.client(tls=True) as smtp:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            smtp.login("alice@a.test", "wrong-" + USER_PASSWORD)
        smtp.ehlo()
        smtp.mail("ext@example.org")
        assert smtp.rcpt("someone@example.net")[0] == 550
