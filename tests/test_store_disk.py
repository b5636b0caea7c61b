"""Store and disk never disagree: every domain directory change follows a committed change, and a
refused or failed change leaves both as they were."""
from __future__ import annotations


import pytest

from mailsrv.core.errors import MailsrvError


@pytest.fixture
def engine(make_server):
    server = make_server()
    server.admins.reset_primary("root", "Gr8-secret-pw")
    actor = server.login("root", "Gr8-secret-pw", "127.0.0.1")
    server.domains.add(actor, "one.example", "", "postmaster", "Domain-pass-1", "", "", {})
    return server, actor, server.config.data_dir


def code_of(call, *args) -> int:
    with pytest.raises(MailsrvError) as refused:
        call(*args)
    return refused.value.code


def test_custom_path_inside_the_data_directory(engine):
    server, actor, data = engine
    server.domains.add(actor, "two.example", "custom/two", "postmaster", "Domain-pass-1", "", "", {})
    assert server.domains.get(actor, "two.example").path == str(data / "custom" / "two")
    assert (data / "custom" / "two" / "users" / "postmaster" / "Maildir" / "cur").is_dir()


def test_refused_add_leaves_no_directory(engine):
    server, actor, data = engine
    assert code_of(server.domains.add, actor, "two.example", "", "postmaster", "short", "", "", {}) == -21
    assert code_of(server.domains.add, actor, "one.example", "", "postmaster", "Domain-pass-1", "", "", {}) == -40
    assert sorted(p.name for p in (data / "domains").iterdir()) == ["one.example"]


def test_rename_moves_the_directory_and_keeps_mail(engine):
    server, actor, data = engine
    message = data / "domains" / "one.example" / "users" / "postmaster" / "Maildir" / "new" / "1.msg"
    message.write_bytes(b"Subject: kept\r\n\r\nbody\r\n")
    server.domains.rename(actor, "one.example", "renamed.example")
    moved = data / "domains" / "renamed.example" / "users" / "postmaster" / "Maildir" / "new" / "1.msg"
    assert moved.read_bytes() == b"Subject: kept\r\n\r\nbody\r\n"
    assert not (data / "domains" / "one.example").exists()
    assert server.domains.get(actor, "renamed.example").path == str(data / "domains" / "renamed.example")


def test_rename_onto_an_existing_domain_touches_nothing(engine):
    server, actor, data = engine
    server.domains.add(actor, "two.example", "", "postmaster", "Domain-pass-1", "", "", {})
    assert code_of(server.domains.rename, actor, "one.example", "two.example") == -40
    assert sorted(p.name for p in (data / "domains").iterdir()) == ["one.example", "two.example"]


def test_update_name_and_path_to_a_non_empty_directory_is_refused(engine):
    server, actor, data = engine
    occupied = data / "occupied"
    occupied.mkdir()
    (occupied / "file").write_text("x")
    assert code_of(server.domains.rename, actor, "one.example", "new.example", "occupied") == -14
    assert (data / "domains" / "one.example" / "users").is_dir()
    server.domains.rename(actor, "one.example", "new.example", "elsewhere/new")
    assert (data / "elsewhere" / "new" / "users" / "postmaster" / "Maildir").is_dir()
    assert server.domains.get(actor, "new.example").path == str(data / "elsewhere" / "new")


def test_delete_with_and_without_files(engine):
    server, actor, data = engine
    server.domains.add(actor, "two.example", "", "postmaster", "Domain-pass-1", "", "", {})
    server.domains.delete(actor, "one.example", False)
    assert (data / "domains" / "one.example" / "users").is_dir()
    server.domains.delete(actor, "two.example", True)
    assert not (data / "domains" / "two.example").exists()
    assert not any((data / "trash").iterdir())
    assert server.domains.names(actor) == []


def test_filesystem_refusal_is_a_result_not_a_fault(engine):
    server, actor, data = engine
    # A file where the directory's parent should be (permission bits would not stop root).
    (data / "blocked").write_text("not a directory")
    assert code_of(server.domains.add, actor, "two.example", "blocked/two", "postmaster", "Domain-pass-1",
                   "", "", {}) == -70
    assert server.domains.names(actor) == ["one.example"]
