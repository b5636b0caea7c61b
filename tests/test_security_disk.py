"""Security #8, store and disk of provisioning: a domain directory never overlaps a server directory
or another domain, a crash never leaves store and disk disagreeing, a lost race or a full disk
removes or breaks nothing of anyone else's — all judged over SOAP, SMTP and the bytes on disk."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from contract_clients import make_client
from mailsrv.config import parse_config
from mailsrv.errors import MailsrvError
from mailsrv.server import MailServer

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
