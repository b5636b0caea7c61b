"""Spool control: svcSpoolAdmin over SOAP and `mailsrv spool …` on the command line, judged by what
the peer receives, what the sender's mailbox gets (no DSN) and what the spool lists."""
from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Iterator

import pytest
from contract_clients import ZeepClient
from serve_support import MAILSRV
from smtp_peer import Peer, remote_config
from smtp_support import ADMIN, MailHarness, make_harness, send, soap  # noqa: F401  (fixtures)

from mailsrv.mta.spool import Delivered, Failed

MSG = b"From: Alice <alice@a.test>\r\nTo: friend@peer.test\r\nSubject: hi\r\n\r\nHello\r\n"
AUTH = {"AuthUserName": ADMIN[0], "AuthPassword": ADMIN[1]}


@pytest.fixture
def mail(tmp_path, port) -> Iterator[MailHarness]:
    yield from make_harness(tmp_path, remote_config(port))


def spool_admin(client: ZeepClient, operation: str, **params):  # type: ignore[no-untyped-def]
    return client.call("svcSpoolAdmin", operation, **{**AUTH, **params})


def from_alice(mail: MailHarness, recipients: list[str]) -> str:
    mail.dns.add({("peer.test", "MX"): ["10 mx1.peer.test."], ("mx1.peer.test", "A"): ["127.0.0.1"]})
    with mail.authenticated("alice@a.test") as smtp:
        return send(smtp, "alice@a.test", recipients, MSG)


def on_the_wire(instant: dt.datetime) -> dt.datetime:
    """A UTC instant as a dateTime comes back from the wire: whole seconds, no zone."""
    return instant.astimezone(dt.timezone.utc).replace(microsecond=0, tzinfo=None)


def listed(client: ZeepClient, max_results: int = 100) -> list[dict]:
    result = spool_admin(client, "GetSpoolMessages", maxResults=max_results)
    assert (result["Result"], result["ResultCode"]) == (True, 0), result
    return result["Messages"] or []


def test_get_spool_messages_lists_open_recipients_attempts_and_errors_oldest_first(mail, soap):
    mail.server.system_settings.update({"retryminutes": "5,30"})
    first = from_alice(mail, ["friend@peer.test", "other@peer.test"])
    mail.clock.advance(dt.timedelta(seconds=10))
    second = from_alice(mail, ["third@peer.test"])
    assert mail.deliver() == 2  # nobody listens on the peer's port: both deferred
    entries = listed(soap)
    assert [e["ID"] for e in entries] == [first, second]
    entry = entries[0]
    assert (entry["Sender"], entry["Recipients"], entry["SizeBytes"], entry["Attempts"], entry["Held"]) == \
        ("alice@a.test", ["friend@peer.test", "other@peer.test"], len(MSG), 1, False)
    assert entry["NextAttempt"] == on_the_wire(mail.clock.now() + dt.timedelta(minutes=5))
    assert entry["LastError"].startswith("4.4.1 ")
    assert [e["ID"] for e in listed(soap, 1)] == [first]
    for bad in (0, 10_001):
        refused = spool_admin(soap, "GetSpoolMessages", maxResults=bad)
        assert (refused["Result"], refused["ResultCode"]) == (False, -13)


def test_a_held_message_is_not_delivered_until_released(mail, soap, port):
    held = from_alice(mail, ["friend@peer.test"])
    from_alice(mail, ["other@peer.test"])
    peer = Peer("127.0.0.1", port)
    try:
        assert spool_admin(soap, "HoldSpoolMessages", messageIDs=[held])["Result"] is True
        assert mail.deliver() == 1  # only the other one
        assert [a.recipients for a in peer.arrivals] == [["other@peer.test"]]
        assert [(e["ID"], e["Held"]) for e in listed(soap)] == [(held, True)]
        mail.clock.advance(dt.timedelta(days=30))  # held mail never expires: it is not attempted
        assert mail.deliver() == 0
        assert spool_admin(soap, "ReleaseSpoolMessages", messageIDs=[held])["Result"] is True
        assert mail.deliver() == 1
        assert [a.recipients for a in peer.arrivals] == [["other@peer.test"], ["friend@peer.test"]]
    finally:
        peer.stop()
    assert listed(soap) == [] and mail.messages("alice@a.test") == []


@pytest.mark.parametrize("ids", ["all", "listed"])
def test_reset_retry_counts_delivers_a_deferred_message_at_once(mail, soap, port, ids):
    mail.server.system_settings.update({"retryminutes": "60"})
    spool_id = from_alice(mail, ["friend@peer.test"])
    assert mail.deliver() == 1  # deferred: the peer is down
    peer = Peer("127.0.0.1", port)
    try:
        assert mail.deliver() == 0  # not due for an hour
        result = spool_admin(soap, "ResetRetryCounts", messageIDs=[] if ids == "all" else [spool_id])
        assert result["Result"] is True
        assert [(e["Attempts"], e["NextAttempt"]) for e in listed(soap)] == [(0, on_the_wire(mail.clock.now()))]
        assert mail.deliver() == 1  # the clock has not moved
        assert [a.recipients for a in peer.arrivals] == [["friend@peer.test"]]
    finally:
        peer.stop()
    assert listed(soap) == []


def test_a_deleted_message_is_gone_without_a_dsn(mail, soap, port):
    spool_id = from_alice(mail, ["friend@peer.test"])
    kept = from_alice(mail, ["other@peer.test"])
    mail.deliver()
    assert spool_admin(soap, "DeleteSpoolMessages", messageIDs=[spool_id])["Result"] is True
    assert not (mail.data_dir / "spool" / spool_id).exists()
    assert [e["ID"] for e in listed(soap)] == [kept]
    peer = Peer("127.0.0.1", port)
    try:
        mail.server.system_settings.update({"retryminutes": "1"})
        spool_admin(soap, "ResetRetryCounts", messageIDs=[])
        mail.deliver()
        assert [a.recipients for a in peer.arrivals] == [["other@peer.test"]]
    finally:
        peer.stop()
    assert mail.messages("alice@a.test") == []  # no DSN


@pytest.mark.parametrize("outcome", [Delivered(), Failed("5.1.1 no such user")])
def test_a_delivery_in_flight_records_nothing_after_a_delete_and_keeps_its_file(mail, soap, outcome):
    spool_id = from_alice(mail, ["friend@peer.test"])
    spool = mail.server.spool
    [job] = spool.claim("node-a", 10, dt.timedelta(minutes=2))
    assert spool_admin(soap, "DeleteSpoolMessages", messageIDs=[spool_id])["Result"] is True
    assert job.message.path.exists()  # the delivery under way still reads it
    spool.finish("node-a", [(job, [outcome])], lambda attempts: None)
    assert mail.spool_rows() == [] and mail.messages("alice@a.test") == []  # no DSN for the failure
    assert spool.sweep(dt.timedelta(0)) == 1 and not job.message.path.exists()


@pytest.mark.parametrize("operation", ["ResetRetryCounts", "HoldSpoolMessages", "ReleaseSpoolMessages",
                                       "DeleteSpoolMessages"])
def test_unknown_ids_are_named_and_nothing_changes(mail, soap, operation):
    mail.server.system_settings.update({"retryminutes": "60"})
    spool_id = from_alice(mail, ["friend@peer.test"])
    mail.deliver()
    before = listed(soap)
    result = spool_admin(soap, operation, messageIDs=[spool_id, "0123456789abcdef", "nope"])
    assert (result["Result"], result["ResultCode"]) == (False, -36)
    assert "0123456789abcdef" in result["Message"] and "nope" in result["Message"]
    assert spool_id not in result["Message"]
    assert listed(soap) == before
    if operation != "ResetRetryCounts":  # an empty list there means every message
        empty = spool_admin(soap, operation, messageIDs=[])
        assert (empty["Result"], empty["ResultCode"]) == (False, -16)


@pytest.mark.parametrize("login", [("postmaster@a.test", "Domain-pass-1"), ("alice@a.test", "User-pass-123"),
                                   (ADMIN[0], "wrong-password")])
def test_only_system_admins_control_the_spool(mail, soap, login):
    spool_id = from_alice(mail, ["friend@peer.test"])
    credentials = {"AuthUserName": login[0], "AuthPassword": login[1]}
    expected = -1 if login[1] == "wrong-password" else -5
    for operation, params in [("GetSpoolMessages", {"maxResults": 10}), ("ResetRetryCounts", {"messageIDs": []}),
                              ("HoldSpoolMessages", {"messageIDs": [spool_id]}),
                              ("ReleaseSpoolMessages", {"messageIDs": [spool_id]}),
                              ("DeleteSpoolMessages", {"messageIDs": [spool_id]})]:
        result = soap.call("svcSpoolAdmin", operation, **credentials, **params)
        assert (result["Result"], result["ResultCode"]) == (False, expected), operation
    assert [(e["ID"], e["Held"]) for e in listed(soap)] == [(spool_id, False)]


def test_the_command_line_lists_holds_releases_resets_and_deletes(mail, tmp_path, env, port):
    config = tmp_path / "mailsrv.toml"
    config.write_text(mail.config_text)
    mail.server.system_settings.update({"retryminutes": "60"})

    def spool(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([MAILSRV, "spool", *args, "--config", str(config)], env=env, capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)

    assert spool("list").stdout == "Mail queue is empty\n"
    first = from_alice(mail, ["friend@peer.test"])
    mail.clock.advance(dt.timedelta(seconds=1))
    second = from_alice(mail, ["other@peer.test"])
    mail.deliver()  # both deferred for an hour

    held = spool("hold", first)
    assert (held.returncode, held.stdout) == (0, "1 messages held.\n")
    listing = spool("list").stdout.splitlines()
    assert listing[0].startswith(f"{first}! ") and listing[0].endswith(" alice@a.test")
    assert listing[1].startswith("    (4.4.1 ") and listing[2] == "    friend@peer.test"
    assert listing[3].startswith(f"{second}  ") and listing[-1] == "-- 2 messages"

    unknown = spool("release", first, "nope")
    assert unknown.returncode == 1 and unknown.stderr.endswith("\nmailsrv: Not in the spool: nope.\n")
    assert spool("release", first).returncode == 0
    assert spool("delete", second).stdout == "1 messages deleted.\n"
    assert spool("reset-retries").stdout == "1 recipients are due now.\n"
    assert spool("list").stdout.startswith(f"{first}  {len(MSG):>9}   0 ")
    peer = Peer("127.0.0.1", port)
    try:
        # The command ran on the real clock: "now" for it is ahead of the harness's manual one.
        mail.clock.advance(dt.datetime.now(dt.timezone.utc) - mail.clock.now())
        assert mail.deliver() == 1
        assert [a.recipients for a in peer.arrivals] == [["friend@peer.test"]]
    finally:
        peer.stop()
    assert spool("list").stdout == "Mail queue is empty\n" and mail.messages("alice@a.test") == []
