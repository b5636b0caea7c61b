"""The SMTP conversation: extensions, STARTTLS and AUTH, submission, and the size, recipient and
quota limits, all over real sockets."""
from __future__ import annotations

import base64
import smtplib

import pytest
from mailsrv.serve import tcp_listener
from smtp_support import ADMIN, DOMAIN, USER_PASSWORD, make_harness, send
from smtp_support import mail  # noqa: F401  (the fixture)

from mailsrv.core.config import ConfigError, parse_config
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.access.smtp import start_listener
from mailsrv.core.tls import SELF_SIGNED_NAME, server_context

MSG = b"Subject: s\r\n\r\nbody\r\n"


def auth_plain(smtp: smtplib.SMTP, login: str, password: str) -> tuple[int, bytes]:
    return smtp.docmd("AUTH", "PLAIN " + base64.b64encode(f"\0{login}\0{password}".encode()).decode())


def test_ehlo_advertises_the_extensions_and_auth_only_after_starttls(mail):
    with mail.client() as smtp:
        code, _ = smtp.ehlo()
        assert code == 250
        for extension in ("size", "8bitmime", "pipelining", "enhancedstatuscodes", "starttls"):
            assert smtp.has_extn(extension), extension
        assert smtp.esmtp_features["size"] == str(51200 * 1024)
        assert not smtp.has_extn("auth")
        assert auth_plain(smtp, "alice@a.test", USER_PASSWORD) == (
            538, b"5.7.11 Encryption required for requested authentication mechanism")
        smtp.starttls(context=mail.client_tls())
        smtp.ehlo()
        assert smtp.esmtp_features["auth"].split() == ["LOGIN", "PLAIN"]
        assert not smtp.has_extn("starttls")


def test_replies_carry_enhanced_status_codes_but_only_for_ehlo_clients(mail):
    with mail.client() as smtp:
        smtp.ehlo()
        assert smtp.rcpt("alice@a.test") == (503, b"5.5.1 Error: need MAIL command")
        assert smtp.noop() == (250, b"2.0.0 OK")
    with mail.client() as smtp:
        smtp.helo()
        assert smtp.rcpt("alice@a.test") == (503, b"Error: need MAIL command")


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_auth_plain_and_login_after_starttls(mail, mechanism):
    with mail.client(tls=True) as smtp:
        smtp.ehlo()
        smtp.user, smtp.password = "alice@a.test", USER_PASSWORD
        method = smtp.auth_plain if mechanism == "PLAIN" else smtp.auth_login
        assert smtp.auth(mechanism, method) == (235, b"2.7.0 Authentication successful")
        send(smtp, "alice@a.test", ["someone@example.net"], MSG)
    [received] = [row for row in mail.spool_rows()]
    assert received == ("someone@example.net", "remote", "pending")


def test_the_received_header_names_the_protocol_with_tls_and_auth(mail):
    with mail.authenticated("alice@a.test") as smtp:
        spool_id = send(smtp, "alice@a.test", ["bob@a.test"], MSG)
    mail.deliver()
    [stored] = mail.messages("bob@a.test")
    assert f"\tby mx.test (mailsrv) with ESMTPSA id {spool_id}\r\n".encode() in stored


def test_wrong_passwords_system_admins_and_the_shared_lockout(tmp_path):
    for mail in make_harness(tmp_path, "[security]\nmax_failures_per_login = 3\n"):
        with mail.client(tls=True) as smtp:
            smtp.ehlo()
            # A system administrator is no mailbox: it may not send.
            assert auth_plain(smtp, *ADMIN)[0] == 535
            for _ in range(3):
                assert auth_plain(smtp, "alice@a.test", "Wrong-pass-123") == (
                    535, b"5.7.8 Authentication credentials invalid")
            # The right password now, but locked out.
            assert auth_plain(smtp, "alice@a.test", USER_PASSWORD) == (
                454, b"4.7.0 Too many failed logins; try again later")
        # One counter for every protocol: the SOAP login of that user is locked out too.
        with pytest.raises(MailsrvError) as refused:
            mail.server.login("alice@a.test", USER_PASSWORD, "127.0.0.1")
        assert refused.value.code == ResultCode.LOGIN_LOCKED


def test_plaintext_auth_when_the_config_allows_it(tmp_path):
    for mail in make_harness(tmp_path, "allow_plaintext_auth = true\n"):
        with mail.client() as smtp:
            smtp.ehlo()
            assert smtp.has_extn("auth")
            smtp.login("alice@a.test", USER_PASSWORD)
            send(smtp, "alice@a.test", ["someone@example.net"], MSG)


def test_submission_requires_auth_before_mail(mail):
    with mail.client(submission=True) as smtp:
        smtp.ehlo()
        assert smtp.mail("ext@example.org") == (530, b"5.7.0 Authentication required")
        smtp.starttls(context=mail.client_tls())
        smtp.ehlo()
        assert smtp.mail("ext@example.org")[0] == 530
        smtp.login("bob@a.test", USER_PASSWORD)
        send(smtp, "bob@a.test", ["alice@a.test"], MSG)


def test_the_mail_line_limit_is_each_session_own_and_not_raised_by_repeated_ehlo(mail):
    # RFC 5321 4.5.3.1.4: 512 bytes, plus 26 for SIZE's parameter (RFC 1870) and 10 for SMTPUTF8's,
    # once advertised. Another client's EHLOs, or this one's repeated, raise it no further.
    long_sender = "s" * 400 + "@example.org"
    with mail.client() as other:
        for _ in range(30):
            other.ehlo()
    with mail.client() as smtp:
        for _ in range(30):
            smtp.ehlo()
        line = f"MAIL FROM:<{long_sender}> SIZE=100"
        assert len(line) < 538
        assert smtp.docmd(line)[0] == 250
        smtp.rset()
        too_long = f"MAIL FROM:<{'s' * 560}@example.org>"
        assert smtp.docmd(too_long) == (500, b"5.5.2 Command line too long")


def test_size_limits_at_mail_rcpt_and_after_data(tmp_path):
    for mail in make_harness(tmp_path, "max_message_kb = 100\n"):
        mail.server.domains.update(mail.admin(), DOMAIN, {"maxmessagesize": 2})  # KB
        with mail.client() as smtp:
            smtp.ehlo()
            # The server cap, checked by SIZE at MAIL.
            assert smtp.mail("ext@example.org", ["SIZE=200000"])[0] == 552
            # The recipient domain's MaxMessageSize, checked by SIZE at RCPT…
            assert smtp.mail("ext@example.org", ["SIZE=5000"]) == (250, b"2.1.0 Sender OK")
            assert smtp.rcpt("alice@a.test") == (552, b"5.3.4 Message size exceeds fixed maximum message size")
            smtp.rset()
            # …and by the real size after DATA when the client declared none.
            smtp.mail("ext@example.org")
            assert smtp.rcpt("alice@a.test")[0] == 250
            code, reply = smtp.data(b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 40)
            assert (code, reply[:5]) == (552, b"5.3.4")
            # The transaction is over; a small message goes through on the same session.
            send(smtp, "ext@example.org", ["alice@a.test"], MSG)
        # The authenticated sender's own domain limit applies to mail it sends anywhere.
        with mail.authenticated("alice@a.test") as smtp:
            smtp.ehlo()
            assert smtp.mail("alice@a.test", ["SIZE=5000"])[0] == 552


def test_max_recipients_of_the_server_and_of_the_domain(tmp_path):
    for mail in make_harness(tmp_path, "max_recipients = 3\n"):
        for name in ("carol", "dave", "erin"):
            mail.add_user(DOMAIN, name)
        mail.server.domains.add(mail.admin(), "b.test", "", "postmaster", "Domain-pass-1", "", "", {})
        mail.server.domains.update(mail.admin(), DOMAIN, {"maxrecipients": 2})
        with mail.client() as smtp:
            smtp.ehlo()
            smtp.mail("ext@example.org")
            assert smtp.rcpt("alice@a.test")[0] == 250
            assert smtp.rcpt("bob@a.test")[0] == 250
            assert smtp.rcpt("carol@a.test") == (452, b"4.5.3 Too many recipients")  # a.test's limit
            assert smtp.rcpt("postmaster@b.test")[0] == 250
            assert smtp.rcpt("carol@a.test")[0] == 452  # the server's limit
            assert smtp.data(MSG)[0] == 250
        # Authenticated: the sender's domain limit counts every recipient.
        with mail.authenticated("alice@a.test") as smtp:
            smtp.ehlo()
            smtp.mail("alice@a.test")
            assert smtp.rcpt("x@example.net")[0] == 250
            assert smtp.rcpt("postmaster@b.test")[0] == 250
            assert smtp.rcpt("y@example.net")[0] == 452


def test_mailbox_quota_at_rcpt_and_after_data(mail):
    mail.add_user(DOMAIN, "small", user_settings={"maxsize": 1})  # MB
    megabyte = 1024 * 1024
    with mail.client() as smtp:
        smtp.ehlo()
        smtp.mail("ext@example.org", [f"SIZE={megabyte + 1}"])
        assert smtp.rcpt("small@a.test") == (452, b"4.2.2 <small@a.test>: mailbox full")
        smtp.rset()
        smtp.mail("ext@example.org")
        assert smtp.rcpt("small@a.test")[0] == 250
        big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 1100
        assert smtp.data(big) == (552, b"5.2.2 <small@a.test>: mailbox full")
        send(smtp, "ext@example.org", ["small@a.test"], b"Subject: fits\r\n\r\n" + (b"y" * 998 + b"\r\n") * 900)
    mail.deliver()
    # Now about 900 KB are used: a declared 200 KB no longer fits, 50 KB does.
    with mail.client() as smtp:
        smtp.ehlo()
        smtp.mail("ext@example.org", ["SIZE=200000"])
        assert smtp.rcpt("small@a.test")[0] == 452
        smtp.rset()
        smtp.mail("ext@example.org", ["SIZE=50000"])
        assert smtp.rcpt("small@a.test")[0] == 250
    # The domain's MaxMailboxSizeInMB applies to users without their own limit.
    mail.server.domains.update(mail.admin(), DOMAIN, {"maxmailboxsize": 1})
    with mail.client() as smtp:
        smtp.ehlo()
        smtp.mail("ext@example.org", [f"SIZE={megabyte + 1}"])
        assert smtp.rcpt("alice@a.test")[0] == 452


def test_a_broken_client_does_not_take_the_listener_down(mail):
    with mail.client() as smtp:
        smtp.sock.sendall(b"\xff\xfe garbage\r\n" + b"MAIL FROM:<" + b"x" * 5000 + b">\r\n")
        smtp.close()
    with mail.client() as smtp:
        smtp.ehlo()
        assert smtp.docmd("MAIL", "FROM:<bob@[192.0.2.1>")[0] == 553  # an unclosed domain literal: malformed
        assert smtp.mail("ext@example.org")[0] == 250
    with mail.client() as smtp:
        send(smtp, "ext@example.org", ["alice@a.test"], MSG)


def test_starttls_with_a_configured_certificate(mail, tmp_path):
    pem = mail.data_dir / "tls" / SELF_SIGNED_NAME  # made at the harness's first start
    configured = parse_config(f'data_dir = "{tmp_path}/other"\n[tls]\ncert_file = "{pem}"\nkey_file = "{pem}"\n')
    context = server_context(configured)
    assert not (tmp_path / "other" / "tls").exists()  # nothing generated when configured
    sock = tcp_listener("127.0.0.1", 0)
    listener = mail.call(start_listener(mail.server.intake, mail.server.auth, mail.server.config.smtp,
                                            sock, False, context))
    try:
        with smtplib.SMTP("127.0.0.1", sock.getsockname()[1], local_hostname="client.test") as smtp:
            smtp.starttls(context=mail.client_tls())
            assert smtp.ehlo()[0] == 250
    finally:
        mail.close_listener(listener)
    with pytest.raises(ConfigError, match="'tls.cert_file' and 'tls.key_file' must be given together"):
        server_context(parse_config(f'[tls]\ncert_file = "{pem}"\n'))
