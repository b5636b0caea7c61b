"""Where a domain lives on disk, and the moves that keep store and disk in agreement.

Every change that touches both is ordered so that a failure on either side can be undone: the
directory change is made first (atomic renames where possible) and reverted if the database
transaction then fails.
"""
from __future__ import annotations

import errno
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mailsrv.errors import MailsrvError, ResultCode

log = logging.getLogger(__name__)

MAILDIR_PARTS = ("cur", "new", "tmp")
# Every mailbox gets these Maildir++ folders (`Maildir/.Sent`, …) at creation: IMAP announces them
# with their RFC 6154 SPECIAL-USE attribute and the web interface files sent and deleted mail there.
SPECIAL_FOLDERS = ("Sent", "Drafts", "Trash", "Junk")


def _fs(what: str, fn: Callable[..., object], *args: object) -> None:
    """Run a filesystem step; a failure becomes a refusal the caller can read, not a server fault."""
    try:
        fn(*args)
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


def _real(path: str | Path) -> Path:
    """Where a path leads once symlinks (of its existing part) are followed: what a deletion would hit."""
    return Path(os.path.realpath(path))


def _overlap(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def _merge(source: Path, target: Path) -> None:
    """Move `source` to `target`. Where `target` exists already (files a domain was deleted without,
    or a mailbox a delivery made meanwhile), move in what it lacks and keep what it has."""
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


class Disk:
    def __init__(self, data_dir: Path, server_paths: Iterable[Path] = ()) -> None:
        """`server_paths`: further files or folders of the server (the database's) no domain may overlap."""
        self.data_dir = data_dir.resolve()
        self.domains_dir = self.data_dir / "domains"
        self.trash_dir = self.data_dir / "trash"
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
        domains = _real(self.domains_dir)
        if real == domains or real in domains.parents or any(_overlap(real, _real(p)) for p in self.server_paths):
            raise MailsrvError(ResultCode.INVALID_PATH, f"The path '{path}' overlaps a directory of the server.")
        if any(_overlap(real, _real(other)) for other in others):
            raise MailsrvError(ResultCode.INVALID_PATH, f"The path '{path}' overlaps another domain's directory.")
        return path

    @staticmethod
    def maildir(domain_path: str | Path, user: str) -> Path:
        return Path(domain_path) / "users" / user / "Maildir"

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
        directory another request made and the winner now uses."""
        staging = path.parent / f".new-{path.name}.{uuid.uuid4().hex}"
        _fs("create the directory", staging.mkdir, 0o700, True)
        try:
            yield staging
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        try:
            _merge(staging, path)
        except OSError:
            # The store change stands; mailbox directories are made again on first delivery or login.
            log.exception("could not move %s into place as %s", staging, path)

    @contextmanager
    def moved(self, old: Path, new: Path) -> Iterator[None]:
        """Move a directory for the block's transaction; move it back if the block fails."""
        if new.exists() and any(new.iterdir()):
            raise MailsrvError(ResultCode.INVALID_PATH, f"The target directory {new} exists and is not empty.")
        present = old.exists()
        if present:
            _fs("create the target directory", new.parent.mkdir, 0o700, True, True)
            if new.exists():
                new.rmdir()
            _fs("move the domain directory", shutil.move, str(old), str(new))
        else:
            _fs("create the domain directory", new.mkdir, 0o700, True, True)
        try:
            yield
        except BaseException:
            if present:
                shutil.move(str(new), str(old))
            raise

    @contextmanager
    def removed(self, path: Path) -> Iterator[None]:
        """Delete a directory once the block's transaction succeeds; untouched if it fails.

        The directory is first renamed into trash/ (atomic), so a crash between commit and delete
        leaves it in trash/ rather than half-deleted under its live name."""
        if not path.exists():
            yield
            return
        _fs("create the trash directory", self.trash_dir.mkdir, 0o700, True, True)
        parked = self.trash_dir / f"{path.name}.{uuid.uuid4().hex}"
        _fs("remove the directory", shutil.move, str(path), str(parked))
        try:
            yield
        except BaseException:
            shutil.move(str(parked), str(path))
            raise
        shutil.rmtree(parked, ignore_errors=True)
