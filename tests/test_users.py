"""Mailbox users through the engine (mailsrv.directory.users, user_options, user_groups,
mailbox_migrations, user_activity), judged by what a caller or the disk can see; plus a few round
trips through the live svcUserAdmin endpoint for the shapes only the wire shows."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from contract_clients import make_client
from mailsrv.core.actor import Actor, Role
from mailsrv.core.errors import MailsrvError
from mailsrv.server import MailServer
from mailsrv.store.models import Domain, TrafficDaily, User, UserLogin
from mailsrv.directory.user_activity import NEVER

IP = "192.0.2.10"
DOM = "example.com"
UTC = dt.timezone.utc


@dataclass(frozen=True)
class Env:
    server: MailServer
    root: Actor
    admin: Actor  # postmaster@example.com, the domain's primary administrator
    domain_dir: Path

    def add(self, name: str, password: str = "Good-pass-12", actor: Actor | None = None, domain: str = DOM,
            first: str = "", last: str = "", is_admin: bool = False, size_mb: int = 0) -> None:
        self.server.users.add(actor or self.root, name, password, domain, first, last, is_admin, size_mb)

    def maildir(self, name: str) -> Path:
        return self.domain_dir / "users" / name / "Maildir"


@pytest.fixture
def env(make_server: Callable[..., MailServer]) -> Env:
    server = make_server()
    server.admins.reset_primary("root", "Secret-pass-1")
    root = server.login("root", "Secret-pass-1", IP)
    server.domains.add(root, DOM, "", "postmaster", "Admin-pass-1", "", "", {})
    admin = server.login(f"postmaster@{DOM}", "Admin-pass-1", IP)
    return Env(server, root, admin, Path(server.domains.get(root, DOM).path))


def refusal(call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[int, str]:
    with pytest.raises(MailsrvError) as refused:
        call(*args, **kwargs)
    return int(refused.value.code), refused.value.message


def other_domain(env: Env) -> Actor:
    """The primary administrator of a second domain, other.example."""
    env.server.domains.add(env.root, "other.example", "", "boss", "Other-pass-12", "", "", {})
    return env.server.login("boss@other.example", "Other-pass-12", IP)


# --- accounts -------------------------------------------------------------------------------------

def test_add_creates_the_maildir_and_reads_back(env):
    env.add("Alice", first="Alice", last="Liddell")
    env.add("bob", is_admin=True, actor=env.admin)
    assert all((env.maildir("alice") / part).is_dir() for part in ("cur", "new", "tmp"))
    alice = env.server.users.get(env.root, f"ALICE@{DOM.upper()}")
    assert (alice.name, alice.first_name, alice.last_name, alice.is_domain_admin) == (
        "alice", "Alice", "Liddell", False)
    assert [(u.name, u.is_domain_admin) for u in env.server.users.list(env.admin, DOM)] == [
        ("alice", False), ("bob", True), ("postmaster", True)]
    assert env.server.login(f"alice@{DOM}", "Good-pass-12", IP).user == "alice"


@pytest.mark.parametrize("name", ["", "has space", "x" * 65, "slash/name", ".leadingdot", "two..dots"])
def test_bad_user_names(env, name):
    code, message = refusal(env.add, name)
    assert code == -11 and "user name" in message
    assert [p.name for p in (env.domain_dir / "users").iterdir()] == ["postmaster"]


@pytest.mark.parametrize("password, fragment", [("short", "at least 8"), ("carol-Long-1", "user name"),
                                                (" padded-pass ", "spaces"), ("x" * 129, "at most 128")])
def test_password_rules(env, password, fragment):
    code, message = refusal(env.add, "carol", password)
    assert code == -21 and fragment in message


def test_refused_adds(env):
    env.add("alice")
    assert refusal(env.add, "alice") == (-41, f"The user alice@{DOM} already exists.")
    env.server.aliases.add(env.root, DOM, "sales", [f"alice@{DOM}"])
    assert refusal(env.add, "sales") == (-45, f"sales@{DOM} is already an alias.")
    assert refusal(env.add, "dave", domain="nowhere.example") == (-30, "The domain nowhere.example does not exist.")
    assert refusal(env.add, "dave", domain="not a domain")[0] == -10
    assert refusal(env.add, "dave", size_mb=-1)[0] == -13
    assert refusal(env.add, "dave", first="x" * 129)[0] == -16
    assert refusal(env.add, "dave", last="tab\there")[0] == -16
    # A refused add leaves no directory behind.
    assert sorted(p.name for p in (env.domain_dir / "users").iterdir()) == ["alice", "postmaster"]


def test_user_limit(env):
    env.server.domains.update(env.root, DOM, {"maxusers": 2})
    env.add("alice")
    assert refusal(env.add, "bob") == (-50, f"The domain {DOM} has reached its user limit.")
    assert not (env.domain_dir / "users" / "bob").exists()
    env.server.domains.update(env.root, DOM, {"maxusers": 0})
    env.add("bob")


def test_rights(env):
    env.add("alice")
    boss = other_domain(env)
    plain = env.server.login(f"alice@{DOM}", "Good-pass-12", IP)
    address = f"postmaster@{DOM}"
    for actor in (boss, plain):
        assert refusal(env.add, "eve", actor=actor)[0] == -5
        assert refusal(env.server.users.get, actor, address)[0] == -5
        assert refusal(env.server.users.list, actor, DOM)[0] == -5
        assert refusal(env.server.users.delete, actor, "alice", DOM)[0] == -5
        assert refusal(env.server.user_options.set_forwarding, actor, address, False, "x@y.example")[0] == -5
        assert refusal(env.server.user_groups.list, actor, DOM)[0] == -5
    assert refusal(env.server.user_activity.inactive, plain, dt.datetime.now(UTC))[0] == -5
    message = refusal(env.server.users.update, boss, f"alice@{DOM}", "", "", "", False)[1]
    assert message == f"Permission denied: boss@other.example may not manage the domain {DOM}."
    # A domain administrator manages its own domain.
    env.server.users.update(env.admin, f"alice@{DOM}", "", "Alicia", "", False)
    assert env.server.users.get(env.admin, f"alice@{DOM}").first_name == "Alicia"


def test_delete_removes_user_directory_and_group_membership(env):
    env.add("alice")
    env.add("bob")
    (env.maildir("bob") / "new" / "1.msg").write_bytes(b"Subject: x\r\n\r\nbody\r\n")
    env.server.aliases.add(env.root, DOM, "team", [f"alice@{DOM}", f"bob@{DOM}"])
    group = env.server.user_groups.add(env.root, DOM, "Staff", ["alice", "bob"])
    env.server.users.delete(env.admin, "bob", DOM)
    assert not (env.domain_dir / "users" / "bob").exists()
    assert refusal(env.server.users.get, env.root, f"bob@{DOM}") == (-31, f"The user bob@{DOM} does not exist.")
    assert env.server.user_groups.get(env.root, DOM, group).members == ["alice"]
    assert env.server.aliases.get(env.root, DOM, "team").addresses == [f"alice@{DOM}", f"bob@{DOM}"]
    assert refusal(env.server.users.delete, env.root, "bob", DOM)[0] == -31
    assert not (env.server.disk.trash_dir.exists() and any(env.server.disk.trash_dir.iterdir()))


def test_primary_admin_is_protected(env):
    code, message = refusal(env.server.users.delete, env.root, f"postmaster@{DOM}", DOM)
    assert (code, message) == (-61, f"postmaster@{DOM} is the domain's primary administrator and cannot be deleted.")
    assert env.maildir("postmaster").is_dir()
    assert refusal(env.server.users.update, env.root, f"postmaster@{DOM}", "", "", "", False)[0] == -61
    assert env.server.users.get(env.root, f"postmaster@{DOM}").is_domain_admin is True


def test_delete_accepts_an_address_of_the_domain_only(env):
    env.add("alice")
    assert refusal(env.server.users.delete, env.root, "alice@other.example", DOM)[0] == -12
    env.server.users.delete(env.root, f"alice@{DOM}", DOM)
    assert not (env.domain_dir / "users" / "alice").exists()


def test_update_keeps_the_password_when_blank(env):
    """Control panels send every field of UpdateUser and a blank NewPassword for "unchanged"."""
    env.add("alice")
    env.server.users.update(env.admin, f"alice@{DOM}", "", "A", "L", True)
    assert env.server.login(f"alice@{DOM}", "Good-pass-12", IP).role is Role.DOMAIN_ADMIN
    env.server.users.update(env.admin, f"alice@{DOM}", "Changed-pass-1", "A", "L", False)
    assert refusal(env.server.login, f"alice@{DOM}", "Good-pass-12", IP)[0] == -1
    assert env.server.login(f"alice@{DOM}", "Changed-pass-1", IP).role is Role.USER
    assert refusal(env.server.users.update, env.admin, f"alice@{DOM}", "short", "", "", False)[0] == -21
    assert refusal(env.server.users.update, env.admin, f"ghost@{DOM}", "", "", "", False)[0] == -31
    assert refusal(env.server.users.update, env.admin, "not-an-address", "", "", "", False)[0] == -12


def test_locked_password(env):
    """lockpassword keeps a password from domain administrators; only a system admin changes it or the lock."""
    env.add("alice")
    address = f"alice@{DOM}"
    code, _ = refusal(env.server.users.set_requested_settings, env.admin, address, ["lockpassword=True"])
    assert code == -5
    env.server.users.set_requested_settings(env.root, address, ["PasswordLocked=True"])
    env.server.users.set_requested_settings(env.admin, address, ["lockpassword=True", "signature=Hi"])  # unchanged
    code, message = refusal(env.server.users.update, env.admin, address, "Changed-pass-1", "", "", False)
    assert code == -5 and "locked" in message
    env.server.users.update(env.admin, address, "", "Still", "Editable", False)  # names still may change
    env.server.users.update(env.root, address, "Changed-pass-1", "", "", False)
    assert env.server.login(address, "Changed-pass-1", IP).user == "alice"


def test_requested_settings(env):
    env.add("alice")
    address = f"alice@{DOM}"
    users = env.server.users
    assert users.requested_settings(env.admin, address, ["IsEnabled", "maxsize", "passwordlocked", "signature"]) == [
        "IsEnabled=True", "maxsize=0", "passwordlocked=False", "signature="]
    users.set_requested_settings(env.admin, address, ["maxsize=250", "replytoaddress=Alice@Example.COM",
                                                      "signature=Best regards"])
    assert users.requested_settings(env.admin, address, ["maxsize", "replytoaddress", "signature"]) == [
        "maxsize=250", f"replytoaddress=alice@{DOM}", "signature=Best regards"]
    assert refusal(users.requested_settings, env.admin, address, ["maxsize", "nosuchkey"]) == (
        -15, "Unknown setting 'nosuchkey'.")
    assert refusal(users.set_requested_settings, env.admin, address, ["maxsize=ten"])[0] == -15
    assert refusal(users.set_requested_settings, env.admin, address, ["replytoaddress=nobody"])[0] == -12
    users.set_requested_settings(env.admin, address, ["isenabled=False"])
    assert refusal(env.server.login, address, "Good-pass-12", IP)[0] == -1


# --- forwarding, auto-responder, ActiveSync ------------------------------------------------------

def test_forwarding(env):
    env.add("bob")
    address, options = f"bob@{DOM}", env.server.user_options
    options.set_forwarding(env.admin, address, True,
                           " One@Elsewhere.example; two@elsewhere.example,one@elsewhere.example ")
    forwarding = options.forwarding(env.admin, address)
    assert (forwarding.delete_on_forward, forwarding.addresses) == (
        True, ["one@elsewhere.example", "two@elsewhere.example"])
    code, message = refusal(options.set_forwarding, env.admin, address, False, "ok@elsewhere.example, broken")
    assert code == -12 and "broken" in message
    assert options.forwarding(env.admin, address).addresses == ["one@elsewhere.example", "two@elsewhere.example"]
    options.set_forwarding(env.admin, address, False, "  ")
    assert options.forwarding(env.admin, address).addresses == []


def test_auto_response(env):
    env.add("alice")
    address, options = f"alice@{DOM}", env.server.user_options
    assert options.auto_response(env.admin, address).enabled is False
    options.set_auto_response(env.admin, address, True, " Away ", "Back on Monday.\r\n\tAlice")
    auto = options.auto_response(env.admin, address)
    assert (auto.enabled, auto.subject, auto.body) == (True, "Away", "Back on Monday.\r\n\tAlice")
    code, message = refusal(options.set_auto_response, env.admin, address, True, "Hi\r\nBcc: x@y.example", "")
    assert (code, message) == (-16, "The auto-responder subject must not contain control characters.")


def test_activesync_flag_is_stored(env):
    env.add("alice")
    address, options = f"alice@{DOM}", env.server.user_options
    assert options.activesync_enabled(env.admin, address) is False
    options.set_activesync(env.admin, address, True)
    assert options.activesync_enabled(env.root, address) is True


# --- RSS feeds and groups -------------------------------------------------------------------------

def test_rss_feeds(env):
    env.add("alice")
    address, options = f"alice@{DOM}", env.server.user_options
    news = options.add_feed(env.admin, address, "https://news.example/rss", "News", "Feeds")
    blog = options.add_feed(env.admin, address, "http://blog.example/atom.xml", "", "")
    listed = options.feeds(env.admin, address)
    assert [(f.uid, f.name, f.url, f.folder) for f in listed.feeds] == [
        (blog, "http://blog.example/atom.xml", "http://blog.example/atom.xml", ""),
        (news, "News", "https://news.example/rss", "Feeds")]
    assert listed.folders == ["Feeds"]
    for url in ("ftp://news.example/rss", "javascript:alert(1)", "https://", "news.example/rss", "http://[::1"):
        assert refusal(options.add_feed, env.admin, address, url, "x", "")[0] == -16
    options.delete_feed(env.admin, address, news.upper())
    assert [f.uid for f in options.feeds(env.admin, address).feeds] == [blog]
    assert refusal(options.delete_feed, env.admin, address, news)[0] == -36
    assert refusal(options.delete_feed, env.admin, f"postmaster@{DOM}", blog)[0] == -36  # another user's feed


def test_user_groups(env):
    env.add("alice")
    env.add("bob")
    groups = env.server.user_groups
    staff = groups.add(env.admin, DOM, "Staff", ["alice", f"BOB@{DOM}", "alice", ""])
    admins = groups.add(env.admin, DOM, "Admins", ["postmaster"])
    group = groups.get(env.admin, DOM, staff)
    assert (group.id, group.name, group.members) == (staff, "Staff", ["alice", "bob"])
    assert [g.name for g in groups.list(env.admin, DOM)] == ["Admins", "Staff"]
    assert [g.id for g in groups.of_member(env.admin, DOM, "bob")] == [staff]
    assert refusal(groups.of_member, env.admin, DOM, "ghost")[0] == -31
    assert refusal(groups.add, env.admin, DOM, "staff", [])[0] == -45
    assert refusal(groups.add, env.admin, DOM, "Team", ["alice", "ghost"]) == (
        -31, f"No such user in {DOM}: ghost.")
    assert refusal(groups.add, env.admin, DOM, " ", [])[0] == -16
    groups.update(env.admin, DOM, staff, "Staff", ["postmaster"])  # same name is no clash
    groups.update(env.admin, DOM, staff, "Everyone", ["bob", "alice"])
    assert groups.get(env.admin, DOM, staff).members == ["bob", "alice"]
    assert refusal(groups.update, env.admin, DOM, staff, "Admins", [])[0] == -45
    groups.delete(env.admin, DOM, admins)
    assert refusal(groups.get, env.admin, DOM, admins)[0] == -35
    boss = other_domain(env)
    assert refusal(groups.get, boss, "other.example", staff)[0] == -35  # ids are per domain


# --- migrations -------------------------------------------------------------------------------------

def test_migration_queue(env):
    env.add("alice")
    migrations = env.server.mailbox_migrations
    job = migrations.queue(env.admin, [f"EmailAddress=Alice@{DOM}", "Server=imap.old.example",
                                       "Password=Old-secret"])
    assert (job.email_address, job.status) == (f"alice@{DOM}", "Queued")
    assert [(j.id, j.email_address, j.status) for j in migrations.list(env.root)] == [
        (job.id, f"alice@{DOM}", "Queued")]
    boss = other_domain(env)
    assert migrations.list(boss) == []
    assert refusal(migrations.remove, boss, job.id)[0] == -5
    plain = env.server.login(f"alice@{DOM}", "Good-pass-12", IP)
    assert refusal(migrations.list, plain)[0] == -5
    assert refusal(migrations.queue, env.admin, ["Server=imap.old.example"])[0] == -16
    assert refusal(migrations.queue, env.admin, ["no equals sign"])[0] == -15
    assert refusal(migrations.queue, env.admin, [f"emailaddress=ghost@{DOM}"])[0] == -31
    migrations.remove(env.admin, job.id.upper())
    assert migrations.list(env.root) == []
    assert refusal(migrations.remove, env.root, job.id)[0] == -36


# --- quotas, traffic, logins ------------------------------------------------------------------------

def test_quotas(env):
    env.server.domains.update(env.root, DOM, {"maxmailboxsize": 100})
    env.add("alice")
    env.add("bob", size_mb=20)
    (env.maildir("alice") / "new" / "1.msg").write_bytes(b"x" * 1234)
    env.server.users.update(env.admin, f"postmaster@{DOM}", "", "", "", True, 30)  # UpdateUser2
    env.server.users.update(env.admin, f"bob@{DOM}", "", "", "", False)  # UpdateUser keeps the size
    assert refusal(env.server.users.update, env.admin, f"bob@{DOM}", "", "", "", False, -5)[0] == -13
    quotas = {q.user: (q.max_bytes, q.used_bytes) for q in env.server.user_activity.quotas(env.admin, DOM)}
    assert quotas == {"alice": (100 * 1048576, 1234), "bob": (20 * 1048576, 0), "postmaster": (30 * 1048576, 0)}
    env.server.domains.update(env.root, DOM, {"maxmailboxsize": 0})
    assert env.server.user_activity.quotas(env.admin, DOM)[0].max_bytes == 0  # unlimited


def _traffic(env: Env, user: str, day: dt.date, received: int, sent: int) -> None:
    with env.server.store.session() as s:
        row = s.query(User.id, User.domain_id).join(Domain).filter(User.name == user, Domain.name == DOM).one()
        s.add(TrafficDaily(domain_id=row.domain_id, user_id=row.id, day=day, messages_received=received,
                           messages_sent=sent, bytes_received=received * 1000, bytes_sent=sent * 1000))


def test_user_stats(env):
    env.add("alice")
    for day, received, sent in ((dt.date(2026, 1, 1), 1, 10), (dt.date(2026, 1, 2), 2, 20),
                                (dt.date(2026, 1, 5), 4, 40)):
        _traffic(env, "alice", day, received, sent)
    _traffic(env, "postmaster", dt.date(2026, 1, 2), 100, 100)
    (env.maildir("alice") / "cur" / "1.msg").write_bytes(b"y" * 77)
    # Whole UTC days, both ends included: 2026-01-02T23:30-05:00 is the 3rd in UTC.
    stats = env.server.user_activity.traffic(env.admin, f"alice@{DOM}", dt.datetime(2026, 1, 1, 12, 0),
                                     dt.datetime(2026, 1, 2, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5))))
    assert (stats.messages_received, stats.messages_sent, stats.bytes_received, stats.bytes_sent, stats.bytes_size) == (
        3, 30, 3000, 30000, 77)
    assert env.server.user_activity.traffic(env.admin, f"alice@{DOM}", dt.datetime(2026, 2, 1), dt.datetime(2026, 2, 2)
                                    ).messages_received == 0
    assert refusal(env.server.user_activity.traffic, env.admin, f"alice@{DOM}", dt.datetime(2026, 2, 1),
                   dt.datetime(2026, 1, 1))[0] == -16


def _set_logins(env: Env, address: str, **at_by_protocol: dt.datetime) -> None:
    name, _, domain = address.partition("@")
    with env.server.store.session() as s:
        user_id = s.query(User.id).join(Domain).filter(User.name == name, Domain.name == domain).scalar()
        for protocol, at in at_by_protocol.items():
            s.merge(UserLogin(user_id=user_id, protocol=protocol, at=at))


def test_inactive_users(env):
    env.add("alice")
    env.add("bob")
    env.add("carol")
    boss = other_domain(env)
    _set_logins(env, f"alice@{DOM}", imap=dt.datetime(2026, 1, 1, tzinfo=UTC), pop=dt.datetime(2026, 3, 1, tzinfo=UTC))
    _set_logins(env, f"bob@{DOM}", webservice=dt.datetime(2026, 1, 15, 8, 30, tzinfo=UTC))
    _set_logins(env, f"postmaster@{DOM}", webservice=dt.datetime(2026, 6, 1, tzinfo=UTC))
    _set_logins(env, "boss@other.example", webservice=dt.datetime(2026, 6, 1, tzinfo=UTC))
    since = dt.datetime(2026, 2, 1, tzinfo=UTC)
    assert [(u.address, u.at) for u in env.server.user_activity.inactive(env.root, since)] == [
        (f"bob@{DOM}", dt.datetime(2026, 1, 15, 8, 30, tzinfo=UTC)), (f"carol@{DOM}", NEVER)]
    boss_inactive = env.server.user_activity.inactive(boss, dt.datetime(2027, 1, 1, tzinfo=UTC))
    assert boss_inactive[0].address == "boss@other.example"
    assert [u.address for u in env.server.user_activity.inactive(env.admin, dt.datetime(2027, 1, 1))] == [
        f"alice@{DOM}", f"bob@{DOM}", f"carol@{DOM}", f"postmaster@{DOM}"]


def test_last_login_times(env):
    env.add("alice")
    env.add("bob")
    _set_logins(env, f"alice@{DOM}", imap=dt.datetime(2026, 1, 1, 9, tzinfo=UTC),
                pop=dt.datetime(2026, 1, 3, 23, 59, tzinfo=UTC))
    _set_logins(env, f"bob@{DOM}", imap=dt.datetime(2026, 1, 2, 10, tzinfo=UTC))
    times = env.server.user_activity.login_times(env.admin, f"alice@{DOM}", None, None)
    assert times.by_protocol == [("imap", dt.datetime(2026, 1, 1, 9, tzinfo=UTC)),
                                 ("pop", dt.datetime(2026, 1, 3, 23, 59, tzinfo=UTC))]
    assert [(u.address, u.at) for u in times.by_user] == [(f"alice@{DOM}", dt.datetime(2026, 1, 3, 23, 59, tzinfo=UTC))]
    domain_wide = env.server.user_activity.login_times(env.admin, DOM, dt.datetime(2026, 1, 2), dt.datetime(2026, 1, 3))
    assert domain_wide.by_protocol == [("imap", dt.datetime(2026, 1, 2, 10, tzinfo=UTC)),
                                       ("pop", dt.datetime(2026, 1, 3, 23, 59, tzinfo=UTC))]
    assert [u.address for u in domain_wide.by_user] == [f"alice@{DOM}", f"bob@{DOM}"]
    assert refusal(env.server.user_activity.login_times, other_domain(env), DOM, None, None)[0] == -5
    assert refusal(env.server.user_activity.login_times, env.admin, f"ghost@{DOM}", None, None)[0] == -31


def test_authenticate(env):
    env.add("alice")
    users = env.server.users
    users.authenticate("Alice", DOM, "Good-pass-12", IP)
    users.authenticate(f"alice@{DOM}", "", "Good-pass-12", IP)
    assert refusal(users.authenticate, "alice", DOM, "wrong", IP)[0] == -1
    assert refusal(users.authenticate, "root", "", "Secret-pass-1", IP)[0] == -1  # not a mailbox login
    assert refusal(users.authenticate, "alice", "", "Good-pass-12", IP)[0] == -1
    # A success is a login that GetLastLoginTimes and GetInactiveUsers see.
    times = env.server.user_activity.login_times(env.root, f"alice@{DOM}", None, None)
    assert [p for p, _ in times.by_protocol] == ["webservice"]


def test_authenticate_counts_toward_the_brute_force_limit(env):
    env.add("alice")
    for _ in range(env.server.config.security.max_failures_per_login):
        refusal(env.server.users.authenticate, "alice", DOM, "guess", "198.51.100.7")
    assert refusal(env.server.users.authenticate, "alice", DOM, "Good-pass-12", "198.51.100.7")[0] == -3
    # Only that address is held back: the owner elsewhere still gets in.
    env.server.users.authenticate("alice", DOM, "Good-pass-12", "198.51.100.8")


# --- over the wire ----------------------------------------------------------------------------------

ROOT = {"AuthUserName": "root", "AuthPassword": "Secret-pass-1"}


@pytest.fixture
def wire(live_server) -> Iterator[Any]:
    server = live_server.server
    server.admins.reset_primary("root", "Secret-pass-1")
    root = server.login("root", "Secret-pass-1", IP)
    server.domains.add(root, DOM, "", "postmaster", "Admin-pass-1", "", "", {})
    server.users.add(root, "alice", "Good-pass-12", DOM, "Alice", "Liddell", False)
    yield make_client("soap11", live_server.url)


def test_wire_user_info_and_forwarding(wire):
    info = wire.call("svcUserAdmin", "GetUser", **ROOT, EmailAddress=f"alice@{DOM}")["UserInfo"]
    assert info == {"UserName": "alice", "Password": None, "FirstName": "Alice", "LastName": "Liddell",
                    "IsSystemAdmin": False, "IsDomainAdmin": False}
    wire.call("svcUserAdmin", "UpdateUserForwardingInfo2", **ROOT, EmailAddress=f"alice@{DOM}",
              DeleteOnForward=False, ForwardingAddress="a@x.example;b@x.example")
    assert wire.call("svcUserAdmin", "GetUserForwardingInfo", **ROOT,
                     EmailAddress=f"alice@{DOM}")["ForwardingAddress"] == "a@x.example, b@x.example"
    assert wire.call("svcUserAdmin", "GetUserForwardingInfo2", **ROOT,
                     EmailAddress=f"alice@{DOM}")["ForwardingAddresses"] == ["a@x.example", "b@x.example"]
    login = wire.call("svcUserAdmin", "LoginValidated", Username=f"alice@{DOM}", Password="Good-pass-12")
    assert login == {"LoginValidated": True, "ResultCode": 0, "Message": None}


def test_wire_never_logged_in_and_login_times(wire):
    inactive = wire.call("svcUserAdmin", "GetInactiveUsers", **ROOT, date=dt.datetime(2030, 1, 1, tzinfo=UTC))
    assert inactive["EmailAddress"] == [f"alice@{DOM}", f"postmaster@{DOM}"]
    assert inactive["LastLogin"] == [dt.datetime(1, 1, 1), dt.datetime(1, 1, 1)]
    assert wire.call("svcUserAdmin", "AuthenticateUser", UserName="alice", DomainName=DOM,
                     Password="Good-pass-12")["Result"] is True
    times = wire.call("svcUserAdmin", "GetLastLoginTimes", **ROOT, EmailAddress=f"alice@{DOM}",
                      DateStart=None, DateEnd=None)
    assert [entry.split("=")[0] for entry in times["lastLogins"]] == ["webservice"]
    assert [entry["UserName"] for entry in times["lastUserLogins"]] == [f"alice@{DOM}"]


def test_wire_migration_queue(wire):
    queued = wire.call("svcUserAdmin", "QueueMailBoxMigration", **ROOT,
                       parameters=[f"EmailAddress=alice@{DOM}", "Server=imap.old.example"])
    pairs = dict(item.split("=", 1) for item in queued["KeyValuePairs"])
    assert pairs["status"] == "Queued"
    status = wire.call("svcUserAdmin", "GetMigrationStatus", **ROOT)
    assert status == [{"ID": pairs["id"], "emailAddress": f"alice@{DOM}", "status": "Queued"}]
    assert wire.call("svcUserAdmin", "RemoveFromMigrationQueue", **ROOT, itemID=pairs["id"]) is None
    assert wire.call("svcUserAdmin", "GetMigrationStatus", **ROOT) in (None, [])
