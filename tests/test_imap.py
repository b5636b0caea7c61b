"""IMAP4rev1 on real loopback sockets with imaplib: logins and TLS, the extensions, the Maildir underneath."""
from __future__ import annotations

import imaplib
import os
import poplib
import re
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mailsrv.core.config import load_config
from mailsrv.mailstore.folders import Mailbox
from mailsrv.access.imap.listener import start_imap_listener
from mailsrv.access.pop3 import start_pop3_listener
from mailsrv.server import MailServer
from mailsrv.store.models import User
from mailsrv.core.tls import SELF_SIGNED_NAME, server_context
from mailbox_support import ALICE, BOB, MailboxHarness, mailbox, message  # noqa: F401
from smtp_support import USER_PASSWORD
from serve_support import Serving
from test_cli import database_url, write_config  # noqa: F401 (fixtures)


def fetch(client: imaplib.IMAP4, uid_set: str, items: str) -> list[tuple[bytes, bytes]]:
    """(response line, literal) pairs of a UID FETCH."""
    typ, data = client.uid("FETCH", uid_set, items)
    assert typ == "OK", data
    return [item for item in data if isinstance(item, tuple)]


def flags_by_uid(client: imaplib.IMAP4) -> dict[int, set[str]]:
    typ, data = client.uid("FETCH", "1:*", "(FLAGS)")
    assert typ == "OK", data
    result = {}
    for line in data:
        # imaplib also hands back the FETCH updates of earlier commands (no UID in those).
        uid = re.search(r"UID (\d+)", line.decode())
        if uid:
            result[int(uid[1])] = set(re.search(r"FLAGS \(([^)]*)\)", line.decode())[1].split())
    return result


def subjects(client: imaplib.IMAP4) -> list[str]:
    return [re.search(rb"Subject: (.*?)\r\n", literal)[1].decode()
            for _, literal in fetch(client, "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")]


def test_loopback_clients_may_log_in_without_tls(mailbox: MailboxHarness) -> None:
    plain = mailbox.imap(login=None, tls=False)
    # From loopback pymap already offers AUTH; STARTTLS is offered too.
    assert "STARTTLS" in plain.capabilities and "AUTH=PLAIN" in plain.capabilities
    plain.login(ALICE, USER_PASSWORD)
    assert plain.select("INBOX")[0] == "OK"
    plain.logout()


def test_login_disabled_before_starttls_for_remote_peers(mailbox: MailboxHarness) -> None:
    address, port = _listen_off_loopback(mailbox, start_imap_listener)
    client = imaplib.IMAP4(address, port, timeout=60)
    assert "LOGINDISABLED" in client.capabilities and "AUTH=PLAIN" not in client.capabilities
    with pytest.raises(imaplib.IMAP4.error):
        client.login(ALICE, USER_PASSWORD)
    client.starttls(ssl_context=mailbox.client_tls())
    assert "AUTH=PLAIN" in client.capabilities
    assert client.login(ALICE, USER_PASSWORD)[0] == "OK"
    client.logout()
    pop3 = poplib.POP3(address, _listen_off_loopback(mailbox, start_pop3_listener)[1], timeout=60)
    assert "USER" not in pop3.capa()
    with pytest.raises(poplib.error_proto, match="STLS"):
        pop3.user(ALICE)
    pop3.stls(context=mailbox.client_tls())
    pop3.user(ALICE)
    assert pop3.pass_(USER_PASSWORD).startswith(b"+OK")
    pop3.quit()


def test_plaintext_login_from_remote_peers_when_the_config_allows(mailbox: MailboxHarness) -> None:
    mailbox.server.config.listen.allow_plaintext_auth = True
    address, port = _listen_off_loopback(mailbox, start_imap_listener)
    client = imaplib.IMAP4(address, port, timeout=60)
    assert client.login(ALICE, USER_PASSWORD)[0] == "OK"
    client.logout()
    pop3 = poplib.POP3(address, _listen_off_loopback(mailbox, start_pop3_listener)[1], timeout=60)
    pop3.user(ALICE)
    assert pop3.pass_(USER_PASSWORD).startswith(b"+OK")
    pop3.quit()


def _listen_off_loopback(mailbox: MailboxHarness, starter: Any) -> tuple[str, int]:
    """A listener on this machine's own non-loopback address: its clients are not on loopback."""
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address to connect from")
    sock = socket.create_server((address, 0))
    mailbox.listeners.append(mailbox.call(starter(
        mailbox.server.mailboxes, mailbox.server.config, sock, server_context(mailbox.server.config), False,
        mailbox.subsystem)))
    return address, sock.getsockname()[1]


def _non_loopback_address() -> str | None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
        address = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_login_after_starttls_and_authenticate_plain(mailbox: MailboxHarness) -> None:
    client = mailbox.imap(login=None)
    assert "STARTTLS" not in client.capabilities
    typ, _ = client.authenticate("PLAIN", lambda _: f"\0{ALICE}\0{USER_PASSWORD}".encode())
    assert typ == "OK"
    assert client.select("INBOX")[0] == "OK"
    client.logout()


def test_implicit_tls_port(mailbox: MailboxHarness) -> None:
    client = mailbox.imaps()
    assert "STARTTLS" not in client.capabilities and "AUTH=PLAIN" in client.capabilities
    assert client.login(ALICE, USER_PASSWORD)[0] == "OK"
    client.logout()


def test_wrong_password_answers_like_unknown_user_and_disabled_users_cannot_log_in(
        mailbox: MailboxHarness) -> None:
    answers = []
    for login, password in ((ALICE, "wrong"), ("nobody@a.test", USER_PASSWORD), ("sysadmin", "Secret-pass-123")):
        client = mailbox.imap(login=None)
        with pytest.raises(imaplib.IMAP4.error) as failure:
            client.login(login, password)
        answers.append(str(failure.value))
        client.logout()
    assert len(set(answers)) == 1
    with mailbox.server.store.session() as s:
        bob = s.execute(select(User).where(User.name == "bob")).scalar_one()
        bob.settings = {**bob.settings, "isenabled": False}
    client = mailbox.imap(login=None)
    with pytest.raises(imaplib.IMAP4.error) as failure:
        client.login(BOB, USER_PASSWORD)
    assert str(failure.value) == answers[0]
    client.logout()


def test_failed_logins_count_against_the_limit_shared_with_pop3(mailbox: MailboxHarness) -> None:
    for _ in range(mailbox.server.config.security.max_failures_per_login):
        client = mailbox.imap(login=None)
        with pytest.raises(imaplib.IMAP4.error):
            client.login(ALICE, "wrong")
        client.logout()
    # Locked out: now even the right password is refused, over POP3 as well.
    pop3 = mailbox.pop3(login=None)
    pop3.user(ALICE)
    with pytest.raises(poplib.error_proto):
        pop3.pass_(USER_PASSWORD)
    pop3.quit()
    bob = mailbox.imap(BOB)
    assert bob.select("INBOX")[0] == "OK"
    bob.logout()


def test_delivered_mail_reaches_imap_in_arrival_order_with_crlf_lines(mailbox: MailboxHarness) -> None:
    for n in range(1, 6):
        mailbox.deliver_to(ALICE, message(f"number {n}", "line one\r\nline two\r\n"))
    client = mailbox.imap()
    typ, data = client.select("INBOX")
    assert data == [b"5"]
    assert subjects(client) == [f"number {n}" for n in range(1, 6)]
    for head, literal in fetch(client, "1:*", "(RFC822.SIZE BODY.PEEK[])"):
        assert b"\n" not in literal.replace(b"\r\n", b"")
        assert int(re.search(rb"RFC822.SIZE (\d+)", head)[1]) == len(literal)
        assert literal.endswith(b"line one\r\nline two\r\n")
    client.logout()


def test_flags_persist_across_sessions(mailbox: MailboxHarness) -> None:
    mailbox.deliver_to(ALICE, message("keep me"))
    client = mailbox.imap()
    client.select("INBOX")
    client.uid("STORE", "1", "+FLAGS", r"(\Flagged \Seen)")
    client.logout()
    client = mailbox.imap()
    client.select("INBOX")
    assert {r"\Flagged", r"\Seen"} <= flags_by_uid(client)[1]
    client.logout()


def test_email_and_thread_ids_are_kept_across_sessions_and_flag_changes(mailbox: MailboxHarness) -> None:
    """RFC 8474: each message has its own EMAILID and THREADID, the same in every session."""
    for subject in ("first", "second"):
        mailbox.deliver_to(ALICE, message(subject))

    def object_ids(client: imaplib.IMAP4) -> dict[int, tuple[str, str]]:
        typ, data = client.uid("FETCH", "1:*", "(EMAILID THREADID)")
        assert typ == "OK", data
        return {int(re.search(r"UID (\d+)", line)[1]): (re.search(r"EMAILID (\S+)", line)[1],
                                                        re.search(r"THREADID (\S+)", line)[1])
                for line in map(bytes.decode, data)}

    client = mailbox.imap()
    client.select("INBOX")
    first = object_ids(client)
    client.uid("STORE", "1", "+FLAGS", r"(\Seen)")
    assert object_ids(client) == first
    client.logout()
    client = mailbox.imap()
    client.select("INBOX")
    assert object_ids(client) == first
    client.logout()
    assert len(first) == 2 and len({ids[0] for ids in first.values()}) == 2


def test_users_see_only_their_own_mail(mailbox: MailboxHarness) -> None:
    mailbox.deliver_to(ALICE, message("for alice"))
    mailbox.deliver_to(BOB, message("for bob"))
    bob = mailbox.imap(BOB)
    bob.select("INBOX")
    assert subjects(bob) == ["for bob"]
    # Folder names are relative to the user's own Maildir; no name leads out of it.
    for name in ("../alice/Maildir", "/../../alice", ".."):
        assert bob.select(name)[0] == "NO"
    bob.logout()


def test_special_use_folders_are_listed_and_cannot_be_created_twice(mailbox: MailboxHarness) -> None:
    client = mailbox.imap()
    typ, listing = client.list()
    attributes = {line.decode().rsplit(" ", 1)[1]: line.decode() for line in listing}
    for name in ("Sent", "Drafts", "Trash", "Junk"):
        assert f"\\{name}" in attributes[name]
    assert client.create("Sent")[1] == [b"[ALREADYEXISTS] Mailbox already exists."]
    assert client.create("Projects")[0] == "OK"
    assert client.create("Projects")[0] == "NO"
    client.logout()


def test_special_folders_appear_for_mailboxes_made_before_them(mailbox: MailboxHarness) -> None:
    junk = mailbox.maildir(ALICE) / ".Junk"
    for part in ("cur", "new", "tmp"):
        (junk / part).rmdir()
    junk.rmdir()
    client = mailbox.imap()
    assert client.select("Junk")[0] == "OK"
    client.logout()


def test_folder_names_in_modified_utf7_round_trip(mailbox: MailboxHarness) -> None:
    client = mailbox.imap()
    encoded = "&AMk-t&AOk- &ZeVnLIqe-"  # "Été 日本語"
    assert client.create(f'"{encoded}"')[0] == "OK"
    typ, listing = client.list()
    assert any(line.decode().endswith(f'"{encoded}"') or line.decode().endswith(encoded) for line in listing)
    assert client.select(f'"{encoded}"')[0] == "OK"
    client.logout()
    # On disk the name is readable text, as the web interface shows it.
    assert (mailbox.maildir(ALICE) / ".Été 日本語").is_dir()


def test_uidplus_append_copy_move_and_uid_expunge(mailbox: MailboxHarness) -> None:
    client = mailbox.imap()
    typ, data = client.append("INBOX", None, None, message("appended"))
    assert typ == "OK"
    assert re.match(rb"\[APPENDUID \d+ 1\]", data[0])
    client.select("INBOX")
    assert client.uid("COPY", "1", "Drafts")[0] == "OK"
    assert re.fullmatch(rb"\d+ 1 1", client.response("COPYUID")[1][-1])
    assert client.uid("MOVE", "1", "Trash")[0] == "OK"
    assert re.fullmatch(rb"\d+ 1 1", client.response("COPYUID")[1][-1])
    client.select("INBOX")
    assert client.uid("SEARCH", "ALL")[1] == [b""]
    for folder in ("Drafts", "Trash"):
        client.select(folder)
        assert subjects(client) == ["appended"]
        literal = fetch(client, "1", "(BODY.PEEK[])")[0][1]
        assert literal.endswith(b"\r\n\r\nHello.\r\n")
    client.select("Trash")
    client.uid("STORE", "1", "+FLAGS", r"(\Deleted)")
    assert client.uid("EXPUNGE", "1")[0] == "OK"
    assert client.uid("SEARCH", "ALL")[1] == [b""]
    client.logout()


def test_namespace_and_unselect(mailbox: MailboxHarness) -> None:
    mailbox.deliver_to(ALICE, message("stays"))
    client = mailbox.imap()
    assert client.namespace() == ("OK", [b'(("" "/")) NIL NIL'])
    client.select("INBOX")
    client.uid("STORE", "1", "+FLAGS", r"(\Deleted)")
    assert client.unselect()[0] == "OK"
    # UNSELECT, unlike CLOSE, expunges nothing.
    client.select("INBOX")
    assert subjects(client) == ["stays"]
    client.logout()


def test_idle_announces_new_mail(mailbox: MailboxHarness) -> None:
    client = mailbox.imap()
    client.select("INBOX")
    client.send(b"i1 IDLE\r\n")
    assert client.readline().startswith(b"+ ")
    mailbox.deliver_to(ALICE, message("while idling"))
    assert client.readline() == b"* 1 EXISTS\r\n"
    client.send(b"DONE\r\n")
    while not (line := client.readline()).startswith(b"i1 "):
        pass
    assert line.startswith(b"i1 OK")
    client.logout()


def test_a_lock_left_by_a_crash_does_not_block_the_next_login(mailbox: MailboxHarness) -> None:
    mailbox.deliver_to(ALICE, message("after the crash"))
    client = mailbox.imap()
    client.select("INBOX")
    client.logout()
    # What a process killed while holding the uidlist lock leaves behind (pymap honours it 10 min).
    lock = mailbox.maildir(ALICE) / "dovecot-uidlist.lock"
    lock.touch()
    two_minutes_ago = time.time() - 120
    os.utime(lock, (two_minutes_ago, two_minutes_ago))
    client = mailbox.imap()
    assert client.select("INBOX") == ("OK", [b"1"])
    assert subjects(client) == ["after the crash"]
    client.logout()


def test_a_lock_left_by_a_killed_server_does_not_block_logins_after_restart(mailbox: MailboxHarness) -> None:
    mailbox.deliver_to(ALICE, message("survives"))
    (mailbox.maildir(ALICE) / "dovecot-uidlist.lock").touch()  # killed a moment ago, mid-write
    mailbox.restart()
    client = mailbox.imap()
    assert client.select("INBOX") == ("OK", [b"1"])
    client.logout()


def test_web_flag_changes_and_moves_show_in_imap(mailbox: MailboxHarness) -> None:
    mailbox.deliver_to(ALICE, message("flag me"))
    mailbox.deliver_to(ALICE, message("move me"))
    client = mailbox.imap()
    client.select("INBOX")
    assert r"\Flagged" not in flags_by_uid(client)[1]
    web = Mailbox(mailbox.maildir(ALICE))
    keys = {s.subject: s.key for s in web.page("INBOX", 1).messages}
    web.set_flags("INBOX", keys["flag me"], add="F")
    web.move("INBOX", keys["move me"], "Junk")
    client.noop()
    assert r"\Flagged" in flags_by_uid(client)[1]
    assert subjects(client) == ["flag me"]
    client.select("Junk")
    assert subjects(client) == ["move me"]
    client.logout()



def test_mailsrv_serve_runs_the_imap_and_pop3_listeners(tmp_path: Path, database_url: str,
                                                          env: dict[str, str]) -> None:
    config = write_config(tmp_path / "mailsrv.toml", database_url)
    config.write_text(config.read_text().replace(
        'imap = ""', 'imap = "127.0.0.1:0"').replace('pop3s = ""', 'pop3s = "127.0.0.1:0"'))
    server = MailServer(load_config(config))
    try:
        server.admins.reset_primary("sysadmin", "Secret-pass-123")
        admin = server.login("sysadmin", "Secret-pass-123", "127.0.0.1")
        server.domains.add(admin, "a.test", "", "postmaster", "Domain-pass-1", "", "", {})
        server.users.add(admin, "alice", USER_PASSWORD, "a.test", "", "", False)
    finally:
        server.close()
    with Serving(config, env) as serving:
        ports: dict[str, int] = {}
        while len(ports) < 2:
            match = serving.wait_for(re.compile(r"(IMAP|POP3S) listener on [\d.]+:(\d+)"))
            ports[match[1]] = int(match[2])
        tls = ssl.create_default_context(cafile=str(tmp_path / "data" / "tls" / SELF_SIGNED_NAME))
        tls.check_hostname = False
        imap = imaplib.IMAP4("127.0.0.1", ports["IMAP"], timeout=60)
        imap.starttls(ssl_context=tls)
        imap.login(ALICE, USER_PASSWORD)
        assert imap.select("Sent") == ("OK", [b"0"])
        imap.logout()
        pop3 = poplib.POP3_SSL("127.0.0.1", ports["POP3S"], context=tls, timeout=60)
        pop3.user(ALICE)
        pop3.pass_(USER_PASSWORD)
        assert pop3.stat() == (0, 0)
        pop3.quit()
        assert serving.stop() == 0


def test_a_session_sees_deliveries_flags_and_expunges_made_after_its_scan(mailbox: MailboxHarness) -> None:
    # Scans are reused and updated file by file (mailsrv/access/imap/maildir.py): whatever other
    # writers do between two commands must still show, with UIDs and internal dates unchanged.
    for n in range(3):
        mailbox.deliver_to(ALICE, message(f"number {n}"))
    client = mailbox.imap()
    client.select("INBOX")
    dates = _internal_dates(client)
    assert sorted(dates) == [1, 2, 3]
    other = mailbox.imap()
    other.select("INBOX")
    other.uid("STORE", "2", "+FLAGS", r"(\Flagged)")
    other.uid("STORE", "1", "+FLAGS", r"(\Deleted)")
    other.expunge()
    other.logout()
    mailbox.deliver_to(ALICE, message("number 3"))
    for _ in range(2):  # at once, and once the folder's timestamps have settled
        client.noop()
        flags = flags_by_uid(client)
        assert sorted(flags) == [2, 3, 4]
        assert r"\Flagged" in flags[2] and r"\Flagged" not in flags[3]
        assert {uid: date for uid, date in _internal_dates(client).items() if uid != 4} == \
            {uid: dates[uid] for uid in (2, 3)}
        assert subjects(client) == ["number 1", "number 2", "number 3"]
        time.sleep(0.2)
    client.logout()


def test_an_appended_message_keeps_its_internal_date_through_flag_changes(mailbox: MailboxHarness) -> None:
    client = mailbox.imap()
    client.append("INBOX", None, '"01-Jan-2020 10:00:00 +0000"', message("old one"))
    client.select("INBOX")
    before = _internal_dates(client)
    assert list(before.values()) == [b"01-Jan-2020 10:00:00 +0000"]
    client.uid("STORE", "1", "+FLAGS", r"(\Seen)")
    time.sleep(0.2)
    client.noop()
    assert _internal_dates(client) == before
    client.logout()


def test_a_truncated_uidlist_is_rebuilt_not_trusted(mailbox: MailboxHarness) -> None:
    for n in range(3):
        mailbox.deliver_to(ALICE, message(f"number {n}"))
    client = mailbox.imap()
    client.select("INBOX")
    assert len(flags_by_uid(client)) == 3
    client.logout()
    uidlist = mailbox.maildir(ALICE) / "dovecot-uidlist"
    uidlist.write_text(uidlist.read_text().splitlines()[0] + "\n")  # the header line alone
    client = mailbox.imap()
    assert client.select("INBOX") == ("OK", [b"3"])
    assert len(flags_by_uid(client)) == 3
    client.logout()


def _internal_dates(client: imaplib.IMAP4) -> dict[int, bytes]:
    typ, data = client.uid("FETCH", "1:*", "(INTERNALDATE)")
    assert typ == "OK", data
    found = (re.search(rb'UID (\d+).*INTERNALDATE "([^"]+)"|INTERNALDATE "([^"]+)".*UID (\d+)', line)
             for line in data if isinstance(line, bytes))
    return {int(m[1] or m[4]): m[2] or m[3] for m in found if m}


def test_size_and_internal_date_answered_from_the_scan_match_the_parsed_message(mailbox: MailboxHarness) -> None:
    mailbox.deliver_to(ALICE, message("sized", "line one\r\nline two\r\n"))
    client = mailbox.imap()
    client.append("INBOX", None, '"01-Jan-2020 10:00:00 +0000"', message("appended"))
    client.select("INBOX")
    pattern = rb'(RFC822.SIZE \d+|INTERNALDATE "[^"]+")'
    for uid in ("1", "2"):
        lean = client.uid("FETCH", uid, "(RFC822.SIZE INTERNALDATE)")[1][0]
        parsed = client.uid("FETCH", uid, "(RFC822.SIZE INTERNALDATE ENVELOPE)")[1][0]  # pymap's path
        assert re.findall(pattern, lean) == re.findall(pattern, parsed[0] if isinstance(parsed, tuple) else parsed)
        assert len(re.findall(pattern, lean)) == 2
    client.logout()


def test_every_session_reports_the_same_uidvalidity_and_uidnext(mailbox: MailboxHarness) -> None:
    for n in range(2):
        mailbox.deliver_to(ALICE, message(f"number {n}"))
    seen = set()
    for _ in range(3):  # the first session syncs the uidlist, the later ones find it in sync
        client = mailbox.imap()
        client.select("INBOX")
        seen.add((client.response("UIDVALIDITY")[1][0], client.response("UIDNEXT")[1][0]))
        client.logout()
        time.sleep(0.2)  # the folder's timestamps settle, so the next session may reuse this one's work
    ((validity, uidnext),) = seen
    assert int(validity) > 0 and uidnext == b"3"


def test_recent_goes_to_exactly_one_session_and_new_mail_stays_in_new_until_its_flags_change(
        mailbox: MailboxHarness) -> None:
    # As Dovecot (maildir_empty_new = no): \Recent is the folder's first-recent UID, not a move
    # of every file out of new/ at SELECT.
    for n in range(3):
        mailbox.deliver_to(ALICE, message(f"number {n}"))
    new = mailbox.maildir(ALICE) / "new"
    watcher = mailbox.imap()
    assert watcher.status("INBOX", "(RECENT)")[1] == [b'INBOX (RECENT 3)']
    examined = mailbox.imap()
    examined.select("INBOX", readonly=True)
    assert examined.response("RECENT")[1] == [b"3"]
    first = mailbox.imap()
    first.select("INBOX")
    assert first.response("RECENT")[1] == [b"3"]
    assert all(r"\Recent" in flags for flags in flags_by_uid(first).values())
    assert len(os.listdir(new)) == 3
    second = mailbox.imap()
    second.select("INBOX")
    assert second.response("RECENT")[1] == [b"0"]
    assert not any(r"\Recent" in flags for flags in flags_by_uid(second).values())
    assert watcher.status("INBOX", "(RECENT)")[1] == [b'INBOX (RECENT 0)']
    mailbox.deliver_to(ALICE, message("number 3"))
    assert watcher.status("INBOX", "(RECENT)")[1] == [b'INBOX (RECENT 1)']
    second.uid("STORE", "1", "+FLAGS", r"(\Seen)")
    second.logout()
    assert len(os.listdir(new)) == 3  # the other two, and the one delivered since
    (seen,) = [name for name in os.listdir(mailbox.maildir(ALICE) / "cur")]
    assert seen.endswith(":2,S")
    third = mailbox.imap()
    third.select("INBOX")
    assert third.response("RECENT")[1] == [b"1"]
    assert {uid for uid, flags in flags_by_uid(third).items() if r"\Recent" in flags} == {4}
    for client in (watcher, examined, first, third):
        client.logout()


def test_internal_date_is_the_files_mtime_also_after_a_flag_change_moves_it_out_of_new(
        mailbox: MailboxHarness) -> None:
    # The scan no longer stats each file: the date is read when a client asks for it.
    mailbox.deliver_to(ALICE, message("dated"))
    (path,) = (mailbox.maildir(ALICE) / "new").iterdir()
    os.utime(path, (1_600_000_000, 1_600_000_000))
    client = mailbox.imap()
    client.select("INBOX")
    client.uid("STORE", "1", "+FLAGS", r"(\Flagged)")
    assert _internal_dates(client) == {1: b"13-Sep-2020 12:26:40 +0000"}
    assert [p.name.endswith(":2,F") for p in (mailbox.maildir(ALICE) / "cur").iterdir()] == [True]
    client.logout()


def test_envelope_and_header_fields_read_from_the_header_section_match_the_whole_message(
        mailbox: MailboxHarness) -> None:
    body = "--b\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n--b--\r\n"
    mailbox.deliver_to(ALICE, message("multi", body).replace(
        b"\r\n\r\n", b"\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n", 1))
    client = mailbox.imap()
    client.select("INBOX")
    time.sleep(0.2)  # settled: the scan's messages answer (an unsettled folder gets pymap's own)
    header_only = client.uid("FETCH", "1", "(ENVELOPE RFC822.HEADER)")[1]
    whole = client.uid("FETCH", "1", "(ENVELOPE RFC822.HEADER BODYSTRUCTURE)")[1]  # parses it all
    envelope = re.compile(rb"ENVELOPE \(.*?\)\)")

    def flat(data: list[Any]) -> bytes:
        return b"".join(part for item in data for part in (item if isinstance(item, tuple) else (item,)))
    assert envelope.search(flat(header_only))[0] == envelope.search(flat(whole))[0]
    assert b"Subject: multi\r\n" in flat(header_only) and b"Subject: multi\r\n" in flat(whole)
    assert b"first part" not in flat(header_only)
    client.logout()
