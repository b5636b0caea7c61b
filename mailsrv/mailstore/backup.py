"""`mailsrv backup` and `mailsrv restore`: the store and the data directory, taken while the server runs.

A backup directory holds `database/` (the store's copy: `mailsrv.store.snapshot`), `data/` (the data
directory: domain directories and Maildirs, spool, keys, TLS material, the disk journal), `config/`
(the configuration file used, if any) and, written last, `manifest.json`: a directory without it is
an unfinished backup, which restore refuses.

Why the order makes the copy consistent: the store is copied first, in one snapshot, then the files.
Every message the snapshot counts was in its Maildir's new/ (or its spool file written) before its
transaction committed, so the files, copied afterwards, hold it; what arrives after the snapshot may
be copied too, uncounted (disk usage is read from the files, the traffic counters from the store).
A Maildir moves a message forward only (tmp/ → new/ → cur/, and renames within cur/ for flags), so
its folders are listed in that order, each just before it is copied: a message that moves while
the copy runs is found in a later listing, and only its copy from there is kept (by its unique name);
one renamed within its folder (an IMAP client changing its flags) is looked for there by that name. The spool is
copied before the domains, so a spool file of the snapshot has the least time to be delivered and
removed before it is copied; one that was (its delivery done after the snapshot) is dropped from
the restored spool, its Maildir copy or remote delivery having happened."""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from mailsrv import __version__
from mailsrv.mailstore.disk import Intent
from mailsrv.store import snapshot
from mailsrv.store.snapshot import SnapshotError

MANIFEST = "manifest.json"
FORMAT = 1
CONFIG_NAME = "mailsrv.toml"
# What a copy leaves out: the server's scratch files, and the SQLite database (copied by the store).
_SCRATCH = ("tmp",)
_SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")
# tmp/ before new/ before cur/: the order a Maildir moves a message in.
_MAILDIR_ORDER = {"tmp": 0, "new": 1, "cur": 2}

# A message whose flags an IMAP client changes over and over is renamed as often; followed this many times.
_RENAMES_FOLLOWED = 100

Progress = Callable[[int, int], None]  # (bytes copied so far, bytes expected in all)


@dataclass
class Manifest:
    format: int
    mailsrv_version: str
    created_at: str  # UTC, ISO 8601
    data_dir: str  # the data directory it was taken from (restore points the store's paths away from it)
    database: str  # the copy's file name under database/: sqlite or PostgreSQL (snapshot.SQLITE_COPY …)
    schema_revision: str | None
    config_file: str | None  # the configuration's original path; its copy is config/mailsrv.toml
    files: int = 0
    bytes: int = 0


def _skipped(data_dir: Path, database_file: Path | None) -> set[Path]:
    skipped = {data_dir / name for name in _SCRATCH}
    if database_file is not None:
        skipped |= {Path(f"{database_file}{suffix}") for suffix in _SQLITE_SUFFIXES}
    return skipped


def _walk(root: Path, skipped: set[Path]) -> Iterator[tuple[Path, bool]]:
    """The folders and files under `root` ((path, is a folder)), the spool first, each folder listed
    only when it is reached (Maildir folders in the order messages move through them)."""
    def key(name: str) -> tuple[int, str]:
        return (0 if name == "spool" else 1 + _MAILDIR_ORDER.get(name, 3), name)

    for directory, folders, files in os.walk(root):
        here = Path(directory)
        folders[:] = sorted((f for f in folders if here / f not in skipped), key=key)
        yield here, True
        for name in sorted(files):
            if here / name not in skipped:
                yield here / name, False


def _unique(path: Path) -> tuple[Path, str] | None:
    """A Maildir message's identity: its Maildir and its name without the flags (`:2,…`)."""
    if path.parent.name in _MAILDIR_ORDER:
        return path.parent.parent, path.name.split(":", 1)[0]
    return None


def _copy_tree(source: Path, target: Path, skipped: set[Path], progress: Progress | None) -> tuple[int, int]:
    """Copy the folders and files under `source` (modes and times kept: Maildir readers go by the
    times); (files, bytes)."""
    expected = 0
    for path, folder in _walk(source, skipped) if progress is not None else ():  # the bar's total, only for a bar
        try:
            expected += 0 if folder else path.stat().st_size
        except FileNotFoundError:
            pass
    copied: dict[tuple[Path, str], tuple[Path, int]] = {}  # a Maildir message's copy (where it was last found)
    files = done = 0
    for path, folder in _walk(source, skipped):
        destination = target / path.relative_to(source)
        if folder:
            destination.mkdir(parents=True, exist_ok=True)
            shutil.copymode(path, destination)
            continue
        identity = _unique(path)
        copy = _copy_file(path, destination, identity)
        if copy is None:
            continue  # moved on to a later folder (listed there) or deleted
        size = copy.stat().st_size
        files, done = files + 1, done + size
        if identity is not None:
            # Moved on while the copy ran: only its later place is kept, so it is restored once.
            if (earlier := copied.get(identity)) is not None:
                files, done = files - 1, done - earlier[1]
                if earlier[0] != copy:
                    earlier[0].unlink()
            copied[identity] = (copy, size)
        if progress is not None:
            progress(done, max(expected, done))
    return files, done


def _copy_file(path: Path, destination: Path, identity: tuple[Path, str] | None) -> Path | None:
    """Copy `path`; a Maildir message renamed within its folder meanwhile (its flags changed) is
    looked for there under its new name, as often as it keeps changing, and another file replaced
    meanwhile is copied again. The copy, or None when the file left the folder."""
    for _ in range(_RENAMES_FOLLOWED):
        try:
            shutil.copy2(path, destination)
            return destination
        except FileNotFoundError:
            if identity is None:
                if path.exists():
                    continue  # replaced by a rename (an index file written whole, as uidlists are)
                return None
        _, unique = identity
        with os.scandir(path.parent) as entries:
            renamed = next((entry.name for entry in entries if entry.name.split(":", 1)[0] == unique), None)
        if renamed is None:
            return None
        path, destination = path.parent / renamed, destination.parent / renamed
    raise SnapshotError(f"{path} was renamed {_RENAMES_FOLLOWED} times while it was being copied.")


def take(data_dir: Path, database_url: str, config_file: str | None, destination: Path,
         progress: Progress | None = None) -> Manifest:
    """A backup of the running server into `destination`, which must be empty or absent."""
    if destination.exists() and any(destination.iterdir()):
        raise SnapshotError(f"{destination} is not empty.")
    if destination.resolve().is_relative_to(data_dir.resolve()):
        raise SnapshotError(f"{destination} is inside the data directory {data_dir}: the backup would copy itself.")
    state = snapshot.schema_state(database_url)
    if not state.reachable or state.revision is None:
        raise SnapshotError(f"No mailsrv database at {state.url}: {state.error or 'it has no tables'}.")
    for part in ("database", "data", "config"):
        (destination / part).mkdir(parents=True, exist_ok=True)
    created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    copy = snapshot.dump(database_url, destination / "database")
    if config_file:
        shutil.copy2(config_file, destination / "config" / CONFIG_NAME)
    files, size = _copy_tree(data_dir, destination / "data", _skipped(data_dir, snapshot.sqlite_path(database_url)),
                             progress)
    manifest = Manifest(FORMAT, __version__, created, str(data_dir), copy, state.revision,
                        str(Path(config_file).resolve()) if config_file else None, files, size)
    written = destination / f"{MANIFEST}.tmp"
    written.write_text(json.dumps(asdict(manifest), indent=2) + "\n")
    written.rename(destination / MANIFEST)
    return manifest


def read_manifest(source: Path) -> Manifest:
    try:
        values = json.loads((source / MANIFEST).read_text())
    except FileNotFoundError:
        raise SnapshotError(f"{source} holds no finished backup (no {MANIFEST}).") from None
    if values.get("format") != FORMAT:
        raise SnapshotError(f"{source}: backup format {values.get('format')} is not {FORMAT}.")
    return Manifest(**values)


@dataclass(frozen=True)
class Restored:
    manifest: Manifest
    spool_dropped: list[str]  # spool messages delivered while the backup was taken (module docstring)


def restore(source: Path, data_dir: Path, database_url: str, overwrite: bool,
            progress: Progress | None = None) -> Restored:
    """The backup at `source` as a new data directory and database: the store's paths point into
    `data_dir`. Refused when `data_dir` holds anything, unless `overwrite`."""
    manifest = read_manifest(source)
    data_dir = data_dir.resolve()
    if data_dir.exists() and any(data_dir.iterdir()):
        if not overwrite:
            raise SnapshotError(f"{data_dir} is not empty (--force replaces what it holds).")
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    files, size = _copy_tree(source / "data", data_dir, set(), progress)
    if (files, size) != (manifest.files, manifest.bytes):
        raise SnapshotError(f"{source}/data holds {files} files of {size} bytes; the manifest says "
                            f"{manifest.files} of {manifest.bytes}.")
    snapshot.load(source / "database" / manifest.database, database_url)
    old = Path(manifest.data_dir)
    snapshot.relocate(database_url, old, data_dir)
    _relocate_journal(data_dir / "journal", old, data_dir)
    return Restored(manifest, snapshot.drop_missing_spool(database_url, data_dir))


def _relocate_journal(journal: Path, old: Path, new: Path) -> None:
    """Intents left by a directory change cut short point at the old data directory: the restored
    server's reconcile must finish them in the new one, never touch the old."""
    def moved(path: str) -> str:
        try:
            return str(new / Path(path).relative_to(old))
        except ValueError:
            return path

    for path in journal.glob("*.json") if journal.is_dir() else ():
        intent = Intent(**json.loads(path.read_text()))
        path.write_text(json.dumps(asdict(Intent(intent.kind, moved(intent.source), moved(intent.target)))))
