"""Security #8, store and disk of provisioning: a domain directory never overlaps a server directory
or another domain, a crash never leaves store and disk disagreeing, a lost race or a full disk
removes or breaks nothing of anyone else's — all judged over SOAP, SMTP and the bytes on disk."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from contract_clients import make_client
from mailsrv.core.config import parse_config
from mailsrv.mailstore.disk import FAULT_POINT_VARIABLE
from mailsrv.core.errors import MailsrvError
from mailsrv.server import MailServer
from smtp_support import DOMAIN, MailHarness, make_harness, send
from smtp_support import mail  # noqa: F401  (the fixture)

ALICE = f"alice@{DOMAIN}"

ADMIN = {"AuthUserName": "root", "AuthPassword": "Gr8-secret-pw"}
DOMAINS = "svcDomainAdmin"
USERS = "svcUserAdmin"


def add_domain(client, name: str, path: str = "") -> dict:
    return client.call(DOMAINS, "AddDomainEx", **ADMIN, DomainName=name, Path=path,
                       PrimaryDomainAdminUserName="postmaster", PrimaryDomainAdminPassword="Domain-pass-1",
                       PrimaryDomainAdminFirstName="", PrimaryDomainAdminLastName="", IP="")


def result_code(result: dict) -> int:
    assert result["Result"] is (result["ResultCode"] == 0), result
    return result["ResultCode"]


@pytest.fixture
def soap(live_server):
    """A live server with one domain, one.example, at its default path; (client, data dir)."""
    live_server.server.admins.reset_primary("root", "Gr8-secret-pw")
    client = make_client("post", live_server.url)
    assert result_code(add_domain(client, "one.example")) == 0
    return client, live_server.server.config.data_dir


# -- #8.11: a domain path may not overlap a server directory or another domain ----------------------

@pytest.mark.parametrize("path", ["spool", "spool/inside", "trash", "trash/inside", "tmp", "tls/inside",
                                  "journal", "domains", "domains/one.example", "domains/one.example/users/x"])
def test_domain_path_overlapping_a_server_or_domain_directory_is_refused(soap, path):
    client, data = soap
    assert result_code(add_domain(client, "two.example", path)) == -14
    assert client.call(DOMAINS, "GetAllDomains", **ADMIN)["DomainNames"] == ["one.example"]


def test_domain_path_containing_another_domain_is_refused(soap):
    client, data = soap
    assert result_code(add_domain(client, "two.example", "custom/two")) == 0
    assert result_code(add_domain(client, "three.example", "custom")) == -14
    # Nor may a default path land inside a domain whose custom path took its place.
    assert result_code(add_domain(client, "four.example", "domains/five.example")) == 0
    assert result_code(add_domain(client, "five.example")) == -14
    refused_move = client.call(DOMAINS, "UpdateDomainNameAndPath", **ADMIN, OldDomainName="two.example",
                               NewDomainName="two.example", NewDomainPath="domains/one.example/users/two")
    assert result_code(refused_move) == -14
    assert (data / "custom" / "two" / "users" / "postmaster" / "Maildir").is_dir()


def test_symlinked_domain_path_is_judged_by_where_it_leads(soap):
    client, data = soap
    (data / "link").symlink_to(data / "spool")
    assert result_code(add_domain(client, "two.example", "link/two")) == -14
    (data / "link2").symlink_to(data / "domains" / "one.example")
    assert result_code(add_domain(client, "two.example", "link2/x")) == -14
    assert not (data / "spool" / "two").exists()


def test_a_domain_whose_directory_became_a_symlink_is_judged_by_where_it_leads(soap):
    # The others' directories are resolved by listing their parents (thousands of domains side by
    # side): a directory an administrator moved and replaced by a symlink must still be found.
    client, data = soap
    assert result_code(add_domain(client, "two.example", "custom/two")) == 0
    (data / "moved").mkdir()
    (data / "custom" / "two").rename(data / "moved" / "two")
    (data / "custom" / "two").symlink_to(data / "moved" / "two")
    assert result_code(add_domain(client, "three.example", "moved")) == -14
    assert result_code(add_domain(client, "three.example", "moved/two/inside")) == -14
    assert result_code(add_domain(client, "three.example", "moved/three")) == 0


def test_spool_survives_a_refused_domain_path_and_deletion(soap):
    client, data = soap
    queued = data / "spool" / "queued-message"
    queued.write_bytes(b"Subject: queued\r\n\r\nbody\r\n")
    assert result_code(add_domain(client, "two.example", "spool/two")) == -14
    assert result_code(client.call(DOMAINS, "DeleteDomain", **ADMIN, DomainName="two.example",
                                   DeleteFiles=True)) == -30
    assert queued.read_bytes() == b"Subject: queued\r\n\r\nbody\r\n"


def test_database_folder_is_refused(tmp_path):
    data = (tmp_path / "data").resolve()
    (data / "db").mkdir(parents=True)
    server = MailServer(parse_config(f'data_dir = "{data}"\ndatabase_url = "sqlite:///{data}/db/mailsrv.db"\n'))
    try:
        server.admins.reset_primary("root", "Gr8-secret-pw")
        actor = server.login("root", "Gr8-secret-pw", "127.0.0.1")
        for path in ("db", "db/inside"):
            with pytest.raises(MailsrvError) as refused:
                server.domains.add(actor, "two.example", path, "postmaster", "Domain-pass-1", "", "", {})
            assert refused.value.code == -14
    finally:
        server.close()


# -- #8.16b: a full disk is a -70 refusal with the store unchanged ----------------------

@pytest.fixture
def small_disk(tmp_path, request):
    """A live server whose whole data directory is a small tmpfs, holding one.example; (client, data)."""
    data = tmp_path / "data"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(data)], check=True)
    try:
        live_server = request.getfixturevalue("live_server")
        live_server.server.admins.reset_primary("root", "Gr8-secret-pw")
        client = make_client("post", live_server.url)
        assert result_code(add_domain(client, "one.example")) == 0
        yield client, data
    finally:
        subprocess.run(["umount", "-l", str(data)], check=True)


def fill(directory: Path, leave: int) -> None:
    """Take the free blocks of `directory`'s filesystem but `leave` bytes."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"x" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    os.truncate(filler, filler.stat().st_size - leave)


@pytest.mark.parametrize("operation, leave", [("AddUser", 0), ("AddUser2", 0), ("AddUser", 4096)])
def test_add_user_on_a_full_disk_is_storage_error(small_disk, operation, leave):
    """Nothing left, or room for the directory change but not for the database's write."""
    if leave and os.environ.get("MAILSRV_TEST_DATABASE_URL"):
        pytest.skip("the database is not on the full disk")
    client, data = small_disk
    fill(data, leave)
    extra = {"maxMailboxSize": 0} if operation == "AddUser2" else {}
    result = client.call(USERS, operation, **ADMIN, NewUsername="alice", NewPassword="Wonder-land-1",
                         DomainName="one.example", FirstName="", LastName="", IsDomainAdmin=False, **extra)
    assert result_code(result) == -70
    users = client.call(USERS, "GetUsers", **ADMIN, DomainName="one.example")["Users"]
    assert [user["UserName"] for user in users] == ["postmaster"]
    assert sorted(p.name for p in (data / "domains" / "one.example" / "users").iterdir()) == ["postmaster"]


# -- #8.15: a request's rollback removes only what that request made ---------------------------------

def test_concurrent_adds_of_one_user_leave_the_winner_its_maildir(make_server):
    server = make_server()
    server.admins.reset_primary("root", "Gr8-secret-pw")
    root = server.login("root", "Gr8-secret-pw", "127.0.0.1")
    server.domains.add(root, "one.example", "", "postmaster", "Domain-pass-1", "", "", {})
    domain_dir = Path(server.domains.get(root, "one.example").path)

    def add(name: str) -> int:
        try:
            server.users.add(root, name, "Wonder-land-1", "one.example", "", "", False)
            return 0
        except MailsrvError as refused:
            return refused.code

    with ThreadPoolExecutor(8) as pool:
        for round_ in range(20):
            name = f"user{round_}"
            codes = sorted(pool.map(add, [name] * 8))
            assert codes == [-41] * 7 + [0], (round_, codes)
            assert (domain_dir / "users" / name / "Maildir" / "new").is_dir(), round_
    assert sorted(p.name for p in (domain_dir / "users").iterdir()) == sorted(
        ["postmaster", *(f"user{n}" for n in range(20))])


# -- #8.12: a process killed half-way through a provisioning change is reconciled at start ----------

KEPT = b"Subject: kept\r\n\r\nalice's mail from before\r\n"
CHILD = """
import sys
from mailsrv.core.config import parse_config
from mailsrv.server import MailServer
server = MailServer(parse_config(sys.argv[1]))
actor = server.login("sysadmin", "Secret-pass-123", "127.0.0.1")
{operation}
"""


@pytest.fixture
def crash(tmp_path):
    """The mail harness (a.test with alice and bob; alice holds one message) and a function that
    stops it, runs an engine call in a child process on the same data directory and database that
    SIGKILLs itself at a named fault point, and starts the harness again."""
    harness_iter = make_harness(tmp_path)
    harness = next(harness_iter)
    (harness.maildir(ALICE) / "new" / "1.kept").write_bytes(KEPT)

    def run(operation: str, point: str) -> MailHarness:
        harness.stop()
        try:
            child = subprocess.run([sys.executable, "-c", CHILD.format(operation=operation), harness.config_text],
                                   env={**os.environ, FAULT_POINT_VARIABLE: point}, capture_output=True, timeout=120)
        finally:
            harness.start()
        assert child.returncode == -signal.SIGKILL, child.stderr.decode()
        return harness

    yield run
    next(harness_iter, None)


def left_over(data: Path) -> list[str]:
    """Staging, trash and journal entries anywhere in the data directory: none once reconciled."""
    return sorted(str(p.relative_to(data)) for p in data.rglob("*")
                  if p.name.startswith(".new-") or p.parent.name in ("trash", ".trash", "journal"))


def rcpt(harness: MailHarness, address: str) -> int:
    with harness.client() as smtp:
        smtp.ehlo()
        smtp.mail("carol@remote.test")
        return smtp.rcpt(address)[0]


def test_delete_domain_killed_before_its_commit_gives_the_domain_its_directory_back(crash):
    harness = crash(f'server.domains.delete(actor, "{DOMAIN}", True)', "staged")
    assert harness.server.domains.names(harness.admin()) == [DOMAIN]
    assert left_over(harness.data_dir) == []
    assert (harness.maildir(ALICE) / "new" / "1.kept").read_bytes() == KEPT
    with harness.client() as smtp:
        send(smtp, "carol@remote.test", [ALICE], b"Subject: after\r\n\r\nnew mail\r\n")
    harness.deliver()
    assert [m.endswith(b"new mail\r\n") for m in harness.messages(ALICE)].count(True) == 1
    assert len(harness.messages(ALICE)) == 2


def test_delete_domain_killed_after_its_commit_is_finished(crash):
    harness = crash(f'server.domains.delete(actor, "{DOMAIN}", True)', "committed")
    assert harness.server.domains.names(harness.admin()) == []
    assert left_over(harness.data_dir) == []
    assert not (harness.data_dir / "domains" / DOMAIN).exists()
    assert rcpt(harness, ALICE) == 550


def test_delete_user_killed_before_its_commit_keeps_the_mailbox(crash):
    harness = crash(f'server.users.delete(actor, "alice", "{DOMAIN}")', "staged")
    assert left_over(harness.data_dir) == []
    assert (harness.maildir(ALICE) / "new" / "1.kept").read_bytes() == KEPT
    assert rcpt(harness, ALICE) == 250


@pytest.mark.parametrize("point", ["staged", "committed"])
def test_add_user_killed_half_way_leaves_no_orphan(crash, point):
    harness = crash(f'server.users.add(actor, "carol", "Wonder-land-1", "{DOMAIN}", "", "", False)', point)
    assert left_over(harness.data_dir) == []
    users = harness.data_dir / "domains" / DOMAIN / "users"
    if point == "staged":  # never committed: no user, no directory; a later add starts afresh
        assert rcpt(harness, f"carol@{DOMAIN}") == 550
        assert not (users / "carol").exists()
        harness.server.users.add(harness.admin(), "carol", "Wonder-land-1", DOMAIN, "", "", False)
    assert (users / "carol" / "Maildir" / "new").is_dir()
    assert rcpt(harness, f"carol@{DOMAIN}") == 250


@pytest.mark.parametrize("point", ["staged", "committed"])
def test_add_domain_killed_half_way_leaves_store_and_disk_agreeing(crash, point):
    harness = crash('server.domains.add(actor, "b.test", "", "postmaster", "Domain-pass-1", "", "", {})', point)
    assert left_over(harness.data_dir) == []
    directory = harness.data_dir / "domains" / "b.test"
    assert (harness.server.domains.names(harness.admin()) == [DOMAIN, "b.test"]) is (point == "committed")
    assert (directory / "users" / "postmaster" / "Maildir" / "new").is_dir() is (point == "committed")
    assert rcpt(harness, "postmaster@b.test") == (250 if point == "committed" else 550)


def test_add_user_sets_an_orphan_directory_aside_instead_of_reusing_it(soap):
    """A directory no user owns under the new user's name (left by a version without the journal,
    or made by a delivery that raced the previous owner's deletion) is not handed to the new user."""
    client, data = soap
    orphan = data / "domains" / "one.example" / "users" / "carol" / "Maildir"
    for part in ("cur", "new", "tmp"):
        (orphan / part).mkdir(parents=True)
    (orphan / "new" / "1.old").write_bytes(KEPT)
    assert result_code(client.call(USERS, "AddUser", **ADMIN, NewUsername="carol", NewPassword="Wonder-land-1",
                                   DomainName="one.example", FirstName="", LastName="", IsDomainAdmin=False)) == 0
    assert list((orphan / "new").iterdir()) == []
    assert [p.read_bytes() for p in (data / "trash").rglob("1.old")] == [KEPT]


@pytest.fixture
def other_filesystem(tmp_path):
    """Mounts a tmpfs on a directory (made if missing) and unmounts it afterwards."""
    mounted: list[Path] = []

    def mount(directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(directory)], check=True)
        mounted.append(directory)
        return directory

    yield mount
    for directory in reversed(mounted):
        subprocess.run(["umount", "-l", str(directory)], check=True)


def test_trash_on_another_filesystem_is_never_copied_into(mail, other_filesystem):
    trash = other_filesystem(mail.data_dir / "trash")
    for n in range(300):  # more than the 1 MB tmpfs holds: a copy would run out of room half-way
        (mail.maildir(ALICE) / "cur" / f"{n}.msg").write_bytes(os.urandom(8192))
    mail.server.domains.delete(mail.admin(), DOMAIN, True)
    assert mail.server.domains.names(mail.admin()) == []
    assert not (mail.data_dir / "domains" / DOMAIN).exists()
    assert list(trash.iterdir()) == []
    assert left_over(mail.data_dir) == []


def test_move_to_another_filesystem_is_refused_and_loses_nothing(mail, other_filesystem):
    other_filesystem(mail.data_dir / "elsewhere")
    (mail.maildir(ALICE) / "cur" / "1.msg").write_bytes(KEPT)
    admin = mail.admin()
    with pytest.raises(MailsrvError) as refused:
        mail.server.domains.rename(admin, DOMAIN, DOMAIN, "elsewhere/a")
    assert refused.value.code == -70
    assert mail.server.domains.get(admin, DOMAIN).path == str(mail.data_dir / "domains" / DOMAIN)
    assert (mail.maildir(ALICE) / "cur" / "1.msg").read_bytes() == KEPT
    assert list((mail.data_dir / "elsewhere").iterdir()) == []
