"""pymap's Maildir backend with the fixes our mailboxes need (see /work/shared/notes/imap-pop3.md).

- CRLF on the wire: pymap re-serialises messages with `email.message`, which emits bare LF. We
  hand it the file's own bytes instead, and store what APPEND/COPY writes with CRLF too, so the
  file size is the RFC 822 size IMAP and POP3 report.
- Arrival order: new files get UIDs in `os.listdir` order unless the keys are sorted by the time
  at the start of their Maildir names.
- Big mailboxes: pymap rescans a folder on every command and re-reads dovecot-uidlist for every
  message a command touches; scans are reused while the folder is unchanged (CachedMailboxData).
- CREATE of an existing folder (our special folders exist from the start) is ALREADYEXISTS, not
  a server error.
- Lock files left by a killed process would block a mailbox for up to 10 minutes.
"""
from __future__ import annotations

import io
import os
import re
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from pymap.backend.maildir.layout import MaildirLayout
from pymap.backend.maildir.mailbox import MailboxData, MailboxSet, Maildir, Message
from pymap.backend.maildir.uidlist import Record, UidList
from pymap.concurrent import Event
from pymap.flags import FlagOp
from pymap.interfaces.message import CachedMessage
from pymap.parsing.specials import ObjectId
from pymap.parsing.specials.flag import Flag
from pymap.selected import SelectedMailbox

_BARE_LF = re.compile(rb"(?<!\r)\n")
_NAME_TIME = re.compile(r"(\d+)(?:\.M(\d{1,6}))?")
LOCK_FILE = UidList.LOCK_FILE
_SETTLE_NS = 100_000_000
# What one session learnt about a folder state, for the next sessions (a login's SELECT would
# otherwise rescan the whole folder): folder path -> stamp at which the uidlist was in sync, and
# folder path -> (stamp, rows of uid, key, subdir, file name, mtime, email id, thread id).
# Entries are replaced whole, never mutated, so worker threads can share them.
_ScanRow = tuple[int, str, str, str, float, str | None, str | None]
_SYNCED: dict[str, tuple[int, ...]] = {}
_SCANS: dict[str, tuple[tuple[int, ...], tuple[_ScanRow, ...]]] = {}
_SHARED_FOLDERS = 512  # the most recently used folders are remembered
_shared_lock = threading.Lock()


def _remember(table: dict[str, Any], path: str, value: Any) -> None:
    with _shared_lock:
        table.pop(path, None)
        table[path] = value
        while len(table) > _SHARED_FOLDERS:
            del table[next(iter(table))]


def _flag_letters(name: str, colon: str) -> str:
    """The flags of a Maildir file name `<key>:2,<letters>`."""
    info = name.partition(colon)[2]
    return info[2:] if info.startswith("2,") else ""


def to_crlf(data: bytes) -> bytes:
    return _BARE_LF.sub(b"\r\n", data)


def arrival_key(key: str) -> tuple[int, int, str]:
    """Maildir names start with the delivery time (`<seconds>.M<microseconds>…`); others sort last."""
    match = _NAME_TIME.match(key)
    if not match:
        return (1 << 62, 0, key)
    return int(match[1]), int((match[2] or "0").ljust(6, "0")), key


class RawMessage:
    """What pymap's `load_content` asks of a stored message: its bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __bytes__(self) -> bytes:
        return self.data


class CRLFMaildir(Maildir):
    def get_message(self, key: str) -> RawMessage:  # type: ignore[override]
        with open(os.path.join(self._path, self._lookup(key)), "rb") as f:  # type: ignore[attr-defined]
            return RawMessage(to_crlf(f.read()))

    def get_bytes(self, key: str) -> bytes:  # type: ignore[override]
        return bytes(self.get_message(key))

    def keys(self) -> list[str]:  # type: ignore[override]
        return sorted(super().keys(), key=arrival_key)

    def _refresh(self) -> None:
        # The standard library's, listing with scandir: it stats every file to skip directories,
        # a tenth of a second on 10,000 messages; directory entries already say so.
        if time.time() - self._last_read > 2 + self._skewfactor:  # type: ignore[attr-defined]
            mtimes = {subdir: os.path.getmtime(self._paths[subdir])  # type: ignore[attr-defined]
                      for subdir in self._toc_mtimes}  # type: ignore[attr-defined]
            changed = any(mtimes[subdir] > self._toc_mtimes[subdir] for subdir in mtimes)  # type: ignore[attr-defined]
            self._toc_mtimes = mtimes
            if not changed:
                return
        toc: dict[str, str] = {}
        for subdir in self._toc_mtimes:  # type: ignore[attr-defined]
            with os.scandir(self._paths[subdir]) as entries:  # type: ignore[attr-defined]
                for entry in entries:
                    if not entry.is_dir():
                        toc[entry.name.split(self.colon)[0]] = os.path.join(subdir, entry.name)
        self._toc = toc
        self._last_read = time.time()

    @property
    def path(self) -> str:
        return self._path  # type: ignore[attr-defined, no-any-return]

    def table(self) -> dict[str, str]:
        """Key -> subpath ("cur/<name>") of every message, rescanned if the folder changed."""
        self._refresh()  # type: ignore[attr-defined]
        return self._toc  # type: ignore[attr-defined, no-any-return]

    def infos(self) -> dict[str, str]:
        """Key -> Maildir info (the part after the colon), in arrival order."""
        toc = self.table()
        return {key: os.path.basename(toc[key]).partition(self.colon)[2] for key in sorted(toc, key=arrival_key)}

    def _dump_message(self, message: Any, target: IO[bytes], mangle_from_: bool = False) -> None:
        buffer = io.BytesIO()
        super()._dump_message(message, buffer, mangle_from_)  # type: ignore[misc]
        target.write(to_crlf(buffer.getvalue()))


class CachedMailboxData(MailboxData):
    """A mailbox that re-reads the disk only when it changed.

    pymap rescans the whole folder (a stat per message, the uidlist parsed) on every command, and
    re-reads the uidlist for every message a command touches: on 10,000 messages that is seconds
    per command. Every change to a Maildir folder (delivery, flag rename, move, expunge, uidlist
    rewrite) changes the mtime of new/, cur/ or the uidlist, so a scan is reused while those are
    unchanged. A stamp younger than _SETTLE_NS is not trusted: a second change within the same
    filesystem timestamp tick would leave it unchanged."""

    def __init__(self, mailbox_id: ObjectId, maildir: Maildir, path: str) -> None:
        super().__init__(mailbox_id, maildir, path)
        self._records: dict[int, Record] = {}
        self._records_stamp: tuple[int, int, int] | None = None
        self._reset_stamp: tuple[int, ...] | None = None
        self._messages_stamp: tuple[int, ...] | None = None
        self._messages: dict[int, Message] = {}
        self._applied: weakref.WeakKeyDictionary[Any, dict[int, Message]] = weakref.WeakKeyDictionary()

    def _folder_stamp(self) -> tuple[int, ...] | None:
        try:
            stats = [os.stat(os.path.join(self._path, part)) for part in ("new", "cur", UidList.FILE_NAME)]
        except FileNotFoundError:
            return None
        if time.time_ns() - max(st.st_mtime_ns for st in stats) < _SETTLE_NS:
            return None
        return tuple(value for st in stats for value in (st.st_ino, st.st_size, st.st_mtime_ns))

    async def reset(self) -> MailboxData:
        # pymap calls this at the start of every command.
        stamp = self._folder_stamp()
        if stamp is None or stamp != self._messages_stamp:
            self._messages_stamp = None
        if stamp is not None and stamp == self._reset_stamp:
            return self
        if stamp is not None and _SYNCED.get(self._path) == stamp:
            # Another session brought the uidlist up to date with exactly this folder state.
            uidl = UidList.file_open(self._path)
            self._uid_validity, self._next_uid = uidl.uid_validity, uidl.next_uid
        else:
            await super().reset()
            if stamp is not None:
                _remember(_SYNCED, self._path, stamp)
        self._reset_stamp = stamp
        return self

    async def _current(self) -> dict[int, Message]:
        stamp = self._folder_stamp()
        if stamp is None or stamp != self._messages_stamp:
            self._messages = await self._scan(stamp)
            self._messages_stamp = stamp
        return self._messages

    async def _scan(self, stamp: tuple[int, ...] | None) -> dict[int, Message]:
        """pymap's `messages()`, from one stat per message (not two) or from another session's scan."""
        maildir: CRLFMaildir = self._maildir  # type: ignore[assignment]
        shared = _SCANS.get(self._path)
        if stamp is not None and shared is not None and shared[0] == stamp:
            rows = shared[1]
        else:
            rows = await self._scan_rows(maildir)
            if stamp is not None:
                _remember(_SCANS, self._path, (stamp, rows))
        flags = self.maildir_flags
        return {uid: Message(uid, datetime.fromtimestamp(mtime), flags.from_maildir(_flag_letters(name, maildir.colon)),
                             email_id=ObjectId.maybe(email_id), thread_id=ObjectId.maybe(thread_id),
                             recent=subdir == "new", maildir=maildir, key=key)
                for uid, key, subdir, name, mtime, email_id, thread_id in rows}

    async def _scan_rows(self, maildir: CRLFMaildir) -> tuple[_ScanRow, ...]:
        async with UidList.with_read(self._path) as uidl:
            records = list(uidl.records)
        rows: list[_ScanRow] = []
        async with self.messages_lock.read_lock():
            toc = maildir.table()
            for rec in records:
                subpath = toc.get(rec.key)
                if subpath is None:
                    continue
                try:
                    mtime = os.stat(os.path.join(maildir.path, subpath)).st_mtime
                except FileNotFoundError:
                    continue
                subdir, _, name = subpath.partition(os.sep)
                rows.append((rec.uid, rec.key, subdir, name, mtime, rec.fields.get("E"), rec.fields.get("T")))
        return tuple(rows)

    async def messages(self) -> AsyncIterator[Message]:
        for message in list((await self._current()).values()):
            yield message

    async def update_selected(self, selected: SelectedMailbox, *,
                              wait_on: Event | None = None) -> SelectedMailbox:
        if wait_on is not None:
            await wait_on.wait(timeout=1.0)
        current = await self._current()
        # pymap compares every message with the client's view after each command; when the
        # folder has not changed since this view last saw it, there is nothing to compare.
        if self._applied.get(selected.messages) is current:
            selected.add_updates([], [])  # still applies expunges held back during a FETCH
        else:
            selected.set_messages(list(current.values()))
            self._applied[selected.messages] = current
        return selected

    async def _get_keys(self) -> dict[str, str]:
        # pymap stats every message twice here; the names already say it all.
        async with self.messages_lock.read_lock():
            return self._maildir.infos()  # type: ignore[attr-defined, no-any-return]

    async def get(self, uid: int, cached_msg: CachedMessage) -> Message:
        # The scan was validated when this command began (reset): a FETCH FLAGS of 10,000
        # messages then costs no stat at all.
        if self._messages_stamp is not None and uid in self._messages:
            return self._messages[uid]
        return await super().get(uid, cached_msg)

    async def update(self, uid: int, cached_msg: CachedMessage, flag_set: frozenset[Flag], mode: FlagOp) -> Message:
        self._messages_stamp = None
        return await super().update(uid, cached_msg, flag_set, mode)

    async def _record(self, uid: int) -> Record:
        try:
            st = os.stat(UidList.get_file(self._path))
            stamp: tuple[int, int, int] | None = (st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            stamp = None
        if stamp is None or stamp != self._records_stamp:
            async with UidList.with_read(self._path) as uidl:
                self._records = dict((rec.uid, rec) for rec in uidl.records)
            self._records_stamp = stamp
        return self._records[uid]

    async def _get_maildir_msg(self, uid: int) -> tuple[Record, Any]:
        record = await self._record(uid)
        async with self.messages_lock.read_lock():
            maildir_msg = self._maildir.get_message_metadata(record.key)
        return record, maildir_msg

    async def copy(self, uid: int, destination: MailboxData, *, recent: bool = False) -> int | None:
        # pymap copies the metadata-only message it looked up, i.e. an empty body: copy the file.
        try:
            record, maildir_msg = await self._get_maildir_msg(uid)
            content = self._maildir.get_bytes(record.key)
        except (KeyError, FileNotFoundError):
            return None
        copy_msg = type(maildir_msg)(content)
        copy_msg.set_info(maildir_msg.get_info())
        copy_msg.set_date(maildir_msg.get_date())
        copy_msg.set_subdir("new" if recent else "cur")
        dest_maildir = destination._maildir  # type: ignore[attr-defined]
        async with destination.messages_lock.write_lock():
            dest_key = dest_maildir.add(copy_msg)
        async with UidList.with_write(destination._path) as uidl:  # type: ignore[attr-defined]
            new_rec = Record(uidl.next_uid, record.fields, dest_key + ":" + copy_msg.get_info())
            uidl.next_uid += 1
            uidl.set(new_rec)
        return new_rec.uid


class MailFolders(MailboxSet):
    """A user's Maildir++ folders as pymap mailboxes, with the fixes above."""

    def __init__(self, maildir: Maildir, layout: MaildirLayout[Any]) -> None:
        super().__init__(maildir, layout)
        self._mailboxes: dict[str, CachedMailboxData] = {}

    async def get_mailbox(self, name: str) -> MailboxData:
        if name == "INBOX":
            maildir = self._inbox_maildir
        else:
            try:
                maildir = self._layout.get_folder(name, self.delimiter)
            except FileNotFoundError as exc:
                raise KeyError(name) from exc
        mailbox = self._mailboxes.get(name)
        if mailbox is None:
            path = self._layout.get_path(name, self.delimiter)
            async with UidList.with_init(path) as uidl:
                mailbox_id = ObjectId(uidl.global_uid)
            mailbox = self._mailboxes[name] = CachedMailboxData(mailbox_id, maildir, path)
        return await mailbox.reset()

    async def add_mailbox(self, name: str) -> ObjectId:
        # pymap's session turns ValueError into NO [ALREADYEXISTS].
        if os.path.isdir(self._layout.get_path(name, self.delimiter)):
            raise ValueError(name)
        try:
            return await super().add_mailbox(name)
        except KeyError as exc:
            raise ValueError(name) from exc

    async def rename_mailbox(self, before: str, after: str) -> None:
        self._mailboxes.pop(before, None)
        await super().rename_mailbox(before, after)

    async def delete_mailbox(self, name: str) -> None:
        self._mailboxes.pop(name, None)
        await super().delete_mailbox(name)


def open_folders(root: Path) -> MailFolders:
    layout = MaildirLayout.get(str(root), "++", CRLFMaildir)
    return MailFolders(CRLFMaildir(str(root), create=False), layout)


def stored_size(message: Message) -> int:
    """A message's RFC 822 size without reading it: everything we store is CRLF already."""
    maildir: CRLFMaildir = message._maildir  # type: ignore[attr-defined]
    return os.stat(os.path.join(maildir._path, maildir._lookup(message._key))).st_size  # type: ignore[attr-defined]


def message_bytes(message: Message) -> bytes:
    """A message exactly as IMAP sends it (CRLF line ends)."""
    maildir: CRLFMaildir = message._maildir  # type: ignore[attr-defined]
    return maildir.get_bytes(message._key)  # type: ignore[attr-defined]


def folder_dirs(root: Path) -> Iterable[Path]:
    yield root
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.name.startswith(".") and entry.is_dir(follow_symlinks=False):
            yield Path(entry.path)


def remove_stale_locks(root: Path, older_than_seconds: float) -> int:
    """Delete uidlist locks older than the given age in a user's Maildir; the number removed.

    pymap honours a lock for 10 minutes, so one left by a killed process would lock the user out."""
    removed = 0
    now = time.time()
    for folder in folder_dirs(root):
        lock = folder / LOCK_FILE
        try:
            if now - lock.stat().st_mtime >= older_than_seconds:
                lock.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed
