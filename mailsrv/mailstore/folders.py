"""A user's Maildir as folders of messages: listing, paging, reading, flags, moving, saving.

The layout is the one local delivery writes and the IMAP/POP3 listeners serve: `Maildir/` is the
inbox, Maildir++ folders are `Maildir/.<name>/`, each with cur/ new/ tmp/. A message's flags live in
its file name (`cur/<key>:2,<flags>`, the standard letters S R F T D; mailsrv.mailstore.maildir_names
builds and reads every name), so the web interface and IMAP
see the same state without a database. Moving is a rename into the other folder's cur/; the
dovecot-uidlist files the IMAP side keeps are left alone (it notices new and vanished names).

Messages are ordered by the time at the start of their Maildir name (arrival, to the microsecond in
our own names), falling back to the file's modification time for names that carry none.
"""
from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.mailstore import maildir_names
from mailsrv.mailstore.disk import MAILDIR_PARTS, SPECIAL_FOLDERS, fsync_directory
from mailsrv.mailstore.headers import read_headers

INBOX = "INBOX"
TRASH, SENT = "Trash", "Sent"
PAGE_SIZE = 25
# A folder's order in the list: the inbox, the special folders, then the user's own by name.
_FIXED_ORDER = (INBOX, *SPECIAL_FOLDERS)
# Maildir names never hold "/" or ":" in their unique part; refusing leading dots keeps ".." out.
_KEY = re.compile(r"[^./:\x00][^/:\x00]{0,254}")
# A folder's levels are joined with "." on disk (Maildir++: `.Projects.2024` is Projects/2024 in
# IMAP), so no level may hold a "." or the IMAP separator "/", nor be empty: "" and "." would
# name the Maildir itself and its parent. Control characters (CR LF in a LIST answer) and lone
# surrogates (no UTF-8 file name) are no name.
LEVEL_SEPARATOR = "."
_LEVEL = re.compile(r"[^./\x00-\x1f\x7f-\x9f\ud800-\udfff]+")
_NAME_MAX = 255  # bytes in one directory name


@dataclass(frozen=True)
class Folder:
    name: str
    unread: int
    total: int


@dataclass(frozen=True)
class Summary:
    key: str
    sender: str
    subject: str
    date: dt.datetime | None
    size: int
    flags: str

    @property
    def seen(self) -> bool:
        return "S" in self.flags


@dataclass(frozen=True)
class Page:
    folder: str
    messages: list[Summary]
    number: int  # 1-based
    pages: int
    total: int


@dataclass(frozen=True)
class _Entry:
    key: str
    path: Path
    flags: str
    order: tuple[float, int, str]


def folder_directory(levels: Sequence[str]) -> str:
    """The directory in a Maildir (`.Projects.2024`) of the folder with these levels (Projects,
    2024): the one check between a folder name, from IMAP or the web, and the disk."""
    for level in levels:
        if not _LEVEL.fullmatch(level):
            raise MailsrvError(ResultCode.INVALID_ARGUMENT, f"{level!r} cannot be a folder name: folder names are "
                               "not empty and hold no '.', '/' or control characters.")
    directory = LEVEL_SEPARATOR + LEVEL_SEPARATOR.join(levels)
    if len(directory.encode()) > _NAME_MAX:
        raise MailsrvError(ResultCode.INVALID_ARGUMENT, f"A folder name is at most {_NAME_MAX - 1} bytes.")
    return directory


def is_folder_directory(name: str) -> bool:
    """Whether a directory in a Maildir is a folder any client can name (others are not listed)."""
    try:
        return name.startswith(LEVEL_SEPARATOR) and folder_directory(name[1:].split(LEVEL_SEPARATOR)) == name
    except MailsrvError:
        return False


def _not_found() -> MailsrvError:
    return MailsrvError(ResultCode.ITEM_NOT_FOUND, "No such message: it may have been moved or deleted.")


def _order(name: str, path: Path) -> tuple[float, int, str]:
    mtime = path.stat().st_mtime_ns
    arrived = maildir_names.arrival(name)
    if arrived:
        return arrived[0] + arrived[1] / 1e6, mtime, name
    return mtime / 1e9, mtime, name


def _summary(entry: _Entry) -> Summary:
    headers = read_headers(entry.path, email.policy.default)
    try:
        date = email.utils.parsedate_to_datetime(str(headers.get("Date", "")))
    except (TypeError, ValueError):
        date = None
    return Summary(entry.key, str(headers.get("From", "")), str(headers.get("Subject", "")), date,
                   entry.path.stat().st_size, entry.flags)


class Mailbox:
    """One user's Maildir. Every method reads or changes the disk: call them off the event loop."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _folder_dir(self, folder: str) -> Path:
        if folder == INBOX:
            return self.root
        path = self.root / folder_directory(folder.split(LEVEL_SEPARATOR))
        if not (path / "cur").is_dir():
            if folder not in SPECIAL_FOLDERS:
                raise MailsrvError(ResultCode.ITEM_NOT_FOUND, f"No such folder: {folder}.")
            # Mailboxes made before a special folder existed get it on first use.
            for part in MAILDIR_PARTS:
                (path / part).mkdir(0o700, parents=True, exist_ok=True)
        return path

    def _entries(self, folder: str) -> list[_Entry]:
        return self._entries_in(self._folder_dir(folder))

    @staticmethod
    def _entries_in(base: Path) -> list[_Entry]:
        entries = []
        for part in ("new", "cur"):
            try:
                names = os.listdir(base / part)
            except FileNotFoundError:
                continue
            for name in names:
                if name.startswith("."):
                    continue
                key, flags = maildir_names.split(name)
                path = base / part / name
                try:
                    entries.append(_Entry(key, path, flags if part == "cur" else "", _order(name, path)))
                except FileNotFoundError:  # moved by another client while we looked
                    continue
        return entries

    def _find(self, folder: str, key: str) -> _Entry:
        if not _KEY.fullmatch(key):
            raise _not_found()
        base = self._folder_dir(folder)
        new = base / "new" / key
        if new.exists():
            return _Entry(key, new, "", (0, 0, key))
        try:
            names = os.listdir(base / "cur")
        except FileNotFoundError:
            raise _not_found() from None
        for name in names:
            found, flags = maildir_names.split(name)
            if found == key:
                return _Entry(key, base / "cur" / name, flags, (0, 0, key))
        raise _not_found()

    def folders(self) -> list[Folder]:
        names = {INBOX, *SPECIAL_FOLDERS}
        for entry in os.scandir(self.root):
            if entry.name.startswith(".") and entry.is_dir() and (Path(entry.path) / "cur").is_dir() \
                    and is_folder_directory(entry.name):
                names.add(entry.name[1:])
        ordered = [n for n in _FIXED_ORDER if n in names] + sorted(names - set(_FIXED_ORDER), key=str.lower)
        out = []
        for name in ordered:
            entries = self._entries(name)
            out.append(Folder(name, sum(1 for e in entries if "S" not in e.flags), len(entries)))
        return out

    def page(self, folder: str, number: int, size: int = PAGE_SIZE) -> Page:
        """Page `number` (1-based, clamped to the pages there are) of a folder, newest first."""
        entries = sorted(self._entries(folder), key=lambda e: e.order, reverse=True)
        pages = max(1, -(-len(entries) // size))
        number = min(max(1, number), pages)
        chosen = entries[(number - 1) * size:number * size]
        return Page(folder, [_summary(e) for e in chosen], number, pages, len(entries))

    def read(self, folder: str, key: str) -> bytes:
        return self._find(folder, key).path.read_bytes()

    def flags(self, folder: str, key: str) -> str:
        return self._find(folder, key).flags

    def set_flags(self, folder: str, key: str, add: str = "", remove: str = "") -> None:
        entry = self._find(folder, key)
        flags = "".join(sorted((set(entry.flags) | set(add)) - set(remove)))
        target = self._folder_dir(folder) / "cur" / maildir_names.file_name(key, flags)
        if target != entry.path:
            os.rename(entry.path, target)

    def move(self, folder: str, key: str, target: str) -> None:
        if target == folder:
            return
        entry = self._find(folder, key)
        os.rename(entry.path, self._folder_dir(target) / "cur" / maildir_names.file_name(key, entry.flags))

    def delete(self, folder: str, key: str) -> None:
        """Into Trash; from Trash, for good."""
        if folder == TRASH:
            self._find(folder, key).path.unlink()
        else:
            self.move(folder, key, TRASH)

    def add(self, folder: str, content: bytes, flags: str, when: dt.datetime) -> str:
        """Store a message (written to tmp/, synced, renamed into cur/); its key."""
        base = self._folder_dir(folder)
        key = maildir_names.new_key(when, uuid.uuid4().hex)
        tmp = base / "tmp" / key
        with open(tmp, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        flag_text = "".join(sorted(set(flags) & set(maildir_names.FLAG_LETTERS)))
        os.rename(tmp, base / "cur" / maildir_names.file_name(key, flag_text))
        fsync_directory(base / "cur")
        return key

    # -- auto-clean (mailsrv.directory.autoclean): a folder that does not exist is left alone --

    def _existing(self, folder: str) -> Path | None:
        base = self.root if folder == INBOX else self.root / folder_directory(folder.split(LEVEL_SEPARATOR))
        return base if (base / "cur").is_dir() else None

    def remove_older_than(self, folder: str, before: dt.datetime) -> int:
        """Delete the folder's messages that arrived before `before`; how many. IMAP and POP3
        sessions see them vanish as after another client's expunge; disk usage follows the
        directories' mtimes (mailsrv.mailstore.disk_usage)."""
        base = self._existing(folder)
        if base is None:
            return 0
        limit = before.timestamp()
        return sum(_unlink(entry.path) for entry in self._entries_in(base) if entry.order[0] < limit)

    def shrink(self, folder: str, over_bytes: int, down_to_bytes: int) -> int:
        """When the folder's messages take more than `over_bytes`, delete the oldest until they take
        at most `down_to_bytes`; how many were deleted."""
        base = self._existing(folder)
        if base is None:
            return 0
        sized = []
        for entry in self._entries_in(base):
            try:
                sized.append((entry, entry.path.stat().st_size))
            except FileNotFoundError:
                continue
        total = sum(size for _, size in sized)
        if total <= over_bytes:
            return 0
        removed = 0
        for entry, size in sorted(sized, key=lambda pair: pair[0].order):
            if total <= down_to_bytes:
                break
            removed += _unlink(entry.path)
            total -= size
        return removed


def _unlink(path: Path) -> int:
    try:
        path.unlink()
    except FileNotFoundError:  # another client moved or expunged it meanwhile
        return 0
    return 1
