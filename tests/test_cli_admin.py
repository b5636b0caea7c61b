"""The shell commands for daily work as an operator runs them: `mailsrv domain|user|stats|check-config|
backup|restore` as real processes beside a real `mailsrv serve`, checked against what its SOAP
services and its Maildirs show."""
from __future__ import annotations

import imaplib
import json
import re
import smtplib
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy

from contract_clients import HttpClient
from serve_support import MAILSRV, Serving, wait_until
from test_cli import database_url  # noqa: F401 (fixture)

ADMIN = {"AuthUserName": "root", "AuthPassword": "Gr8-secret-pw"}
DOMAIN = "ex.test"


def write_config(directory: Path, database_url: str) -> Path:
    # SMTP and IMAP on free loopback ports (the tests send and read mail); the others off.
    path = directory / "mailsrv.toml"
    path.write_text(f'data_dir = "{directory / "data"}"\ndatabase_url = "{database_url}"\n'
                    '[server]\nworkers = 1\n'
                    '[listen]\nweb = "127.0.0.1:0"\nsmtp = "127.0.0.1:0"\nsubmission = ""\nimap = "127.0.0.1:0"\n'
                    'pop3 = ""\n')
    return path


class Shell:
    """`mailsrv …` with one configuration; `stdin` is what the command reads passwords from."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.config = config
        self.env = env

    def __call__(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([MAILSRV, *args, "--config", str(self.config)], env=self.env, capture_output=True,
                              text=True, timeout=120, input=stdin)

    def json(self, *args: str, stdin: str = "") -> dict:
        done = self(*args, "--json", stdin=stdin)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def refused(self, *args: str, stdin: str = "") -> tuple[int, dict]:
        """A refused command: exit 1, and its --json error document's code."""
        done = self(*args, "--json", stdin=stdin)
        assert done.returncode == 1, done.stdout
        error = json.loads(done.stdout)
        assert done.stderr.splitlines()[-1] == f"mailsrv: {error['error']}"
        return error["code"], error


@pytest.fixture
def shell(tmp_path, env, database_url) -> Shell:
    return Shell(write_config(tmp_path, database_url), env)


def installed(shell: Shell) -> None:
    """A new installation: its database made and its administrator set, as the README says."""
    done = shell("admin", "reset", "--username", ADMIN["AuthUserName"], "--create", stdin=ADMIN["AuthPassword"] + "\n")
    assert done.returncode == 0, done.stderr


def listener_port(server: Serving, protocol: str = "SMTP") -> int:
    return int(server.wait_for(re.compile(rf"{protocol} listener on [\d.]+:(\d+)"))[1])


def message(number: int) -> bytes:
    # Every message the same size: the byte counters then say how many were counted.
    return (f"From: <far@away.test>\r\nTo: <al@{DOMAIN}>\r\nSubject: load {number:06d}\r\n\r\n"
            f"body of message {number:06d}\r\n").encode()


def tables(database_url: str) -> list[str]:
    engine = sqlalchemy.create_engine(database_url)
    try:
        return sqlalchemy.inspect(engine).get_table_names()
    finally:
        engine.dispose()


@pytest.mark.parametrize("command", [("domain", "list"), ("spool", "list"), ("spool", "hold", "0123456789abcdef")],
                         ids=["domain list", "spool list", "spool hold"])
def test_every_command_states_its_configuration_and_refuses_a_missing_database(shell, tmp_path, database_url,
                                                                               command):
    before = tables(database_url) if database_url else []
    done = shell(*command)
    assert done.returncode == 1
    first, refusal = done.stderr.splitlines()
    assert first.startswith(f"mailsrv: config {shell.config}; data directory {tmp_path / 'data'}; database ")
    assert refusal.startswith("mailsrv: no mailsrv database at ")
    assert (database_url.split("@")[-1] if database_url else str(tmp_path / "data" / "mailsrv.db")) in refusal
    # Nothing made: not the data directory nor the SQLite file, not a table on PostgreSQL.
    assert not (tmp_path / "data").exists()
    if database_url:
        assert tables(database_url) == before


def test_admin_reset_makes_a_new_database_only_when_told(shell, tmp_path, database_url):
    refused = shell("admin", "reset", "--username", "root", stdin="Gr8-secret-pw\n")
    assert refused.returncode == 1
    assert "no mailsrv database" in refused.stderr and "pass --create to make a new one" in refused.stderr
    if not database_url:
        assert not (tmp_path / "data").exists()  # nothing made: not the data directory, not the file
    no_password = shell("admin", "reset", "--username", "root", "--create")
    assert no_password.returncode == 1 and no_password.stderr.endswith("mailsrv: no password on stdin "
                                                                       "(password for root)\n")
    installed(shell)
    # The old spelling still works for the scripts that use it, with a warning about ps.
    old = shell("admin", "reset", "--username", "root", "--password", "An0ther-secret")
    assert old.returncode == 0 and "warning: --password is shown to every user" in old.stderr


def test_domain_and_user_commands_make_what_the_soap_services_show(shell, tmp_path, env):
    installed(shell)
    with Serving(shell.config, env) as server:
        soap = HttpClient(server.base_url(), "GET")
        port = listener_port(server)

        added = shell.json("domain", "add", DOMAIN, "--admin", "boss", "--set", "maxusers=5",
                           stdin="Dom-pass-1234\n")
        path = str(tmp_path / "data" / "domains" / DOMAIN)
        assert added == {"domain": DOMAIN, "path": path, "primary_admin": "boss"}
        assert soap.call("svcDomainAdmin", "GetAllDomains", **ADMIN)["DomainNames"] == [DOMAIN]
        assert shell.json("domain", "list") == {"domains": [DOMAIN]}
        assert shell("domain", "list").stdout == f"{DOMAIN}\n"
        shown = shell.json("domain", "show", DOMAIN)
        assert (shown["path"], shown["primary_admin"], shown["users"], shown["settings"]["maxusers"]) == \
            (path, "boss", 1, 5)
        assert soap.call("svcDomainAdmin", "GetDomainInfo", **ADMIN, domainName=DOMAIN)["Path"] == path

        assert shell.json("user", "add", f"al@{DOMAIN}", "--first-name", "Al", stdin="User-pass-123\n") == \
            {"user": f"al@{DOMAIN}", "added": True}
        listed = shell.json("user", "list", DOMAIN)["users"]
        assert [(u["name"], u["first_name"], u["is_domain_admin"]) for u in listed] == \
            [("al", "Al", False), ("boss", "", True)]
        soap_users = soap.call("svcUserAdmin", "GetUsers", **ADMIN, DomainName=DOMAIN)["Users"]
        assert [u["UserName"] for u in soap_users] == ["al", "boss"]
        assert shell("user", "list", DOMAIN).stdout.splitlines()[0] == f"al@{DOMAIN}\tAl"

        def authenticates(password: str) -> bool:
            return soap.call("svcUserAdmin", "AuthenticateUser", UserName="al", DomainName=DOMAIN,
                             Password=password)["Result"]

        assert shell.json("user", "passwd", f"al@{DOMAIN}", stdin="New-pass-4567\n")["password_changed"]
        assert authenticates("New-pass-4567") and not authenticates("User-pass-123")
        # Password rules, unknown names: the engine's refusals with their SOAP result codes.
        assert shell.refused("user", "passwd", f"al@{DOMAIN}", stdin="short\n")[0] == -21
        assert shell.refused("user", "add", f"bo@{DOMAIN}", stdin="al\n")[0] == -21
        assert shell.refused("domain", "show", "nowhere.test")[0] == -30
        assert shell.refused("user", "delete", f"nobody@{DOMAIN}")[0] == -31
        assert shell.refused("user", "add", "no-domain", stdin="User-pass-123\n")[1]["error"] == \
            "'no-domain' is not an address (name@domain)"

        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            for number in range(3):
                smtp.sendmail("far@away.test", [f"al@{DOMAIN}"], message(number))
        today = time.strftime("%Y-%m-%d", time.gmtime())
        counted = shell.json("stats", DOMAIN, "--from", today, "--to", today)
        soap_counted = soap.call("svcDomainAdmin", "GetDomainStatistics", **ADMIN, DomainName=DOMAIN,
                                 StartDate=f"{today}T00:00:00", EndDate=f"{today}T00:00:00")
        assert counted["messages_received"] == 3
        assert [counted[key] for key in ("messages_received", "messages_sent", "bytes_received", "bytes_sent",
                                         "bytes_size")] == \
            [soap_counted[key] for key in ("MessagesReceived", "MessagesSent", "BytesReceived", "BytesSent",
                                           "BytesSize")]
        assert shell.json("stats", DOMAIN, "--to", "2000-01-01")["messages_received"] == 0
        bad_day = shell("stats", DOMAIN, "--from", "yesterday")
        assert bad_day.returncode == 2 and "'yesterday' is not a date (YYYY-MM-DD)" in bad_day.stderr

        assert shell.json("user", "delete", f"al@{DOMAIN}")["deleted"]
        assert [u["UserName"] for u in soap.call("svcUserAdmin", "GetUsers", **ADMIN, DomainName=DOMAIN)["Users"]] \
            == ["boss"]
        assert not (Path(path) / "users" / "al").exists()
        assert shell.json("domain", "delete", DOMAIN, "--delete-files")["files_deleted"]
        assert soap.call("svcDomainAdmin", "GetAllDomains", **ADMIN)["DomainNames"] in ([], None, "")
        assert not Path(path).exists()
        assert server.stop() == 0


def test_check_config_names_every_problem_with_its_key(tmp_path, env):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    config = tmp_path / "broken.toml"
    config.write_text(f'data_dir = "{blocker / "data"}"\ndatabase_url = "postgresql+psycopg://nobody@127.0.0.1:1/x"\n'
                      '[listen]\nweb = "localhost:80"\nsmtp = 25\n'
                      '[security]\nlockout_secs = 60\ntrusted_networks = ["10.0.0.0/33"]\n'
                      '[tls]\ncert_file = "/nonexistent/cert.pem"\n'
                      '[product]\nedition = "GOLD"\n')
    done = subprocess.run([MAILSRV, "check-config", "--config", str(config), "--json"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    problems = json.loads(done.stdout)["problems"]
    keys = ["listen.smtp", "security.lockout_secs", "product.edition", "listen.web", "security.trusted_networks",
            "tls.cert_file' and 'tls.key_file", "tls.cert_file", "data_dir", "database_url"]
    assert len(problems) == len(keys)
    for problem, key in zip(problems, keys):
        assert f"'{key}'" in problem, (key, problems)
    assert "is not a directory" in problems[keys.index("data_dir")]
    assert "cannot reach" in problems[-1]
    text = subprocess.run([MAILSRV, "check-config", "--config", str(config)], env=env, capture_output=True,
                          text=True, timeout=60)
    assert text.returncode == 1 and text.stdout.splitlines()[-1] == f"{len(keys)} problems"
    assert text.stdout.splitlines()[0] == f"problem: {problems[0]}"

    not_toml = tmp_path / "not.toml"
    not_toml.write_text("data_dir = \n")
    done = subprocess.run([MAILSRV, "check-config", "--config", str(not_toml)], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1 and done.stdout.startswith("problem: configuration is not valid TOML")


def test_check_config_passes_a_good_configuration_and_reports_the_schema(shell):
    fresh = shell.json("check-config")
    assert fresh["ok"] and fresh["problems"] == []
    installed(shell)
    checked = shell.json("check-config")
    assert checked["ok"] and checked["notes"] == [] and checked["schema_revision"] == checked["schema_head"]
    assert shell("check-config").stdout.splitlines()[-1] == "configuration OK"


@pytest.fixture
def restore_database_url(database_url) -> Iterator[str]:
    """Where a restore puts the store: '' (SQLite in the new data directory), or a new PostgreSQL
    database beside the suite's."""
    if not database_url:
        yield ""
        return
    base = sqlalchemy.make_url(database_url)
    name = f"{base.database}_restored"
    admin = sqlalchemy.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    yield base.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def maildir_messages(maildir: Path) -> list[bytes]:
    return [path.read_bytes() for part in ("new", "cur") for path in sorted((maildir / part).iterdir())]


def test_a_backup_taken_under_smtp_load_restores_every_acknowledged_message_and_counter(
        shell, tmp_path, env, restore_database_url):
    installed(shell)
    acknowledged: list[int] = []  # in the order the server answered 250
    stop = threading.Event()
    failures: list[BaseException] = []

    def load(port: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
                number = 0
                while not stop.is_set():
                    smtp.sendmail("far@away.test", [f"al@{DOMAIN}"], message(number))
                    acknowledged.append(number)
                    number += 1
        except BaseException as exc:  # the assertion below names it
            failures.append(exc)

    with Serving(shell.config, env) as server:
        port = listener_port(server)
        shell.json("domain", "add", DOMAIN, "--admin", "boss", stdin="Dom-pass-1234\n")
        shell.json("user", "add", f"al@{DOMAIN}", stdin="User-pass-123\n")
        sender = threading.Thread(target=load, args=(port,))
        sender.start()
        try:
            wait_until(lambda: len(acknowledged) >= 30 or bool(failures), "30 messages acknowledged")
            before = len(acknowledged)
            taken = shell("backup", str(tmp_path / "backup"), "--json")
            after = len(acknowledged)
        finally:
            stop.set()
            sender.join(60)
        assert not failures, failures
        assert taken.returncode == 0, taken.stderr
        assert after > before  # the backup ran while messages were being accepted
        total = len(acknowledged)
        original = shell.json("stats", DOMAIN)
        assert original["messages_received"] == total
        assert server.stop() == 0
    manifest = json.loads(taken.stdout)
    assert manifest["files"] >= before and (tmp_path / "backup" / "manifest.json").is_file()

    restore = [MAILSRV, "restore", str(tmp_path / "backup"), "--data-dir", str(tmp_path / "restored"), "--json"]
    if restore_database_url:
        restore += ["--database-url", restore_database_url]
    done = subprocess.run(restore, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    restored_config = Path(json.loads(done.stdout)["config"])
    again = subprocess.run(restore, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "is not empty (--force replaces what it holds)" in again.stderr

    restored = Shell(restored_config, env)
    counted = restored.json("stats", DOMAIN)
    # The store's snapshot was taken after every 250 before the backup began, before every one after it.
    assert before <= counted["messages_received"] <= after
    assert counted["bytes_received"] == counted["messages_received"] * original["bytes_received"] // total
    # One sender, one message at a time: the snapshot counted the first N acknowledged, and every one
    # of them is in the restored Maildir, whole and once.
    copies = maildir_messages(tmp_path / "restored" / "domains" / DOMAIN / "users" / "al" / "Maildir")
    for number in acknowledged[:counted["messages_received"]]:
        assert sum(copy.endswith(message(number)) for copy in copies) == 1, number
    # Disk usage is read from the files: at least the messages (a delivery under way may add its tmp/ copy).
    assert counted["bytes_size"] >= sum(len(copy) for copy in copies)

    with Serving(restored_config, env) as server:  # the restored server runs and answers the same
        soap = HttpClient(server.base_url(), "GET")
        soap_counted = soap.call("svcDomainAdmin", "GetDomainStatistics", **ADMIN, DomainName=DOMAIN,
                                 StartDate="2000-01-01T00:00:00", EndDate="2100-01-01T00:00:00")
        assert (soap_counted["MessagesReceived"], soap_counted["BytesReceived"]) == \
            (counted["messages_received"], counted["bytes_received"])
        assert server.stop() == 0


def test_restore_refuses_an_unfinished_backup(tmp_path, env):
    (tmp_path / "half").mkdir()
    done = subprocess.run([MAILSRV, "restore", str(tmp_path / "half"), "--data-dir", str(tmp_path / "new")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "holds no finished backup (no manifest.json)" in done.stderr


def test_messages_an_imap_client_moves_and_flags_during_the_backup_are_restored_once_each(
        shell, tmp_path, env, restore_database_url):
    installed(shell)
    sent = 200
    with Serving(shell.config, env) as server:
        smtp, imap_port = listener_port(server), listener_port(server, "IMAP")
        shell.json("domain", "add", DOMAIN, "--admin", "boss", stdin="Dom-pass-1234\n")
        shell.json("user", "add", f"al@{DOMAIN}", stdin="User-pass-123\n")
        with smtplib.SMTP("127.0.0.1", smtp, timeout=30) as client:
            for number in range(sent):
                client.sendmail("far@away.test", [f"al@{DOMAIN}"], message(number))
        stop = threading.Event()
        rounds: list[int] = []
        failures: list[BaseException] = []

        def reader() -> None:
            # Selecting moves new/ to cur/; each flag change renames every file within cur/.
            try:
                imap = imaplib.IMAP4("127.0.0.1", imap_port, timeout=30)
                imap.login(f"al@{DOMAIN}", "User-pass-123")
                imap.select("INBOX")
                while not stop.is_set():
                    for change in ("+FLAGS", "-FLAGS"):
                        assert imap.store("1:*", change, "(\\Seen)")[0] == "OK"
                    rounds.append(1)
                imap.logout()
            except BaseException as exc:  # the assertion below names it
                failures.append(exc)

        thread = threading.Thread(target=reader)
        thread.start()
        try:
            wait_until(lambda: bool(rounds) or bool(failures), "a first round of flag changes")
            taken = shell("backup", str(tmp_path / "backup"))
            during = len(rounds)
        finally:
            stop.set()
            thread.join(60)
        assert not failures, failures
        assert taken.returncode == 0, taken.stderr
        assert during > 1  # files were being renamed while the backup ran
        assert server.stop() == 0
    restore = [MAILSRV, "restore", str(tmp_path / "backup"), "--data-dir", str(tmp_path / "restored")]
    done = subprocess.run(restore + (["--database-url", restore_database_url] if restore_database_url else []),
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    copies = maildir_messages(tmp_path / "restored" / "domains" / DOMAIN / "users" / "al" / "Maildir")
    assert len(copies) == sent
    for number in range(sent):
        assert sum(copy.endswith(message(number)) for copy in copies) == 1, number
