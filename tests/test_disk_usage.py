"""BytesSize and quota usage: bytes under a directory, remembered per directory while its mtime holds."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from mailsrv.mailstore.disk_usage import SETTLE_NS, used_bytes


def settle(*directories: Path) -> None:
    """Date the directories' last change back past the settle window, as hours-old mailboxes are."""
    past = time.time_ns() - 10 * SETTLE_NS
    for directory in directories:
        os.utime(directory, ns=(past, past))


def maildir(root: Path, files: dict[str, int]) -> list[Path]:
    directories = [root / part for part in ("cur", "new", "tmp")]
    for directory in directories:
        directory.mkdir(parents=True, exist_ok=True)
    for name, size in files.items():
        (root / name).write_bytes(b"x" * size)
    return [root, *directories]


def test_usage_follows_deliveries_flag_renames_expunges_and_removed_folders(tmp_path):
    inbox = maildir(tmp_path / "Maildir", {"cur/1:2,S": 100, "cur/2:2,": 200, "new/3": 300})
    trash = maildir(tmp_path / "Maildir" / ".Trash", {"cur/4:2,S": 1000})
    settle(*inbox, *trash)
    assert used_bytes(tmp_path) == 1600
    assert used_bytes(tmp_path) == 1600  # answered from what was remembered

    (tmp_path / "Maildir/new/5").write_bytes(b"y" * 50)  # a delivery
    assert used_bytes(tmp_path) == 1650
    os.rename(tmp_path / "Maildir/new/3", tmp_path / "Maildir/cur/3:2,S")  # a client reads it
    assert used_bytes(tmp_path) == 1650
    (tmp_path / "Maildir/cur/2:2,").unlink()  # an expunge
    assert used_bytes(tmp_path / "Maildir") == 1450
    settle(*inbox, *trash)
    assert used_bytes(tmp_path) == 1450

    shutil.rmtree(tmp_path / "Maildir/.Trash")  # a folder deleted
    assert used_bytes(tmp_path) == 450
    shutil.rmtree(tmp_path / "Maildir")
    assert used_bytes(tmp_path) == 0
    assert used_bytes(tmp_path / "Maildir") == 0


def test_a_folder_recreated_under_the_same_name_is_counted_afresh(tmp_path):
    settle(*maildir(tmp_path / ".Junk", {"cur/1:2,": 700}))
    assert used_bytes(tmp_path) == 700
    shutil.rmtree(tmp_path / ".Junk")
    settle(*maildir(tmp_path / ".Junk", {"cur/9:2,": 70}))
    assert used_bytes(tmp_path) == 70
