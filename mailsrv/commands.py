"""The shell commands for daily work: `domain`, `user`, `stats`, `check-config`, `backup`, `restore`.

Each is the engine call the SOAP operation of the same purpose makes (AddDomain, DeleteDomain,
GetAllDomains, GetDomainSettings/GetDomainCounts, GetUsers, AddUser2, UpdateUser, DeleteUser,
GetDomainStatistics), made as the system administrator: the shell's user holds the configuration
and the database, as root holds Postfix's. `--json` prints one JSON document on stdout for scripts;
errors are one `mailsrv: ` line on stderr (and, with `--json`, `{"error", "code"}` on stdout).
Passwords come from a prompt, or the first line of stdin when it is not a terminal: never from the
command line, where every user of the machine reads them (ps, /proc).
"""
from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailsrv.core.actor import Actor, Role
from mailsrv.core.config import Config, ConfigError, config_path, config_problems, read_config_text
from mailsrv.core.errors import MailsrvError
from mailsrv.core.networks import parse_network

if TYPE_CHECKING:
    from mailsrv.server import MailServer

# The store and the engine (SQLAlchemy, Alembic) are imported by the functions that use them, so that
# `mailsrv --version` and `--help` answer at once.

# The shell's user: the system administrator (module docstring).
SHELL = Actor(Role.SYSTEM_ADMIN, "shell")


class Refused(Exception):
    """The command cannot go on; the message says why (exit 1)."""


def emit(args: argparse.Namespace, document: Any, *lines: str) -> None:
    """`document` as JSON with --json, else the lines of text."""
    if getattr(args, "json", False):
        print(json.dumps(document, default=str, indent=2))
    else:
        for line in lines:
            print(line)


def fail(args: argparse.Namespace, message: str, code: int = 0) -> int:
    print(f"mailsrv: {message}", file=sys.stderr)
    if getattr(args, "json", False):
        print(json.dumps({"error": message, "code": code}))
    return 1


def read_password(what: str) -> str:
    """A password from a prompt (asked twice) or from the first line of stdin."""
    if sys.stdin.isatty():
        first = getpass.getpass(f"{what}: ")
        if getpass.getpass(f"{what} again: ") != first:
            raise Refused("the two passwords differ")
        return first
    line = sys.stdin.readline()
    if not line:
        raise Refused(f"no password on stdin ({what})")
    return line.rstrip("\r\n")


def describe(config: Config, source: str | None) -> str:
    """Which configuration and database a command uses (stated on stderr before it works)."""
    from mailsrv.store import snapshot

    file = Path(source).resolve() if source else "(built-in defaults)"
    return (f"mailsrv: config {file}; data directory {config.data_dir}; "
            f"database {snapshot.shown(config.effective_database_url)}")


@contextmanager
def opened(config: Config, create: bool = False, migrate: bool = False) -> Iterator[MailServer]:
    """The engine on an existing database at the current schema. A database without mailsrv's tables
    is made only with `create`: a command run with another HOME or a forgotten --config must not
    quietly serve an empty database. A schema behind this version is migrated only with `migrate`
    (else the running server's start does it: docs/operations.md)."""
    from mailsrv.server import MailServer
    from mailsrv.store import snapshot

    state = snapshot.schema_state(config.effective_database_url)
    if state.revision is None and not create:
        why = state.error or "it holds no mailsrv tables"
        # The one command that may migrate (admin reset) is also the one with --create.
        raise Refused(f"no mailsrv database at {state.url} ({why}); check --config or MAILSRV_CONFIG"
                      + (", or pass --create to make a new one" if migrate else
                         "; `mailsrv serve` or `mailsrv admin reset --create` makes a new one"))
    if state.revision is not None and not state.current and not migrate:
        raise Refused(f"the database {state.url} is at schema {state.revision}, this mailsrv expects "
                      f"{state.head}: start `mailsrv serve` to migrate it (docs/operations.md)")
    server = MailServer(config, recover=create or migrate)
    try:
        yield server
    finally:
        server.close()


def _address(raw: str) -> tuple[str, str]:
    name, at, domain = raw.rpartition("@")
    if not at:
        raise Refused(f"'{raw}' is not an address (name@domain)")
    return name, domain


# --- domains ------------------------------------------------------------------------------------

def domain_list(config: Config, args: argparse.Namespace) -> int:
    with opened(config) as server:
        found = server.domains.names(SHELL)
    emit(args, {"domains": found}, *found)
    return 0


def domain_show(config: Config, args: argparse.Namespace) -> int:
    with opened(config) as server:
        view = server.domains.get(SHELL, args.name)
        counts = server.stats.counts(SHELL, args.name)
    document = {"name": view.name, "path": view.path, "primary_admin": view.primary_admin,
                "users": counts.users, "aliases": counts.aliases, "mailing_lists": counts.mailing_lists,
                "bytes_size": counts.size, "settings": view.settings}
    emit(args, document, *(f"{key}: {value}" for key, value in document.items() if key != "settings"),
         "settings:", *(f"  {key}={value}" for key, value in sorted(view.settings.items())))
    return 0


def domain_add(config: Config, args: argparse.Namespace) -> int:
    from mailsrv.core import settings

    with opened(config) as server:
        overrides = settings.parse_assignments(settings.DOMAIN, args.set)
        password = read_password(f"password for {args.admin}@{args.name}")
        server.domains.add(SHELL, args.name, args.path, args.admin, password, args.first_name, args.last_name,
                           overrides)
        path = server.domains.get(SHELL, args.name).path
    emit(args, {"domain": args.name, "path": path, "primary_admin": args.admin},
         f"Added {args.name} in {path}; its administrator is {args.admin}@{args.name}.")
    return 0


def domain_delete(config: Config, args: argparse.Namespace) -> int:
    with opened(config) as server:
        server.domains.delete(SHELL, args.name, args.delete_files)
    emit(args, {"domain": args.name, "deleted": True, "files_deleted": args.delete_files},
         f"Deleted {args.name}" + ("" if args.delete_files else " (its directory is kept)") + ".")
    return 0


# --- users --------------------------------------------------------------------------------------

def user_list(config: Config, args: argparse.Namespace) -> int:
    with opened(config) as server:
        users = server.users.list(SHELL, args.domain)
    emit(args, {"domain": args.domain, "users": [asdict(user) for user in users]},
         *(f"{u.name}@{args.domain}\t{u.first_name} {u.last_name}".rstrip()
           + ("\t(domain administrator)" if u.is_domain_admin else "") for u in users))
    return 0


def user_add(config: Config, args: argparse.Namespace) -> int:
    name, domain = _address(args.address)
    with opened(config) as server:
        password = read_password(f"password for {args.address}")
        server.users.add(SHELL, name, password, domain, args.first_name, args.last_name, args.domain_admin,
                         args.max_mb)
    emit(args, {"user": args.address, "added": True}, f"Added {args.address}.")
    return 0


def user_passwd(config: Config, args: argparse.Namespace) -> int:
    with opened(config) as server:
        # UpdateUser sets every field: the others are sent back as they are, as control panels do.
        user = server.users.get(SHELL, args.address)
        password = read_password(f"new password for {args.address}")
        if not password:
            raise Refused("the password is empty")
        server.users.update(SHELL, args.address, password, user.first_name, user.last_name, user.is_domain_admin)
    emit(args, {"user": args.address, "password_changed": True}, f"Changed the password of {args.address}.")
    return 0


def user_delete(config: Config, args: argparse.Namespace) -> int:
    name, domain = _address(args.address)
    with opened(config) as server:
        server.users.delete(SHELL, name, domain)
    emit(args, {"user": args.address, "deleted": True}, f"Deleted {args.address} and its mailbox.")
    return 0


# --- statistics ---------------------------------------------------------------------------------

def _day(text: str) -> dt.datetime:
    try:
        return dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), dt.timezone.utc)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date (YYYY-MM-DD)") from None


def stats(config: Config, args: argparse.Namespace) -> int:
    """GetDomainStatistics: whole UTC days, both ends included."""
    with opened(config) as server:
        traffic = server.stats.domain(SHELL, args.domain, args.start, args.end)
    document = {"domain": args.domain, "from": args.start.date() if args.start else None,
                "to": args.end.date() if args.end else None, **asdict(traffic)}
    emit(args, document, *(f"{key}: {value}" for key, value in document.items()))
    return 0


# --- check-config -------------------------------------------------------------------------------

_LISTEN_KEYS = ("web", "webs", "smtp", "submission", "imap", "imaps", "pop3", "pop3s")


def _writable_directory(path: Path) -> str:
    """Why the server could not create files in `path` (or create `path`); '' when it can."""
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".mailsrv-check-"):
            pass
    except OSError as exc:
        return f"cannot write in {existing}: {exc.strerror}"
    return ""


def _config_checks(config: Config) -> Iterator[str]:
    from mailsrv.serve import parse_address

    for key in _LISTEN_KEYS:
        if value := getattr(config.listen, key):
            try:
                parse_address(value, f"listen.{key}")
            except ConfigError as exc:
                yield str(exc)
    for key, networks in (("smtp.relay_networks", config.smtp.relay_networks),
                          ("security.trusted_networks", config.security.trusted_networks)):
        for spec in networks:
            try:
                parse_network(spec)
            except ValueError:
                yield f"configuration key '{key}': '{spec}' is not an address, network or range"
    tls = config.tls
    if bool(tls.cert_file) != bool(tls.key_file):
        yield "configuration keys 'tls.cert_file' and 'tls.key_file' go together"
    for key, file in (("tls.cert_file", tls.cert_file), ("tls.key_file", tls.key_file)):
        if file and not os.access(file, os.R_OK):
            yield f"configuration key '{key}': cannot read {file}"
    if problem := _writable_directory(config.data_dir):
        yield f"configuration key 'data_dir': {problem}"


def check_config(args: argparse.Namespace) -> int:
    """Every problem of the configuration, each naming its key; then whether the data directory and
    the database can be reached and written. Exit 1 on any problem."""
    from mailsrv.store import snapshot

    source = config_path(args.config)
    try:
        config, problems = config_problems(read_config_text(source))
    except ConfigError as exc:
        config, problems = None, [str(exc)]
    notes: list[str] = []
    document: dict[str, Any] = {"config": str(Path(source).resolve()) if source else None}
    if config is not None:
        print(describe(config, source), file=sys.stderr)
        problems += _config_checks(config)
        url = config.effective_database_url
        state = snapshot.schema_state(url)
        document |= {"data_dir": str(config.data_dir), "database": state.url,
                     "schema_revision": state.revision, "schema_head": state.head}
        file = snapshot.sqlite_path(url)
        if file is not None and not file.exists():
            notes.append(f"the database {file} does not exist yet: `mailsrv serve` creates it")
            if problem := _writable_directory(file.parent):
                problems.append(f"configuration key 'database_url': {problem}")
        elif not state.reachable:
            problems.append(f"configuration key 'database_url': cannot reach {state.url}: {state.error}")
        else:
            if problem := snapshot.write_refusal(url):
                problems.append(f"configuration key 'database_url': cannot write {state.url}: {problem}")
            if state.revision is None:
                notes.append(f"{state.url} holds no mailsrv tables yet: `mailsrv serve` creates them")
            elif not state.current:
                notes.append(f"schema {state.revision}; `mailsrv serve` migrates it to {state.head}: "
                             "take a backup first (docs/operations.md)")
    document |= {"problems": problems, "notes": notes, "ok": not problems}
    emit(args, document, *(f"problem: {p}" for p in problems), *(f"note: {n}" for n in notes),
         "configuration OK" if not problems else f"{len(problems)} problems")
    return 1 if problems else 0


# --- backup and restore -------------------------------------------------------------------------

@contextmanager
def _progress(what: str) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on stderr while files are copied, when stderr is a terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TimeRemainingColumn(), console=console, transient=True) as bar:
        task = bar.add_task(what, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def backup(config: Config, args: argparse.Namespace) -> int:
    from mailsrv.mailstore.backup import take

    destination = Path(args.destination).resolve()
    with _progress("copying the data directory") as progress:
        manifest = take(config.data_dir, config.effective_database_url, config_path(args.config), destination,
                        progress)
    emit(args, {"backup": str(destination), **asdict(manifest)},
         f"Backed up {manifest.files} files ({manifest.bytes} bytes) and the database "
         f"(schema {manifest.schema_revision}) into {destination}.")
    return 0


def restore(args: argparse.Namespace) -> int:
    """Into a new data directory (and database): its config is written there, pointing at both."""
    from mailsrv.mailstore.backup import CONFIG_NAME, restore as restore_backup
    from mailsrv.store import snapshot

    source, data_dir = Path(args.source).resolve(), Path(args.data_dir).resolve()
    url = args.database_url or f"sqlite:///{data_dir / 'mailsrv.db'}"
    print(f"mailsrv: restoring {source} into data directory {data_dir}; database {snapshot.shown(url)}",
          file=sys.stderr)
    with _progress("copying the data directory") as progress:
        restored = restore_backup(source, data_dir, url, args.force, progress)
    config_file = data_dir / CONFIG_NAME
    config_file.write_text(_restored_config(source / "config" / CONFIG_NAME, data_dir, args.database_url))
    manifest = restored.manifest
    emit(args, {"restored": str(source), "data_dir": str(data_dir), "database": snapshot.shown(url),
                "config": str(config_file), "spool_dropped": restored.spool_dropped, **asdict(manifest)},
         f"Restored the backup of {manifest.created_at} ({manifest.files} files, {manifest.bytes} bytes) into "
         f"{data_dir}.", f"Its configuration: {config_file} (start with `mailsrv serve --config {config_file}`).")
    return 0


def _restored_config(original: Path, data_dir: Path, database_url: str) -> str:
    """The backed-up configuration with the new data directory and database (top-level keys, so
    their lines come before any table and are replaced whole)."""
    kept = [line for line in (original.read_text().splitlines() if original.is_file() else [])
            if line.split("=", 1)[0].strip() not in ("data_dir", "database_url")]
    text = "\n".join([f"data_dir = {json.dumps(str(data_dir))}", f"database_url = {json.dumps(database_url)}",
                      *kept]) + "\n"
    config_problems(text)  # what we write must read back
    return text


# --- the parser ---------------------------------------------------------------------------------

def add_parsers(commands: argparse._SubParsersAction,  # type: ignore[type-arg]
                config_option: argparse.ArgumentParser) -> None:
    """These commands' parsers under `mailsrv`."""
    json_option = argparse.ArgumentParser(add_help=False)
    json_option.add_argument("--json", action="store_true", help="one JSON document on stdout, for scripts")
    common = [config_option, json_option]

    domain = commands.add_parser("domain", help="domains (svcDomainAdmin)")
    domains = domain.add_subparsers(metavar="ACTION", required=True)
    domains.add_parser("list", parents=common, help="every domain's name").set_defaults(command=domain_list)
    show = domains.add_parser("show", parents=common, help="a domain's directory, administrator, counts, settings")
    show.add_argument("name", metavar="DOMAIN")
    show.set_defaults(command=domain_show)
    add = domains.add_parser("add", parents=common,
                             help="a new domain and its primary administrator (password: prompt or stdin)")
    add.add_argument("name", metavar="DOMAIN")
    add.add_argument("--admin", required=True, metavar="NAME", help="the primary administrator's user name")
    add.add_argument("--path", metavar="DIR", help="its directory (default: <data_dir>/domains/DOMAIN)")
    add.add_argument("--first-name", default="")
    add.add_argument("--last-name", default="")
    add.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="a domain setting other than the defaults (SetRequestedDomainSettings' keys)")
    add.set_defaults(command=domain_add)
    delete = domains.add_parser("delete", parents=common, help="delete a domain (its directory kept unless told)")
    delete.add_argument("name", metavar="DOMAIN")
    delete.add_argument("--delete-files", action="store_true", help="remove its directory and mailboxes too")
    delete.set_defaults(command=domain_delete)

    user = commands.add_parser("user", help="mailbox users (svcUserAdmin)")
    users = user.add_subparsers(metavar="ACTION", required=True)
    listing = users.add_parser("list", parents=common, help="a domain's users")
    listing.add_argument("domain", metavar="DOMAIN")
    listing.set_defaults(command=user_list)
    add = users.add_parser("add", parents=common, help="a new mailbox (password: prompt or stdin)")
    add.add_argument("address", metavar="NAME@DOMAIN")
    add.add_argument("--first-name", default="")
    add.add_argument("--last-name", default="")
    add.add_argument("--domain-admin", action="store_true", help="an administrator of its domain")
    add.add_argument("--max-mb", type=int, default=0, metavar="MB", help="mailbox size (0: the domain's limit)")
    add.set_defaults(command=user_add)
    passwd = users.add_parser("passwd", parents=common, help="set a user's password (prompt or stdin)")
    passwd.add_argument("address", metavar="NAME@DOMAIN")
    passwd.set_defaults(command=user_passwd)
    delete = users.add_parser("delete", parents=common, help="delete a user and its mailbox")
    delete.add_argument("address", metavar="NAME@DOMAIN")
    delete.set_defaults(command=user_delete)

    statistics = commands.add_parser("stats", parents=common,
                                     help="a domain's traffic in whole UTC days (GetDomainStatistics)")
    statistics.add_argument("domain", metavar="DOMAIN")
    statistics.add_argument("--from", dest="start", type=_day, metavar="YYYY-MM-DD", help="first day (default: all)")
    statistics.add_argument("--to", dest="end", type=_day, metavar="YYYY-MM-DD", help="last day, included")
    statistics.set_defaults(command=stats)

    check = commands.add_parser("check-config", parents=common,
                                help="every problem of the configuration, the data directory and the database")
    check.set_defaults(command=None, raw=check_config)

    taking = commands.add_parser("backup", parents=common,
                                 help="a consistent copy of the store and the data directory, while the server runs")
    taking.add_argument("destination", metavar="DEST", help="an empty or new directory")
    taking.set_defaults(command=backup)
    restoring = commands.add_parser("restore", parents=[json_option],
                                    help="a backup into a new data directory (and database)")
    restoring.add_argument("source", metavar="SRC", help="a directory made by `mailsrv backup`")
    restoring.add_argument("--data-dir", required=True, metavar="DIR", help="the new data directory")
    restoring.add_argument("--database-url", default="", metavar="URL",
                           help="the database to restore into, empty (default: SQLite in DIR; "
                           "a PostgreSQL backup needs one)")
    restoring.add_argument("--force", action="store_true", help="replace what DIR holds")
    restoring.set_defaults(command=None, raw=restore)


def run(call: Callable[[], int], args: argparse.Namespace) -> int:
    """A command with the answers every one gives: refusals and engine errors exit 1, a configuration
    found unusable while working (a listen address) exits 2."""
    from mailsrv.store.snapshot import SnapshotError

    try:
        return call()
    except ConfigError as exc:
        print(f"mailsrv: {exc}", file=sys.stderr)
        return 2
    except MailsrvError as exc:
        return fail(args, exc.message, int(exc.code))
    except (Refused, SnapshotError) as exc:
        return fail(args, str(exc))
