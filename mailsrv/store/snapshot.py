"""The database as a backup holds it: its schema state, a consistent copy taken while the server
runs (SQLite's online backup API, PostgreSQL's `pg_dump`), and that copy loaded into a new database.

A copy is read in one snapshot: SQLite's backup copies every page in one step under one read
transaction (WAL: writers go on beside it), and `pg_dump` reads in one repeatable-read
transaction. Nothing here creates a database that does not exist: a command that would open one
must see it first (`schema_state`)."""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from alembic.script import ScriptDirectory
from alembic.config import Config as AlembicConfig
from sqlalchemy import URL, create_engine, inspect, make_url, select, text
from sqlalchemy.exc import SQLAlchemyError

from mailsrv.store.db import MIGRATIONS

SQLITE_COPY = "mailsrv.db"
POSTGRES_COPY = "mailsrv.pgdump"


class SnapshotError(Exception):
    """A backup or restore step failed; the message says which and why (the shell's exit 1)."""


@dataclass(frozen=True)
class SchemaState:
    """What a database URL leads to. `revision` None with `reachable`: a database without mailsrv's
    tables (new and empty); `error` says why it could not be read."""
    url: str  # the URL with its password hidden, for messages
    reachable: bool
    revision: str | None
    head: str
    error: str = ""

    @property
    def current(self) -> bool:
        return self.revision == self.head


def shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def head_revision() -> str:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL (None for other databases and for memory)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def schema_state(url: str) -> SchemaState:
    """The database's migration revision, read without creating anything."""
    head = head_revision()
    path = sqlite_path(url)
    if path is not None:
        if not path.is_file():
            return SchemaState(shown(url), False, None, head, f"{path} does not exist")
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
                tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                row = conn.execute("SELECT version_num FROM alembic_version").fetchone() \
                    if "alembic_version" in tables else None
        except sqlite3.Error as exc:
            return SchemaState(shown(url), False, None, head, str(exc))
        return SchemaState(shown(url), True, row[0] if row else None, head)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            revision = None
            if inspect(conn).has_table("alembic_version"):
                revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError as exc:
        return SchemaState(shown(url), False, None, head, str(exc.orig or exc).strip().splitlines()[0])
    finally:
        engine.dispose()
    return SchemaState(shown(url), True, revision, head)


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A PostgreSQL URL as libpq's tools take it, and the environment carrying its password (never argv)."""
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    bare = URL.create("postgresql", parsed.username, None, parsed.host, parsed.port, parsed.database)
    return bare.render_as_string(hide_password=False), env


def _run(tool: str, args: list[str], env: dict[str, str]) -> None:
    if shutil.which(tool) is None:
        raise SnapshotError(f"{tool} is not installed (Debian: postgresql-client).")
    done = subprocess.run([tool, *args], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise SnapshotError(f"{tool} failed: {done.stderr.strip()}")


def dump(url: str, directory: Path) -> str:
    """A consistent copy of the database into `directory`; the copy's file name."""
    path = sqlite_path(url)
    if path is not None:
        target = directory / SQLITE_COPY
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as source, sqlite3.connect(target) as copy:
            source.backup(copy)  # every page in one step: one snapshot
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        return SQLITE_COPY
    dsn, env = _libpq(url)
    _run("pg_dump", ["--format=custom", "--no-owner", "--no-privileges", f"--file={directory / POSTGRES_COPY}", dsn],
         env)
    return POSTGRES_COPY


def load(copy: Path, url: str) -> None:
    """Put a copy made by `dump` into the database at `url`, which must hold no tables."""
    target = sqlite_path(url)
    if (copy.name == SQLITE_COPY) != (target is not None):
        kind = "SQLite" if copy.name == SQLITE_COPY else "PostgreSQL"
        raise SnapshotError(f"A backup restores into the kind of database it was taken from ({kind}).")
    if target is not None:
        if target.exists():
            raise SnapshotError(f"The database file {target} exists already.")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(copy, target)
        return
    state = schema_state(url)
    if not state.reachable:
        raise SnapshotError(f"Cannot reach the database {state.url}: {state.error}")
    if _has_tables(url):
        raise SnapshotError(f"The database {state.url} is not empty.")
    dsn, env = _libpq(url)
    _run("pg_restore", ["--no-owner", "--no-privileges", "--exit-on-error", f"--dbname={dsn}", str(copy)], env)


def _has_tables(url: str) -> bool:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return bool(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def relocate(url: str, old: Path, new: Path) -> None:
    """Point the absolute paths the store keeps (domain directories, Maildirs awaiting a rename)
    from the data directory `old` to `new`."""
    from mailsrv.store.models import Domain, MaildirRename

    def moved(path: str) -> str | None:
        try:
            return str(new / Path(path).relative_to(old))
        except ValueError:
            return None

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for table, key, column in ((Domain.__table__, Domain.id, Domain.path),
                                       (MaildirRename.__table__, MaildirRename.name, MaildirRename.maildir)):
                for row_key, path in conn.execute(select(key, column)).all():
                    if (target := moved(path)) is not None:
                        conn.execute(table.update().where(key == row_key).values({column.key: target}))
    finally:
        engine.dispose()


def drop_missing_spool(url: str, data_dir: Path) -> list[str]:
    """Remove from a restored store the spool messages whose files the backup does not hold (their
    delivery finished while it was taken); their IDs."""
    from mailsrv.store.models import SpoolMessage, SpoolRecipient

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            missing = [message_id for message_id, path in conn.execute(select(SpoolMessage.id, SpoolMessage.path))
                       if not (data_dir / path).is_file()]
            if missing:
                conn.execute(SpoolRecipient.__table__.delete().where(SpoolRecipient.message_id.in_(missing)))
                conn.execute(SpoolMessage.__table__.delete().where(SpoolMessage.id.in_(missing)))
    finally:
        engine.dispose()
    return missing


def write_refusal(url: str) -> str:
    """Why the database would refuse the server's writes ('' : it takes them): a table created and
    rolled back (SQLite and PostgreSQL both undo DDL with its transaction)."""
    statement = f"CREATE TABLE mailsrv_check_{uuid.uuid4().hex} (x INTEGER)"
    path = sqlite_path(url)
    if path is not None:
        # Begun by hand: the driver's own transaction handling would commit the DDL.
        try:
            conn = sqlite3.connect(path, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(statement)
                conn.execute("ROLLBACK")
            finally:
                conn.close()
        except sqlite3.Error as exc:
            return str(exc)
        return ""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            transaction = conn.begin()
            try:
                conn.execute(text(statement))
            finally:
                transaction.rollback()
    except SQLAlchemyError as exc:
        return str(exc.orig or exc).strip().splitlines()[0]
    finally:
        engine.dispose()
    return ""
