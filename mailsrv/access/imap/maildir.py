"""pymap's Maildir backend with the fixes our mailboxes need (every pymap internal it overrides is
listed in mailsrv/access/imap/__init__.py and pinned by tests/test_pymap_contract.py).

- CRLF on the wire: pymap re-serialises messages with `email.message`, which emits bare LF. We
  hand it the file's own bytes instead, and store what APPEND/COPY writes with CRLF too, so the
  file size is the RFC 822 size IMAP and POP3 report.
- Arrival order: new files get UIDs in `os.listdir` order unless the keys are sorted by the time
  at the start of their Maildir names.
- Big mailboxes: pymap rescans a folder on every command and re-reads dovecot-uidlist for every
  message a command touches; scans are reused while the folder is unchanged (CachedMailboxData),
  and by every session of the folder. pymap also walks and copies the whole client view on every
  command (ClientView, SelectedFolder, MailSession).
- \\Recent: pymap's SELECT moved every file of new/ to cur/ (10,000 renames on a first SELECT)
  and gave the flag to only some of them. As Dovecot (maildir_empty_new = no), a folder's
  first-recent UID (mailsrv-recent) says which messages no session has had as \\Recent; files stay
  in new/ until their flags change. Local delivery, POP3, webmail and backups read both new/ and cur/.
- First SELECT of a big folder: pymap stats every file for its internal date; it is read when
  asked (INTERNALDATE, SEARCH by date). The UIDs of new files are written in one uidlist write.
- CREATE of an existing folder (our special folders exist from the start) is ALREADYEXISTS, not
  a server error.
- Lock files left by a killed process would block a mailbox for up to 10 minutes.
- Folder names: pymap makes any name a path, "." being Maildir/.. and "" the Maildir itself;
  every name now becomes a directory through mailsrv.mailstore.folders.folder_directory (MailLayout).
"""
from __future__ import annotations

import asyncio
import functools
import io
import os
import re
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from pymap.backend.maildir import Session
from pymap.backend.maildir.layout import DefaultLayout, MaildirLayout
from pymap.backend.maildir.mailbox import LoadedMessage, MailboxData, MailboxSet, Maildir, Message
from pymap.backend.maildir.uidlist import Record, UidList
from pymap.concurrent import Event
from pymap.exceptions import AppendFailure, MailboxError
from pymap.flags import FlagOp, PermanentFlags, SessionFlags
from pymap.interfaces.message import CachedMessage
from pymap.mailbox import MailboxSnapshot
from pymap.mime import MessageContent
from pymap.parsing.command import Command
from pymap.parsing.message import AppendMessage
from pymap.parsing.response import ResponseCode, UntaggedResponse
from pymap.parsing.response.code import AppendUid
from pymap.parsing.specials import FetchRequirement, ObjectId, SequenceSet
from pymap.parsing.specials.flag import Flag, Seen
from pymap.selected import SelectedMailbox, SynchronizedMessages

from mailsrv.core.errors import MailsrvError
from mailsrv.mailstore import maildir_names
from mailsrv.mailstore.folders import folder_directory, is_folder_directory
from mailsrv.mailstore.headers import HEADER_LIMIT, header_bytes

_BARE_LF = re.compile(rb"(?<!\r)\n")
LOCK_FILE = UidList.LOCK_FILE
# A folder's first-recent UID: "<UIDVALIDITY> <UID>", beside its dovecot-uidlist.
RECENT_FILE = "mailsrv-recent"
_SETTLE_NS = 100_000_000


@dataclass(frozen=True)
class _Scan:
    """A folder's messages as one scan found them, and the file (`cur/<name>`) each was in."""
    stamp: tuple[int, ...] | None
    uid_validity: int
    messages: dict[int, Message]
    subpaths: dict[int, str]


# What one session learnt about a folder state, for the next sessions (a login's SELECT would
# otherwise rescan the whole folder): folder path -> stamp at which the uidlist was in sync, and
# folder path -> _Scan. Building 10,000 pymap messages costs more than the
# scan itself, so sessions share the messages: pymap never changes one (a flag update makes a new
# one), and the Maildir each refers to serves every session of that folder. Entries are replaced
# whole, never mutated, so worker threads can share them.
_SYNCED: dict[str, tuple[int, ...]] = {}
_SCANS: dict[str, _Scan] = {}
_SHARED_FOLDERS = 512  # the most recently used folders are remembered,
_SHARED_MESSAGES = 200_000  # and the scans of no more messages than this (~0.7 KB each)
_shared_lock = threading.Lock()


def _remember(table: dict[str, Any], path: str, value: Any, weight: Callable[[Any], int] | None = None) -> None:
    """Remember `value` for `path` as the most recent entry, forgetting the oldest ones beyond
    _SHARED_FOLDERS entries or, with `weight`, beyond _SHARED_MESSAGES in all (the newest stays)."""
    with _shared_lock:
        table.pop(path, None)
        table[path] = value
        while len(table) > _SHARED_FOLDERS or (
                weight is not None and len(table) > 1 and sum(map(weight, table.values())) > _SHARED_MESSAGES):
            del table[next(iter(table))]


def first_recent(folder: str, uid_validity: int) -> int:
    """The first UID of a folder that no session has had as \\Recent (0, all of them, for a folder
    that never had its first-recent UID written, or one whose UIDs were reset since)."""
    try:
        validity, first = Path(folder, RECENT_FILE).read_text().split()
        if int(validity) == uid_validity:
            return int(first)
    except (FileNotFoundError, ValueError):
        pass
    return 0


def _write_first_recent(folder: str, uid_validity: int, first: int) -> None:
    # Replaced whole by a rename, under the uidlist's lock: a reader sees the old value or the new.
    temporary = os.path.join(folder, RECENT_FILE + ".tmp")
    with open(temporary, "w") as out:
        out.write(f"{uid_validity} {first}\n")
    os.replace(temporary, os.path.join(folder, RECENT_FILE))


def to_crlf(data: bytes) -> bytes:
    # What we store is CRLF already: two counts in C cost a tenth of the substitution's scan.
    if data.count(b"\n") == data.count(b"\r\n"):
        return data
    return _BARE_LF.sub(b"\r\n", data)


def arrival_key(key: str) -> tuple[int, int, str]:
    """Maildir names start with the delivery time (`<seconds>.M<microseconds>…`); others sort last."""
    arrived = maildir_names.arrival(key)
    if not arrived:
        return (1 << 62, 0, key)
    return *arrived, key


class RawMessage:
    """What pymap's `load_content` asks of a stored message: its bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __bytes__(self) -> bytes:
        return self.data


class _UidList(UidList):
    """pymap's uidlist, writing the lines of the records it makes (E and T fields) without its
    generic field loop, and the whole file in one write (each line's write through the temporary
    file's wrapper cost more than the line): a first SELECT of 10,000 new messages writes 10,000."""

    def write(self, fp: IO[str]) -> None:
        fp.write(self._build_header() + "".join(map(self._build_line, self.records)))

    @classmethod
    def _build_line(cls, rec: Record) -> str:
        fields = rec.fields
        if fields.keys() == {"E", "T"}:
            return f"{rec.uid} E{fields['E']} T{fields['T']} :{rec.filename}\r\n"
        return super()._build_line(rec)


class CRLFMaildir(Maildir):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Messages shared between sessions (_SCANS) read through the Maildir of the session that
        # scanned them, from every session's worker thread: one table rescan at a time, so that
        # no reader takes the new mtimes for a table still being built.
        self._refreshing = threading.Lock()
        self._listed_at = 0  # time.time_ns() when the table was listed
        super().__init__(*args, **kwargs)

    def get_message(self, key: str) -> RawMessage:  # type: ignore[override]
        with open(os.path.join(self._path, self._lookup(key)), "rb") as f:  # type: ignore[attr-defined]
            return RawMessage(to_crlf(f.read()))

    def get_bytes(self, key: str) -> bytes:  # type: ignore[override]
        return bytes(self.get_message(key))

    def keys(self) -> list[str]:  # type: ignore[override]
        return sorted(super().keys(), key=arrival_key)

    def _refresh(self) -> None:
        # The standard library's, listing with scandir: it stats every file to skip directories,
        # a tenth of a second on 10,000 messages; directory entries already say so. And it lists
        # again on every call for 2 seconds after a listing (mtimes in whole seconds): nanosecond
        # mtimes tell, unless a directory changed within _SETTLE_NS before the listing (a later
        # change in the same timestamp tick would leave its mtime as it was).
        with self._refreshing:
            mtimes = {subdir: os.stat(self._paths[subdir]).st_mtime_ns  # type: ignore[attr-defined]
                      for subdir in self._toc_mtimes}  # type: ignore[attr-defined]
            if mtimes == self._toc_mtimes and self._listed_at - max(mtimes.values()) >= _SETTLE_NS:
                return
            listed_at = time.time_ns()
            toc: dict[str, str] = {}
            colon = self.colon
            for subdir in mtimes:
                prefix = subdir + os.sep  # joined by hand: os.path.join cost a third of the listing
                with os.scandir(self._paths[subdir]) as entries:  # type: ignore[attr-defined]
                    for entry in entries:
                        if not entry.is_dir():
                            name = entry.name
                            toc[name.partition(colon)[0]] = prefix + name
            self._toc = toc
            self._toc_mtimes = mtimes
            self._listed_at = listed_at

    @property
    def path(self) -> str:
        return self._path  # type: ignore[attr-defined, no-any-return]

    def table(self) -> dict[str, str]:
        """Key -> subpath ("cur/<name>") of every message, rescanned if the folder changed."""
        self._refresh()  # type: ignore[attr-defined]
        return self._toc  # type: ignore[attr-defined, no-any-return]

    def update_metadata(self, key: str, msg: Any) -> None:
        # A message stays in new/ after SELECT (\Recent is the folder's first-recent UID, not its
        # place): its first flag change moves it to cur/ with its flags, as Dovecot does.
        subpath = self._lookup(key)
        if msg.get_subdir() != "new":
            super().update_metadata(key, msg)
            return
        target = os.path.join("cur", key + self.colon + msg.get_info())
        os.rename(os.path.join(self.path, subpath), os.path.join(self.path, target))
        self._update(key, target)

    def infos(self) -> dict[str, str]:
        """Key -> Maildir info (the part after the colon), in arrival order."""
        toc = self.table()
        return {key: os.path.basename(toc[key]).partition(self.colon)[2] for key in sorted(toc, key=arrival_key)}

    def _dump_message(self, message: Any, target: IO[bytes], mangle_from_: bool = False) -> None:
        buffer = io.BytesIO()
        super()._dump_message(message, buffer, mangle_from_)  # type: ignore[misc]
        target.write(to_crlf(buffer.getvalue()))


class HeaderFirstMessage(Message):
    """pymap's Maildir message, which reads and parses the whole file (every MIME part) for what
    needs the header section alone (ENVELOPE, BODY[HEADER...], RFC822.HEADER): only that is read.

    Its internal date (the file's mtime) is read when first asked for (INTERNALDATE, SEARCH by
    date), not by the scan: a stat per message was most of the cost of a first SELECT."""

    __slots__ = ("_when",)

    @classmethod
    def scanned(cls, uid: int, flags: frozenset[Flag], email_id: str | None, thread_id: str | None,
                recent: bool, maildir: CRLFMaildir, key: str, when: datetime | None) -> HeaderFirstMessage:
        """The message pymap's constructor makes of these (the uidlist's E and T fields as they
        are, see `email_id`), its slots set here: through pymap's chain of constructors, a
        typing.Protocol's among them, 10,000 messages cost ~15-30 ms against ~2.5."""
        message = object.__new__(cls)
        message.uid = uid  # type: ignore[misc]
        message.expunged = False  # type: ignore[misc]
        message._permanent_flags = flags
        message._flags_key = (uid, flags)
        message._email_id = email_id  # type: ignore[assignment]
        message._thread_id = thread_id  # type: ignore[assignment]
        message.recent = recent  # type: ignore[misc]
        message._maildir = maildir
        message._key = key
        message._when = when
        return message

    @property  # type: ignore[override]
    def internal_date(self) -> datetime:
        if self._when is None:
            maildir: CRLFMaildir = self._maildir  # type: ignore[assignment]
            try:
                mtime = os.stat(os.path.join(maildir.path, maildir._lookup(self._key))).st_mtime  # type: ignore[attr-defined]
            except (KeyError, FileNotFoundError):  # expunged since: the time its name carries
                mtime = (maildir_names.arrival(self._key or "") or (time.time(), 0))[0]
            self._when = datetime.fromtimestamp(mtime)
        return self._when

    @internal_date.setter
    def internal_date(self, when: datetime | None) -> None:
        # pymap's __init__ sets it; the scan passes None (not read yet), or a date already known.
        self._when = when

    def known_date(self) -> datetime | None:
        """The internal date if it was read already (no stat)."""
        return self._when

    # The scan passes the uidlist's E and T fields as they are (str, or None when missing), made
    # pymap's ObjectIds when first asked for (EMAILID, THREADID): 20,000 objects for a first SELECT
    # of 10,000 messages that hardly any client asks for. (pymap's ObjectId.maybe, without its
    # checks: the fields are ASCII already.)
    def _object_id(self, slot: str) -> ObjectId:
        found = getattr(self, slot)
        if found is None or isinstance(found, str):
            found = ObjectId(found.encode() if found else None)
            setattr(self, slot, found)
        return found  # type: ignore[no-any-return]

    email_id = property(functools.partial(_object_id, slot="_email_id"))  # type: ignore[assignment]
    thread_id = property(functools.partial(_object_id, slot="_thread_id"))  # type: ignore[assignment]

    async def load_content(self, requirement: FetchRequirement) -> LoadedMessage:
        maildir: CRLFMaildir | None = self._maildir  # type: ignore[assignment]
        if maildir is None or self._key is None or not requirement.has_none(FetchRequirement.BODY):
            return await super().load_content(requirement)
        try:
            header = header_bytes(Path(maildir.path, maildir._lookup(self._key)))  # type: ignore[attr-defined]
        except (KeyError, FileNotFoundError):
            return LoadedMessage(self, requirement, None)
        if len(header) >= HEADER_LIMIT:  # cut short: the whole message says what the headers are
            return await super().load_content(requirement)
        return LoadedMessage(self, requirement, MessageContent.parse(to_crlf(header) + b"\r\n"))


class ClientView(SynchronizedMessages):
    """pymap's record of the messages a client has seen, with lookups that don't walk them all.

    pymap finds the messages of a sequence set by enumerating every message of the folder, so a
    `UID FETCH n` costs as much as a `UID FETCH 1:*`; `version` counts the changes to the view."""

    def __init__(self) -> None:
        super().__init__()
        self.version = 0

    def _update(self, messages: Iterable[CachedMessage]) -> None:
        messages = list(messages)
        if messages:
            self.version += 1
        super()._update(messages)

    def _remove(self, uids: Iterable[int], pending: bool) -> None:
        uids = list(uids)
        if not pending and (uids or self._pending_remove):
            self.version += 1
        super()._remove(uids, pending)

    def get_uids(self, seq_set: SequenceSet) -> Sequence[tuple[int, int]]:
        if seq_set.uid:
            seqs = self._seqs_cache
            return [(seqs[uid], uid) for uid in sorted(seq_set.flatten(self.max_uid) & self._uids)]
        ordered = self._sorted
        return [(seq, ordered[seq - 1]) for seq in sorted(seq_set.flatten(self.exists)) if 0 < seq <= len(ordered)]

    def get_all(self, seq_set: SequenceSet) -> Sequence[tuple[int, CachedMessage]]:
        cache = self._cache
        return [(seq, cache[uid]) for seq, uid in self.get_uids(seq_set)]

    def numbered(self) -> Iterable[tuple[int, CachedMessage]]:
        cache = self._cache
        return enumerate((cache[uid] for uid in self._sorted), 1)


class SelectedFolder(SelectedMailbox):
    """pymap's selected mailbox, which copies and compares the whole client view after every
    command to find what to tell the client; skipped when nothing changed since the last time."""

    __slots__ = ["_compared"]

    def __init__(self, *args: Any, _compared: tuple[Any, ...] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._compared = _compared

    def _state(self) -> tuple[Any, ...]:
        view: ClientView = self._messages  # type: ignore[assignment]
        flags = self._session_flags
        # \Recent UIDs are added only with new messages (or at SELECT) and dropped only with
        # expunged ones, both of which change the view's version: their count says the rest. (A
        # copy of the set cost the session of a first SELECT, with 10,000 of them, 0.3 ms a command.)
        return view.version, self._is_deleted, flags.recent, frozenset(flags.flags.items())

    def fork(self, command: Command) -> tuple[SelectedMailbox, Iterable[UntaggedResponse]]:
        state = self._state()
        if self._prev is not None and state == self._compared:
            return type(self)(self._mailbox_id, self._readonly, self._permanent_flags, self._session_flags,
                              self._selected_set, self._lookup, _mod_sequence=self._mod_sequence,
                              _prev=self._prev, _messages=self._messages, _compared=state), []
        copy, untagged = super().fork(command)
        copy._compared = state  # type: ignore[attr-defined]
        return copy, untagged

    @property
    def unchanged(self) -> bool:
        """Whether nothing happened to this view since the command that made it ended: a command
        that changes nothing has no update to tell the client."""
        return self._compared is not None and self._state() == self._compared


@dataclass(frozen=True)
class SettledFolder:
    """A folder on disk exactly as a client view shows it: its messages' files, found without
    pymap's reset, lookups or update_selected."""
    path: str
    subpaths: dict[int, str]  # UID -> "cur/<name>"

    def file(self, uid: int) -> str:
        return os.path.join(self.path, self.subpaths[uid])


class MailSession(Session):
    def __init__(self, *args: Any, append_limit: int, room: Callable[[int], str | None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.append_limit = append_limit
        # Why so many more bytes do not fit the domain's disk quota, None when they do (blocking).
        self.room = room

    async def append_messages(self, name: str, messages: Sequence[AppendMessage],
                              selected: SelectedMailbox | None = None) -> tuple[AppendUid, SelectedMailbox | None]:
        refusal = await asyncio.to_thread(self.room, sum(len(m.literal) for m in messages))
        if refusal:
            raise AppendFailure(name, refusal.encode(), ResponseCode.of(b"OVERQUOTA"))  # RFC 9208
        return await super().append_messages(name, messages, selected)

    async def select_mailbox(self, name: str, readonly: bool = False) -> tuple[MailboxSnapshot, SelectedMailbox]:
        # pymap's, with the selected state above, and the counts taken from the client view
        # rather than from a second scan of the folder.
        mbx: CachedMailboxData = await self._get_mailbox(name)  # type: ignore[assignment]
        selected = SelectedFolder(mbx.mailbox_id, readonly or mbx.readonly, PermanentFlags(mbx.permanent_flags),
                                  SessionFlags(mbx.session_flags), selected_set=mbx.selected_set, lookup=name,
                                  _messages=ClientView())
        if selected.readonly:  # EXAMINE claims nothing: it reports those left for the next SELECT
            recent = mbx.unclaimed()
        else:
            await mbx.claim_recent(selected)
            claimed = selected.session_flags.recent_uids
            recent = lambda message: message.uid in claimed  # noqa: E731
        await mbx.update_selected(selected)
        return mbx.snapshot_of(selected.messages.numbered(), recent), selected  # type: ignore[attr-defined]


class CachedMailboxData(MailboxData):
    """A mailbox that re-reads the disk only when it changed.

    pymap rescans the whole folder (a stat per message, the uidlist parsed) on every command, and
    re-reads the uidlist for every message a command touches: on 10,000 messages that is seconds
    per command. Every change to a Maildir folder (delivery, flag rename, move, expunge, uidlist
    rewrite) changes the mtime of new/, cur/ or the uidlist, so a scan is reused while those are
    unchanged. A directory changed less than _SETTLE_NS ago is not trusted: a second change within
    the same filesystem timestamp tick would leave its mtime unchanged. The uidlist is trusted at
    once: every writer replaces it by a rename (a new inode; Dovecot, which may append in place,
    grows it), so a file that kept its inode, size and mtime kept its content - the first FETCH
    after the SELECT that wrote 10,000 UIDs uses that SELECT's scan."""

    def __init__(self, mailbox_id: ObjectId, maildir: Maildir, path: str) -> None:
        super().__init__(mailbox_id, maildir, path)
        self._records: dict[int, Record] = {}
        self._records_stamp: tuple[int, int, int] | None = None
        self._header = (self._uid_validity, self._next_uid)  # the uidlist's, as read with _records
        self._reset_stamp: tuple[int, ...] | None = None
        self._messages_stamp: tuple[int, ...] | None = None
        self._messages: dict[int, Message] = {}
        self._scanned: _Scan | None = None  # the last scan this session used, even of an unsettled state
        self._applied: weakref.WeakKeyDictionary[Any, dict[int, Message]] = weakref.WeakKeyDictionary()

    def _folder_stamp(self) -> tuple[int, ...] | None:
        try:
            stats = [os.stat(os.path.join(self._path, part)) for part in ("new", "cur", UidList.FILE_NAME)]
        except FileNotFoundError:
            return None
        if time.time_ns() - max(stats[0].st_mtime_ns, stats[1].st_mtime_ns) < _SETTLE_NS:
            return None
        return tuple(value for st in stats for value in (st.st_ino, st.st_size, st.st_mtime_ns))

    async def reset(self) -> MailboxData:
        # pymap calls this at the start of every command.
        stamp = self._folder_stamp()
        if stamp is None or stamp != self._reset_stamp:
            if stamp is None or _SYNCED.get(self._path) != stamp:
                written = await self._sync_uidlist()
                if written is not None and stamp is not None:
                    # new/ and cur/ as they were before the listing the UIDs were given from (a file
                    # delivered since changes them), the uidlist as written.
                    stamp = stamp[:6] + written
                if stamp is not None:
                    _remember(_SYNCED, self._path, stamp)
                self._uid_validity, self._next_uid = self._header
            else:
                # Another session brought the uidlist up to date with exactly this folder state:
                # its header line is all this one needs.
                uidl = UidList.file_open(self._path)
                self._uid_validity, self._next_uid = uidl.uid_validity, uidl.next_uid
            self._reset_stamp = stamp
        if stamp is None or stamp != self._messages_stamp:
            self._messages_stamp = None
            if stamp is not None and self._folder_stamp() == stamp:
                # Scanned now rather than when the command ends, so that its lookups (get) use it
                # (not if syncing the uidlist just changed the folder).
                await self._current()
        return self

    async def _sync_uidlist(self) -> tuple[int, int, int] | None:
        """A UID for every file the uidlist lacks, in arrival order, in one write of the uidlist;
        the stamp of the uidlist written, None when nothing was. (pymap's reset rewrites the whole
        uidlist on every call, after sorting and statting every file.) A flag change renames a
        file under the same key, so the command after it writes nothing."""
        maildir: CRLFMaildir = self._maildir  # type: ignore[assignment]
        async with self.messages_lock.read_lock():
            toc = dict(maildir.table())
        known = {rec.key for rec in (await self._uid_records()).values()}
        if self._records_stamp is not None and known.issuperset(toc):
            return None
        async with UidList.write_lock(self._path):
            uidl = _UidList.file_read(self._path)
            missing = sorted(toc.keys() - {rec.key for rec in uidl.records}, key=arrival_key)
            # The email and thread IDs pymap gives each message (RFC 8474), in its format, from
            # one call for random bytes rather than two per message.
            ids = os.urandom(32 * len(missing)).hex()
            for n, key in enumerate(missing):
                fields = {"E": f"(M{ids[64 * n:64 * n + 32]})", "T": f"(T{ids[64 * n + 32:64 * n + 64]})"}
                uidl.set(Record(uidl.next_uid, fields, key + ":" + toc[key].partition(maildir.colon)[2]))
                uidl.next_uid += 1
            if missing:
                uidl.file_write()
            written = self._uidlist_stamp()
            self._keep(uidl, written)  # what was just written needs no parsing
        return written if missing else None

    async def _current(self) -> dict[int, Message]:
        stamp = self._folder_stamp()
        if stamp is None or stamp != self._messages_stamp:
            self._messages = await self._scan(stamp)
            self._messages_stamp = stamp
        return self._messages

    async def _scan(self, stamp: tuple[int, ...] | None) -> dict[int, Message]:
        """pymap's `messages()`, from another session's scan of the same folder state, or
        incrementally from the last scan: a message whose file kept its name is the same message,
        one renamed (flags, new/ to cur/) keeps its internal date (a rename keeps the mtime). No file
        is stat'ed nor read: the listing and the uidlist are all it takes."""
        shared = _SCANS.get(self._path)
        if stamp is not None and shared is not None and shared.stamp == stamp:
            self._scanned = shared
            return shared.messages
        records = (await self._uid_records()).values()
        validity = self._header[0]
        previous = shared if shared is not None else self._scanned
        if previous is not None and previous.uid_validity != validity:
            previous = None  # the UIDs name other files now
        maildir: CRLFMaildir = self._maildir  # type: ignore[assignment]
        flags = self.maildir_flags
        flag_sets: dict[str, frozenset[Flag]] = {}  # a folder's files carry a handful of flag combinations
        known_messages = previous.messages if previous is not None else {}
        known_subpaths = previous.subpaths if previous is not None else {}
        messages: dict[int, Message] = {}
        subpaths: dict[int, str] = {}
        new = "new" + os.sep
        async with self.messages_lock.read_lock():
            toc = maildir.table()
            for rec in records:
                uid = rec.uid
                key = rec.key
                subpath = toc.get(key)
                if subpath is None:
                    continue
                subpaths[uid] = subpath
                known = known_messages.get(uid)
                if known is not None and known_subpaths[uid] == subpath:
                    messages[uid] = known
                    continue
                # A renamed file keeps its mtime: its date, if read, holds; otherwise it is read when asked.
                when = known.known_date() if known is not None and known._key == key else None  # type: ignore[attr-defined]
                letters = maildir_names.split(subpath, maildir.colon)[1]
                flag_set = flag_sets.get(letters)
                if flag_set is None:
                    flag_set = flag_sets[letters] = flags.from_maildir(letters)
                fields = rec.fields
                messages[uid] = HeaderFirstMessage.scanned(
                    uid, flag_set, fields.get("E"), fields.get("T"), subpath.startswith(new), maildir, key, when)
        scan = _Scan(stamp, validity, messages, subpaths)
        self._scanned = scan
        if stamp is not None:
            _remember(_SCANS, self._path, scan, weight=lambda entry: len(entry.messages))
        return messages

    async def messages(self) -> AsyncIterator[Message]:
        for message in list((await self._current()).values()):
            yield message

    async def snapshot(self) -> MailboxSnapshot:
        return self.snapshot_of(enumerate((await self._current()).values(), 1), self.unclaimed())

    def unclaimed(self) -> Callable[[CachedMessage], bool]:
        """Whether a message is \\Recent for the next SELECT (what STATUS and EXAMINE count): still
        in new/, and no session had it as \\Recent yet."""
        first = first_recent(self._path, self._uid_validity)
        return lambda message: message.recent and message.uid >= first  # type: ignore[attr-defined]

    def snapshot_of(self, messages: Iterable[tuple[int, CachedMessage]],
                    recent: Callable[[CachedMessage], bool]) -> MailboxSnapshot:
        """pymap's snapshot (the counts SELECT and STATUS report) of (sequence number, message)
        pairs, of which `recent` says which count as \\Recent."""
        exists = recents = unseen = 0
        first_unseen: int | None = None
        for exists, message in messages:
            recents += recent(message)
            if Seen not in message.permanent_flags:
                unseen += 1
                first_unseen = first_unseen or exists
        return MailboxSnapshot(self.mailbox_id, self.readonly, self.uid_validity, self.permanent_flags,
                               self.session_flags, exists, recents, unseen, first_unseen, self._next_uid)

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

    def settled(self, view: SynchronizedMessages) -> SettledFolder | None:
        """The folder if it is still on disk exactly as this session last scanned it (three stats),
        and `view` (a client view of it) shows that scan; None otherwise."""
        stamp = self._folder_stamp()
        scan = self._scanned
        if (stamp is None or stamp != self._messages_stamp or stamp != self._reset_stamp or scan is None
                or scan.messages is not self._messages or self._applied.get(view) is not self._messages):
            return None
        return SettledFolder(self._path, scan.subpaths)

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

    async def claim_recent(self, selected: SelectedMailbox) -> None:
        # pymap moves every file of new/ to cur/ to mark it seen: 10,000 renames on a first SELECT.
        # As Dovecot (maildir_empty_new = no), the folder's first-recent UID says instead which
        # messages no session has had as \Recent yet; they stay in new/ until their flags change.
        # Taken and moved on under the uidlist's lock, so exactly one session (of any process or
        # node sharing the Maildir) gets each.
        maildir: CRLFMaildir = self._maildir  # type: ignore[assignment]
        async with UidList.write_lock(self._path):
            header = UidList.file_open(self._path)  # its first line: mostly, all is claimed already
            validity, next_uid = header.uid_validity, header.next_uid
            first = first_recent(self._path, validity)
            if first >= next_uid:
                return
            records = self._locked_records()
            async with self.messages_lock.read_lock():
                toc = maildir.table()
            new = "new" + os.sep
            for uid, rec in records.items():
                if uid >= first and toc.get(rec.key, "").startswith(new):
                    selected.session_flags.add_recent(uid)
            _write_first_recent(self._path, validity, next_uid)

    async def update(self, uid: int, cached_msg: CachedMessage, flag_set: frozenset[Flag], mode: FlagOp) -> Message:
        self._messages_stamp = None
        return await super().update(uid, cached_msg, flag_set, mode)

    async def _uid_records(self) -> dict[int, Record]:
        """The uidlist's records by UID, parsed again only when the file was replaced."""
        stamp = self._uidlist_stamp()
        if stamp is None or stamp != self._records_stamp:
            async with UidList.with_read(self._path) as uidl:
                self._keep(uidl, stamp)
        return self._records

    def _locked_records(self) -> dict[int, Record]:
        """_uid_records for a caller holding the uidlist's write lock (with_read would wait for it)."""
        stamp = self._uidlist_stamp()
        if stamp is None or stamp != self._records_stamp:
            self._keep(UidList.file_read(self._path), stamp)
        return self._records

    def _uidlist_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(UidList.get_file(self._path))
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def _keep(self, uidl: UidList, stamp: tuple[int, int, int] | None) -> None:
        self._records = {rec.uid: rec for rec in uidl.records}
        self._header = (uidl.uid_validity, uidl.next_uid)
        self._records_stamp = stamp

    async def _record(self, uid: int) -> Record:
        return (await self._uid_records())[uid]

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


class MailLayout(DefaultLayout[CRLFMaildir]):
    """pymap's Maildir++ layout, in which a folder name becomes a directory only through
    folder_directory: a name that is no folder is NO [CANNOT] before anything is touched."""

    @classmethod
    def _get_subdir(cls, parts: Sequence[str]) -> str:
        if not parts:
            return ""
        try:
            return folder_directory(parts)
        except MailsrvError as exc:
            raise MailboxError(None, exc.message.encode(), ResponseCode.of(b"CANNOT")) from None

    def _list_folders(self, parts: Sequence[str]) -> Iterable[Sequence[str]]:
        # Directories no client could name (made before names were checked) are not listed.
        return (found for found in super()._list_folders(parts)
                if not found or is_folder_directory(DefaultLayout._get_subdir(found)))


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

    def opened(self, name: str) -> CachedMailboxData | None:
        """The folder this session opened as `name`, as it was then (nothing read)."""
        return self._mailboxes.get(name)

    async def add_mailbox(self, name: str) -> ObjectId:
        # pymap's session turns ValueError into NO [ALREADYEXISTS].
        if os.path.isdir(self._layout.get_path(name, self.delimiter)):
            raise ValueError(name)
        try:
            return await super().add_mailbox(name)
        except KeyError as exc:
            raise ValueError(name) from exc

    async def rename_mailbox(self, before: str, after: str) -> None:
        # Both names checked before pymap creates the new name's parents.
        self._layout.get_path(before, self.delimiter)
        self._layout.get_path(after, self.delimiter)
        self._mailboxes.pop(before, None)
        await super().rename_mailbox(before, after)

    async def set_subscribed(self, name: str, subscribed: bool) -> None:
        # The subscriptions file holds a name a line: only folder names go in.
        self._layout.get_path(name, self.delimiter)
        await super().set_subscribed(name, subscribed)

    async def delete_mailbox(self, name: str) -> None:
        self._mailboxes.pop(name, None)
        await super().delete_mailbox(name)


def open_folders(root: Path) -> MailFolders:
    return MailFolders(CRLFMaildir(str(root), create=False), MailLayout(str(root), CRLFMaildir))


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
