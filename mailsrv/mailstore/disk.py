"""Where a domain lives on disk, and the moves that keep store and disk in agreement.

Every change that touches both is ordered so that a failure on either side can be undone: the
directory change is made with renames on one filesystem (never a copy of a live tree) and reverted
if the database transaction then fails. Its intent is journalled first, so that when the process
dies in between, the next start finishes or undoes it by what the store committed (`reconcile`).
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shutil
import signal
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from mailsrv.core.errors import MailsrvError, ResultCode

log = logging.getLogger(__name__)
T = TypeVar("T")

MAILDIR_PARTS = ("cur", "new", "tmp")
# Every mailbox gets these Maildir++ folders (`Maildir/.Sent`, …) at creation: IMAP announces them
# with their RFC 6154 SPECIAL-USE attribute and the web interface files sent and deleted mail there.
SPECIAL_FOLDERS = ("Sent", "Drafts", "Trash", "Junk")


# The one fault-injection point: a process with MAILSRV_FAULT_POINT=<name> in its environment stops
# itself with SIGKILL at `fault_point(<name>)`, as a crash would there (tests/test_security_disk.py).
FAULT_POINT_VARIABLE = "MAILSRV_FAULT_POINT"


def fault_point(name: str) -> None:
    if os.environ.get(FAULT_POINT_VARIABLE) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _fs(what: str, fn: Callable[..., T], *args: object) -> T:
    """Run a filesystem step; a failure becomes a refusal the caller can read, not a server fault."""
    try:
        return fn(*args)
    except OSError as exc:
        raise MailsrvError(ResultCode.STORAGE_ERROR, f"Could not {what}: {exc.strerror or exc}.") from None


def fsync_directory(path: Path) -> None:
    """Make the renames into `path` durable: a file's own fsync does not cover its directory entry."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# The server's own directories under the data directory: a domain's tree may not be, contain or lie
# inside one, or deleting the domain would delete them (the spool with its queued mail, say).
SERVER_DIRECTORIES = ("spool", "trash", "tmp", "tls", "journal")
TRASH_BESIDE = ".trash"


def _real(path: str | Path) -> Path:
    """Where a path leads once symlinks (of its existing part) are followed: what a deletion would hit."""
    return Path(os.path.realpath(path))


def _overlap(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def _reals(paths: Iterable[str]) -> Iterator[str]:
    """`_real` of each path, as strings, at one directory listing per parent instead of a walk of
    every path: a new domain is checked against all the others' directories, thousands of them
    side by side in `domains/`. A name that is no symlink leads where its parent leads."""
    parents: dict[str, tuple[str, frozenset[str] | None]] = {}
    for path in paths:
        parent, _, name = path.rpartition(os.sep)
        if parent not in parents:
            try:
                with os.scandir(parent or os.sep) as entries:
                    links = frozenset(e.name for e in entries if e.is_symlink())
            except (FileNotFoundError, NotADirectoryError):  # nothing below it exists, no symlink either
                links = frozenset()
            except OSError:  # unreadable: each path is walked alone
                links = None
            parents[parent] = (os.path.realpath(parent or os.sep), links)
        real_parent, links = parents[parent]
        if links is None or name in links or not name or name in (".", ".."):
            yield os.path.realpath(path)
        else:
            yield os.path.join(real_parent, name)


def _merge(source: Path, target: Path) -> None:
    """Move `source` to `target`. Where `target` exists already (files a domain was deleted without,
    or a mailbox a delivery made meanwhile), move in what it lacks and keep what it has."""
    if not os.path.lexists(source):
        return
    try:
        os.rename(source, target)
        return
    except OSError as exc:
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
    for entry in os.scandir(source):
        inside = target / entry.name
        if entry.is_dir(follow_symlinks=False) and inside.is_dir():
            _merge(Path(entry.path), inside)
        elif not os.path.lexists(inside):
            os.rename(entry.path, inside)
    shutil.rmtree(source, ignore_errors=True)


@dataclass(frozen=True)
class Intent:
    """A directory change whose store change is about to be committed: for kind "add", the staged
    `source` becomes `target`; "move", `source` becomes `target`; "delete", `source` goes to
    `target` in trash."""
    kind: str
    source: str
    target: str


class Journal:
    """Intents, one fsynced file each, written before a directory change and cleared once store and
    disk agree. The process carrying an intent out holds an flock on its file, so a start-up
    reconcile takes up only intents whose process is gone — also with several nodes sharing the
    data directory, where no node may touch what another is still doing."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @contextmanager
    def intent(self, intent: Intent) -> Iterator[None]:
        """Journal `intent` for the block. Cleared when the block ends, unless it ends in an OSError
        (an undo that failed): that intent is left to the next start's reconcile."""
        _fs("create the journal directory", self.directory.mkdir, 0o700, True, True)
        name = uuid.uuid4().hex
        # Written under a name `abandoned` passes over, then renamed: it only ever sees whole intents.
        writing, path = self.directory / f"{name}.tmp", self.directory / f"{name}.json"
        fd = _fs("write the journal", os.open, writing, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _fs("write the journal", os.write, fd, json.dumps(asdict(intent)).encode())
            _fs("write the journal", os.fsync, fd)
            _fs("write the journal", os.rename, writing, path)
            _fs("write the journal", fsync_directory, self.directory)
        except BaseException:
            _clear(writing, fd)
            with suppress(OSError):
                path.unlink()
            raise
        try:
            yield
        except OSError:
            os.close(fd)
            raise
        except BaseException:
            _clear(path, fd)
            raise
        _clear(path, fd)

    def abandoned(self) -> Iterator[Intent]:
        """The intents whose process died, each cleared once the caller has handled it."""
        if not self.directory.is_dir():
            return
        for path in sorted(self.directory.iterdir()):
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its process is still at work
                if not path.exists() or os.stat(path).st_ino != os.fstat(fd).st_ino:
                    continue  # finished and cleared meanwhile
                if path.suffix == ".json":
                    yield Intent(**json.loads(path.read_bytes()))
                # else cut short while being written: the change it was to announce had not begun.
                path.unlink()
            finally:
                os.close(fd)


def _clear(path: Path, fd: int) -> None:
    # A journal file that cannot be removed is harmless: reconciling a finished intent changes nothing.
    with suppress(OSError):
        path.unlink()
    os.close(fd)


class Disk:
    def __init__(self, data_dir: Path, server_paths: Iterable[Path] = ()) -> None:
        """`server_paths`: further files or folders of the server (the database's) no domain may overlap."""
        self.data_dir = data_dir.resolve()
        self.domains_dir = self.data_dir / "domains"
        self.trash_dir = self.data_dir / "trash"
        self.journal = Journal(self.data_dir / "journal")
        self.server_paths = [self.data_dir / name for name in SERVER_DIRECTORIES] + list(server_paths)

    def domain_path(self, domain: str, requested: str | None, others: Iterable[str],
                    default: Path | None = None) -> Path:
        """The directory for a domain: the requested Path, else `default` (`domains/<domain>`).

        Refused (-14) unless it lies inside the data directory and overlaps (is, contains or lies
        inside) neither a server directory nor `others`, the other domains' directories — compared
        where symlinks lead."""
        if (requested or "").strip():
            path = Path(requested.strip()).expanduser()
            if not path.is_absolute():
                path = self.data_dir / path
            path = Path(os.path.normpath(path))
            if path.exists() and any(path.iterdir()):
                raise MailsrvError(ResultCode.INVALID_PATH, f"The path '{requested}' exists and is not empty.")
        else:
            path = default or self.domains_dir / domain
        real, data = _real(path), _real(self.data_dir)
        if data not in real.parents:
            raise MailsrvError(ResultCode.INVALID_PATH,
                               f"The path '{path}' must lie inside the data directory {self.data_dir}.")
        if any(part.startswith(".") for part in real.relative_to(data).parts):
            raise MailsrvError(ResultCode.INVALID_PATH,
                               f"The path '{path}' names a folder starting with '.', which are the server's.")
        domains = _real(self.domains_dir)
        if real == domains or real in domains.parents or any(_overlap(real, _real(p)) for p in self.server_paths):
            raise MailsrvError(ResultCode.INVALID_PATH, f"The path '{path}' overlaps a directory of the server.")
        mine = str(real)
        if any(other == mine or other.startswith(mine + os.sep) or mine.startswith(other + os.sep)
               for other in _reals(others)):
            raise MailsrvError(ResultCode.INVALID_PATH, f"The path '{path}' overlaps another domain's directory.")
        return path

    @staticmethod
    def maildir(domain_path: str | Path, user: str) -> Path:
        return Path(domain_path) / "users" / user / "Maildir"

    @staticmethod
    def folder(maildir: Path, folder: str) -> Path:
        """The Maildir++ directory of a mailbox's `folder` ("" the inbox); the inbox when the user has
        removed that folder: mail is never refused over where it would have been filed."""
        if not folder:
            return maildir
        path = maildir / f".{folder}"
        return path if (path / "tmp").is_dir() and (path / "new").is_dir() else maildir

    def create_mailbox(self, domain_path: str | Path, user: str) -> None:
        self.create_maildir(self.maildir(domain_path, user))

    @staticmethod
    def create_maildir(root: Path) -> None:
        for folder in (root, *(root / f".{name}" for name in SPECIAL_FOLDERS)):
            for part in MAILDIR_PARTS:
                _fs("create the mailbox directory", (folder / part).mkdir, 0o700, True, True)

    @contextmanager
    def created(self, path: Path) -> Iterator[Path]:
        """A new directory for the block's transaction: built under a staging name of this request's
        own beside `path` (yielded) and moved into place once the block, and so its commit, succeeds.

        A request that fails or loses a race removes only its own staging directory, never a
        directory another request made and the winner now uses; a crash leaves only the staging
        directory, which the next start removes or moves into place by what the store committed."""
        staging = path.parent / f".new-{path.name}.{uuid.uuid4().hex}"
        committed = False
        try:
            with self.journal.intent(Intent("add", str(staging), str(path))):
                _fs("create the directory", staging.mkdir, 0o700, True)
                fault_point("staged")
                try:
                    yield staging
                except BaseException:
                    shutil.rmtree(staging, ignore_errors=True)
                    raise
                committed = True
                fault_point("committed")
                _merge(staging, path)
        except OSError:
            if not committed:
                raise
            # The store change stands; the journal keeps the move for the next start's reconcile.
            log.exception("could not move %s into place as %s", staging, path)

    @contextmanager
    def moved(self, old: Path, new: Path) -> Iterator[None]:
        """Move a directory for the block's transaction; move it back if the block fails.

        Only by rename: a target on another filesystem is refused (-70), never copied."""
        if new.exists() and any(new.iterdir()):
            raise MailsrvError(ResultCode.INVALID_PATH, f"The target directory {new} exists and is not empty.")
        present = old.exists()
        with self.journal.intent(Intent("move", str(old), str(new))):
            if present:
                _fs("create the target directory", new.parent.mkdir, 0o700, True, True)
                if new.exists():
                    new.rmdir()
                _fs("move the domain directory", os.rename, old, new)
            else:
                _fs("create the domain directory", new.mkdir, 0o700, True, True)
            fault_point("staged")
            try:
                yield
            except BaseException:
                if present:
                    os.rename(new, old)
                raise

    @contextmanager
    def removed(self, path: Path) -> Iterator[None]:
        """Delete a directory once the block's transaction succeeds; untouched if it fails.

        The directory is first renamed into a trash folder on its own filesystem (atomic, never a
        copy), so a crash before the commit leaves it whole for the next start to move back."""
        if not path.exists():
            yield
            return
        parked = self._trash_for(path) / f"{path.name}.{uuid.uuid4().hex}"
        with self.journal.intent(Intent("delete", str(path), str(parked))):
            _fs("move the directory to trash", os.rename, path, parked)
            fault_point("staged")
            try:
                yield
            except BaseException:
                os.rename(parked, path)
                raise
            fault_point("committed")
            shutil.rmtree(parked, ignore_errors=True)

    def set_aside(self, path: Path) -> None:
        """Move a directory no store row owns out of a new owner's way, into trash as
        `<name>.orphan-<random>`, where it is kept (not removed) for an administrator to look at."""
        if os.path.lexists(path):
            aside = self._trash_for(path) / f"{path.name}.orphan-{uuid.uuid4().hex}"
            log.warning("moving %s, which no store row owns, aside to %s", path, aside)
            _fs("move an orphan directory aside", os.rename, path, aside)

    def _trash_for(self, path: Path) -> Path:
        """trash/ in the data directory, or `.trash` beside `path` when that lies on another filesystem."""
        trash = self.trash_dir
        _fs("create the trash directory", trash.mkdir, 0o700, True, True)
        if _fs("read the directory", os.stat, trash).st_dev != _fs("read the directory", os.stat, path).st_dev:
            trash = path.parent / TRASH_BESIDE
            _fs("create the trash directory", trash.mkdir, 0o700, True, True)
        return trash

    def reconcile(self, refers_to: Callable[[Path], bool]) -> None:
        """Finish or undo the directory changes of processes that died half-way, so that disk agrees
        with the store: `refers_to(path)` tells whether the store has a domain or user there."""
        for intent in self.journal.abandoned():
            source, target = Path(intent.source), Path(intent.target)
            log.warning("finishing or undoing the %s of %s, cut short", intent.kind, intent)
            if intent.kind == "delete":
                if refers_to(source):
                    _merge(target, source)
                else:
                    shutil.rmtree(target, ignore_errors=True)
            elif refers_to(target):
                _merge(source, target)
            elif intent.kind == "move":
                _merge(target, source)
            else:
                # An add the store never committed: its staging directory never had a live name.
                shutil.rmtree(source, ignore_errors=True)
