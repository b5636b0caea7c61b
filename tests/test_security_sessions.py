"""Security #8, logins and sessions: the brute-force limit as no switch for strangers, password
changes ending sessions, web uploads bounded while streamed, and logins on a full disk."""
from __future__ import annotations

import datetime as dt
import errno
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailbox_support import ALICE, MailboxHarness, message
from smtp_support import make_harness


def _fill(directory: Path) -> None:
    """Write a file into `directory` until its file system has no byte left."""
    with open(directory / "filler", "wb", buffering=0) as filler:
        for size in (65536, 512):  # then the last partial block
            try:
                while True:
                    filler.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC


@pytest.fixture
def small_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MailboxHarness]:
    """A mailbox harness whose data directory and SQLite database are on an 8 MB tmpfs."""
    # The SQLite file on the small disk is what is under test, whatever database the suite uses.
    monkeypatch.delenv("MAILSRV_TEST_DATABASE_URL", raising=False)
    data = tmp_path / "data"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(data)], check=True)
    # As `mailsrv serve` does: pymap renames its temporary files into the Maildir.
    (data / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(data / "tmp"))
    try:
        yield from make_harness(tmp_path, kind=MailboxHarness)
    finally:
        subprocess.run(["umount", "-l", str(data)], check=True)


def test_a_full_disk_still_lets_users_log_in_and_read_their_mail(small_disk: MailboxHarness) -> None:
    small_disk.deliver_to(ALICE, message("before the disk filled up"))
    # Seen once, so the Maildir needs no write to be listed again.
    pop3 = small_disk.pop3()
    assert pop3.stat()[0] == 1
    pop3.quit()
    _fill(small_disk.data_dir)
    # Well past the one-minute resolution of last-login times: each login below tries to note one.
    small_disk.clock.advance(dt.timedelta(minutes=5))
    client = small_disk.imap()
    assert client.select("INBOX") == ("OK", [b"1"])
    typ, data = client.fetch("1", "(BODY.PEEK[])")
    assert typ == "OK" and b"Subject: before the disk filled up" in data[0][1]
    client.logout()
    small_disk.clock.advance(dt.timedelta(minutes=5))
    pop3 = small_disk.pop3()
    assert b"Subject: before the disk filled up" in b"\r\n".join(pop3.retr(1)[1])
    pop3.quit()
