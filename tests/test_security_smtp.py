"""Security #8, SMTP intake: who an authenticated user may send as, bare line ends, alias fan-out
and a full disk, over real sockets, Maildirs and spool."""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from smtp_peer import Peer, remote_config
from smtp_support import DOMAIN, MailHarness, make_harness, send
from smtp_support import mail, spooled  # noqa: F401  (the fixtures)


def spoofable(mail: MailHarness) -> None:
    """b.test with its user dadmin; sales@a.test reaching alice, team@a.test reaching only bob."""
    actor = mail.admin()
    mail.server.domains.add(actor, "b.test", "", "postmaster", "Domain-pass-1", "", "", {})
    mail.add_user("b.test", "dadmin")
    mail.server.aliases.add(actor, DOMAIN, "sales", ["alice@a.test"])
    mail.server.aliases.add(actor, DOMAIN, "team", ["bob@a.test"])
    mail.server.domain_aliases.add(actor, DOMAIN, "alias-a.test", False)


@pytest.mark.parametrize("submission", [True, False])
def test_an_envelope_sender_the_login_does_not_own_is_refused_at_mail_from(mail, submission):
    spoofable(mail)
    with mail.authenticated("alice@a.test", submission=submission) as smtp:
        smtp.ehlo()
        for sender in ("dadmin@b.test", "boss@remote.test", "bob@a.test", "team@a.test", "bob@alias-a.test"):
            code, reply = smtp.mail(sender)
            assert (code, reply[:5]) == (553, b"5.7.1"), sender
            assert sender.encode() in reply
        assert smtp.rcpt("friend@remote.test")[0] == 503  # no transaction was started
    assert mail.spool_rows() == []


@pytest.mark.parametrize("headers", [
    b"From: dadmin@b.test\r\n",
    b"From: Alice <alice@a.test>, Boss <boss@remote.test>\r\n",  # every From address must be owned
    b"From: alice@a.test\r\nSender: dadmin@b.test\r\n",
    b"From: alice@a.test\r\nFrom: bob@a.test\r\n",
    b"From: someone\r\n",
])
def test_a_from_or_sender_header_the_login_does_not_own_is_refused_after_data(mail, headers):
    spoofable(mail)
    with mail.authenticated("alice@a.test") as smtp:
        smtp.ehlo()
        assert smtp.mail("alice@a.test")[0] == 250
        assert smtp.rcpt("bob@a.test")[0] == 250
        code, reply = smtp.data(headers + b"Subject: pay this\r\n\r\nbody\r\n")
        assert (code, reply[:5]) == (553, b"5.7.1"), reply
    assert mail.spool_rows() == []
    mail.deliver()
    assert mail.messages("bob@a.test") == []


def test_own_addresses_aliases_domain_aliases_and_the_null_sender_are_delivered(mail):
    spoofable(mail)
    sent = [("alice@a.test", b"From: Alice <alice@a.test>\r\n"),
            ("sales@a.test", b"From: Sales <sales@a.test>\r\nSender: alice@a.test\r\n"),
            ("Alice@Alias-A.test", b"From: alice@alias-a.test, sales@a.test\r\n"),
            ("<>", b"From: alice@a.test\r\n"),
            ("alice@a.test", b"Subject: no From at all\r\n")]
    for submission in (True, False):
        with mail.authenticated("alice@a.test", submission=submission) as smtp:
            for sender, headers in sent:
                send(smtp, sender, ["bob@a.test"], headers + b"To: bob@a.test\r\n\r\nbody\r\n")
    mail.deliver()
    # What follows our trace headers (the last ends in "for <bob@a.test>; date") is the message as sent.
    stored = [m[m.index(b"\r\n", m.index(b"\tfor <bob@a.test>")) + 2:] for m in mail.messages("bob@a.test")]
    assert sorted(stored) == sorted(headers + b"To: bob@a.test\r\n\r\nbody\r\n" for _, headers in sent * 2)


SMUGGLED = (b"MAIL FROM:<dadmin@a.test>\r\nRCPT TO:<bob@a.test>\r\nDATA\r\n"
            b"From: dadmin@a.test\r\nSubject: smuggled\r\n\r\npay this\r\n")


@pytest.mark.parametrize("end", [b"\r.\r", b"\n.\n", b"\r.\r\n", b"\n.\r\n", b"\r\n.\n"])
@pytest.mark.parametrize("submission", [False, True])
def test_bare_cr_or_lf_in_data_is_refused_and_a_smuggled_transaction_never_runs(mail, end, submission):
    with (mail.authenticated("alice@a.test", submission=True) if submission else mail.client()) as smtp:
        smtp.ehlo()
        assert smtp.mail("alice@a.test" if submission else "ext@example.org")[0] == 250
        assert smtp.rcpt("alice@a.test")[0] == 250
        smtp.putcmd("data")
        assert smtp.getreply()[0] == 354
        smtp.sock.sendall(b"Subject: hello\r\n\r\nhello" + end + SMUGGLED + b".\r\n")
        code, reply = smtp.getreply()
        assert (code, reply[:5]) == (550, b"5.6.0"), reply
        # One answer for the whole DATA: nothing of the smuggled commands was read as a command.
        assert smtp.noop() == (250, b"2.0.0 OK")
    assert mail.spool_rows() == []
    mail.deliver()
    assert mail.messages("alice@a.test") == [] and mail.messages("bob@a.test") == []


@pytest.fixture
def relay(tmp_path, port):
    for harness in make_harness(tmp_path, remote_config(port)):
        harness.dns.add({("peer.test", "MX"): ["10 mx.peer.test."], ("mx.peer.test", "A"): ["127.0.0.1"]})
        peer = Peer("127.0.0.1", port)
        try:
            yield harness, peer
        finally:
            peer.stop()


def test_a_next_hop_never_receives_a_bare_cr_or_lf(relay):
    mail, peer = relay
    clean = b"From: alice@a.test\r\nSubject: clean\r\n\r\nline one\r\n.line two\r\n"
    with mail.authenticated("alice@a.test") as smtp:
        for end in (b"\r.\r", b"\n.\n", b"\n"):
            smtp.ehlo()
            smtp.mail("alice@a.test")
            smtp.rcpt("friend@peer.test")
            code, reply = smtp.data(b"From: alice@a.test\r\n\r\nhi" + end + SMUGGLED)
            assert (code, reply[:5]) == (550, b"5.6.0"), reply
        send(smtp, "alice@a.test", ["friend@peer.test"], clean)
    mail.deliver()
    [arrival] = peer.arrivals
    assert arrival.content.endswith(clean)
    body = arrival.content.replace(b"\r\n", b"")
    assert b"\r" not in body and b"\n" not in body


def externals(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{n}@peer.test" for n in range(count)]


def test_expanded_external_targets_count_against_the_domains_max_recipients(relay):
    mail, peer = relay  # a.test keeps the default maxrecipients = 200
    actor = mail.admin()
    mail.server.aliases.add(actor, DOMAIN, "everyone", externals("e", 1000))
    mail.add_user(DOMAIN, "carol", forwarding_addresses=externals("f", 201))  # forwarding counts too
    mail.server.aliases.add(actor, DOMAIN, "half", externals("h", 150))
    mail.server.aliases.add(actor, DOMAIN, "other-half", externals("o", 150))
    mail.server.aliases.add(actor, DOMAIN, "few", externals("w", 3))
    with mail.client() as smtp:
        smtp.ehlo()
        assert smtp.mail("ext@example.org")[0] == 250
        for address in ("everyone@a.test", "carol@a.test"):
            code, reply = smtp.rcpt(address)
            assert (code, reply[:5]) == (550, b"5.5.3"), reply  # never fits: no point in retrying
            assert b"expands to more recipients than allowed" in reply
        smtp.putcmd("data")
        assert smtp.getreply()[0] == 503  # no recipient was accepted
        assert mail.spool_rows() == []
        assert smtp.rset()[0] == 250
        assert smtp.mail("ext@example.org")[0] == 250
        assert smtp.rcpt("half@a.test")[0] == 250
        assert smtp.rcpt("other-half@a.test") == (452, b"4.5.3 Too many recipients")  # 300 > 200: later
        assert smtp.rcpt("alice@a.test")[0] == 250  # 151
        assert smtp.data(b"Subject: half\r\n\r\nhi\r\n")[0] == 250
        send(smtp, "ext@example.org", ["few@a.test"], b"Subject: few\r\n\r\nhi\r\n")
    assert sorted(kind for _, kind, _ in mail.spool_rows()) == ["local"] + ["remote"] * 153
    mail.deliver()
    delivered = [r for a in peer.arrivals for r in a.recipients]
    assert sorted(delivered) == sorted(externals("h", 150) + externals("w", 3))


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A real small filesystem mounted on `path` for the block (the tests run as root, as CI does)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


@pytest.fixture
def small_spool(spooled):
    """The spool directory of a harness that spools local mail too, on a 4 MiB tmpfs, its free
    space set by `fill`."""
    with tmpfs(spooled.data_dir / "spool", "4m") as spool:
        yield spool


def fill(spool: Path, leave: int) -> None:
    """Grow spool/filler until about `leave` bytes are free (0: until the disk is full)."""
    with open(spool / "filler", "ab") as filler:
        try:
            while (free := shutil.disk_usage(spool).free) > leave:
                filler.write(b"\0" * min(free - leave, 1 << 20))
                filler.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC and leave == 0


def test_a_full_disk_answers_452_4_3_1_and_loses_nothing_accepted(spooled, small_spool):
    mail = spooled
    megabyte = 1 << 20
    big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 3 * 1024
    with mail.client() as smtp:
        first = send(smtp, "ext@example.org", ["alice@a.test"], b"Subject: before\r\n\r\nkept\r\n")
        fill(small_spool, 2 * megabyte)
        # The message does not fit: found out while spooling it.
        smtp.ehlo()
        assert smtp.mail("ext@example.org")[0] == 250
        assert smtp.rcpt("alice@a.test")[0] == 250
        assert smtp.data(big) == (452, b"4.3.1 Insufficient system storage")
        assert sorted(os.listdir(small_spool)) == [first, "filler"]  # nothing half-written left
        # Known at MAIL: a declared SIZE beyond the free space, or a full disk.
        assert smtp.mail("ext@example.org", [f"SIZE={len(big)}"]) == (452, b"4.3.1 Insufficient system storage")
        fill(small_spool, 0)
        assert smtp.mail("ext@example.org") == (452, b"4.3.1 Insufficient system storage")
        (small_spool / "filler").unlink()
        send(smtp, "ext@example.org", ["alice@a.test"], big)
    mail.deliver()
    stored = mail.messages("alice@a.test")
    assert sorted(m[-len(big):] == big for m in stored) == [False, True]
    assert any(m.endswith(b"Subject: before\r\n\r\nkept\r\n") for m in stored)
    assert mail.spool_rows() == []


def test_a_full_mailbox_disk_answers_452_4_3_1_and_leaves_nothing_half_written(mail):
    """Mail delivered at acceptance is written on the mailbox's disk: when that one is full, the
    client is told to come back later and no partial copy is left in tmp/ or new/."""
    maildir = mail.maildir("alice@a.test")
    shutil.rmtree(maildir)
    with tmpfs(maildir, "4m"):
        mail.server.disk.create_maildir(maildir)
        with mail.client() as smtp:
            send(smtp, "ext@example.org", ["alice@a.test"], b"Subject: before\r\n\r\nkept\r\n")
            fill(maildir, 1 << 20)
            smtp.ehlo()
            assert smtp.mail("ext@example.org")[0] == 250
            assert smtp.rcpt("alice@a.test")[0] == 250
            big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 2 * 1024
            assert smtp.data(big) == (452, b"4.3.1 Insufficient system storage")
            assert os.listdir(maildir / "tmp") == []
            (maildir / "filler").unlink()
            send(smtp, "ext@example.org", ["alice@a.test"], big)
        stored = mail.messages("alice@a.test")
        assert [m.endswith(b"kept\r\n") for m in stored] == [True, False] or \
            [m.endswith(b"kept\r\n") for m in stored] == [False, True]
        assert any(m.endswith(big) for m in stored)


def test_a_full_database_disk_answers_452_4_3_1(tmp_path):
    """SQLite's "database or disk is full": the data directory (database, Maildirs) fills up while
    the spool, on a filesystem of its own, still has room."""
    if os.environ.get("MAILSRV_TEST_DATABASE_URL"):
        pytest.skip("the database is not in the data directory")
    with tmpfs(tmp_path / "data", "16m") as data_dir:
        for mail in make_harness(tmp_path):
            with tmpfs(data_dir / "spool", "4m"):
                with mail.client() as smtp:
                    conn = mail.server.store.engine.raw_connection()  # outside a transaction, or it cannot run
                    try:  # the WAL emptied: the next write must grow the file
                        assert conn.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
                    finally:
                        conn.close()
                    fill(data_dir, 0)
                    smtp.ehlo()
                    assert smtp.mail("ext@example.org")[0] == 250
                    assert smtp.rcpt("alice@a.test")[0] == 250
                    assert smtp.data(b"Subject: one\r\n\r\nbody\r\n") == (452, b"4.3.1 Insufficient system storage")
                    (data_dir / "filler").unlink()
                    send(smtp, "ext@example.org", ["alice@a.test"], b"Subject: two\r\n\r\nbody\r\n")
                mail.deliver()
            [stored] = mail.messages("alice@a.test")
            assert stored.endswith(b"Subject: two\r\n\r\nbody\r\n")
