"""/metrics, /healthz and /readyz of a real `mailsrv serve` with two worker processes: the counters
move by exactly the traffic a test makes whichever worker answers the scrape, /metrics is refused to
addresses outside loopback and `[metrics] allow`, and /readyz fails, naming the store, once the
database is gone."""
from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy
from contract_clients import refused
from prometheus_client.parser import text_string_to_metric_families
from serve_support import wait_until
from servers_support import LabServer, ServerLab, server_lab

from mailsrv.core.errors import ResultCode

Sample = tuple[str, frozenset[tuple[str, str]]]
DEAD_MX = "127.0.0.40"  # nothing listens there: mail for dead.test waits in the spool


@pytest.fixture
def lab(tmp_path, env) -> Iterator[ServerLab]:
    yield from server_lab(tmp_path, env)


def two_workers(lab: ServerLab, extra: str = "", web: str | None = None) -> LabServer:
    server = lab.add("mx", start=False)
    text = server.config.read_text().replace("workers = 1", "workers = 2")
    if web is not None:
        text = text.replace(f'web = "{server.address}:0"', f'web = "{web}"')
    server.config.write_text(text + extra)
    server.start()
    return server


def scrape(base_url: str) -> dict[Sample, float]:
    """Every sample of one scrape, on a connection of its own (any worker may take it)."""
    answer = httpx.get(f"{base_url}/metrics", headers={"Connection": "close"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(answer.text) for sample in family.samples}


def value(samples: dict[Sample, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def message(number: int) -> bytes:
    return f"From: alice@a.test\r\nTo: bob@a.test\r\nSubject: counted {number}\r\n\r\nbody {number}\r\n".encode()


def test_the_counters_move_by_exactly_the_traffic_whichever_worker_answers(lab):
    server = two_workers(lab)
    server.add_domain("a.test")
    server.add_user("alice@a.test")
    server.add_user("bob@a.test")
    lab.dns.add({("dead.test", "MX"): ["10 mx.dead.test."], ("mx.dead.test", "A"): [DEAD_MX]})
    before = scrape(server.base_url)

    sizes = [len(message(number)) for number in range(3)]
    for number in range(3):  # to a local mailbox: delivered at acceptance
        server.send("alice@a.test", ["bob@a.test"], message(number))
    remote = message(9)
    server.send("alice@a.test", ["carol@dead.test"], remote)  # spooled, then deferred
    wait_until(lambda: [status for address, _, status, _ in server.spool_rows() if address == "carol@dead.test"]
               == ["deferred"], "the remote recipient deferred")
    code, _ = refused(server.soap.call("svcUserAdmin", "GetUser", AuthUserName="sysadmin",
                                       AuthPassword="Wrong-pass-1", EmailAddress="bob@a.test"))
    assert code == ResultCode.LOGIN_FAILED

    # Several scrapes, each on a new connection: the same figures from either worker.
    scrapes = [scrape(server.base_url) for _ in range(6)]
    # (The spool's age grows between two scrapes.)
    stable = [{key: v for key, v in s.items() if key[0] != "mailsrv_spool_oldest_age_seconds"} for s in scrapes]
    assert all(s == stable[0] for s in stable), "scrapes disagree"
    after = scrapes[0]

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("mailsrv_messages_received_total", path="direct") == 3
    assert delta("mailsrv_received_bytes_total", path="direct") == sum(sizes)
    assert delta("mailsrv_messages_received_total", path="spool") == 1
    assert delta("mailsrv_received_bytes_total", path="spool") == len(remote)
    assert delta("mailsrv_deliveries_total", kind="local", outcome="sent") == 3
    assert delta("mailsrv_delivered_bytes_total", kind="local") == sum(sizes)
    assert delta("mailsrv_deliveries_total", kind="remote", outcome="deferred") == 1
    assert delta("mailsrv_deliveries_total", kind="remote", outcome="sent") == 0
    assert delta("mailsrv_sessions_total", protocol="smtp") == 4
    assert value(after, "mailsrv_sessions_open", protocol="smtp") == 0
    assert delta("mailsrv_auth_failures_total", protocol="soap") == 1
    assert delta("mailsrv_auth_failures_total", protocol="smtp") == 0
    assert value(after, "mailsrv_spool_messages") == 1
    assert value(after, "mailsrv_spool_oldest_age_seconds") > 0
    assert delta("mailsrv_soap_calls_total", service="svcUserAdmin", operation="GetUser",
                 code=str(int(ResultCode.LOGIN_FAILED))) == 1
    assert delta("mailsrv_soap_call_seconds_count", service="svcUserAdmin", operation="GetUser") == 1
    assert value(after, "mailsrv_soap_call_seconds_bucket", service="svcUserAdmin", operation="GetUser",
                 le="+Inf") == value(after, "mailsrv_soap_call_seconds_count", service="svcUserAdmin",
                                     operation="GetUser")


def _outside_address() -> str | None:
    """This machine's address on its first non-loopback interface (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.254", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


@pytest.mark.parametrize("allowed", [False, True])
def test_metrics_are_only_for_loopback_and_the_allowed_networks(lab, allowed):
    address = _outside_address()
    if address is None:
        pytest.skip("no non-loopback IPv4 address on this machine")
    extra = f'[metrics]\nallow = ["{address}/32"]\n' if allowed else ""
    server = two_workers(lab, extra, web=f"{address}:0")
    # From the machine's own outside address: not loopback.
    transport = httpx.HTTPTransport(local_address=address)
    with httpx.Client(transport=transport) as client:
        answer = client.get(f"{server.base_url}/metrics")
        assert answer.status_code == (200 if allowed else 403)
        assert ("mailsrv_spool_messages" in answer.text) is allowed
        assert client.get(f"{server.base_url}/healthz").text == "ok\n"


def test_readyz_fails_naming_the_store_once_the_database_is_gone(lab):
    server = two_workers(lab)
    assert httpx.get(f"{server.base_url}/healthz").status_code == 200
    ready = httpx.get(f"{server.base_url}/readyz")
    assert (ready.status_code, ready.text) == (200, "ok\n")
    if server.database_url:  # PostgreSQL: the database dropped under the running server
        admin = sqlalchemy.create_engine(sqlalchemy.make_url(server.database_url).set(database="postgres"),
                                         isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            name = sqlalchemy.make_url(server.database_url).database
            conn.execute(sqlalchemy.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()
    else:  # SQLite: its file removed (the server's open connections do not notice)
        for suffix in ("", "-wal", "-shm"):
            path = server.data_dir / f"mailsrv.db{suffix}"
            if path.exists():
                os.unlink(path)
    for _ in range(4):  # whichever worker answers
        answer = httpx.get(f"{server.base_url}/readyz", headers={"Connection": "close"})
        assert answer.status_code == 503
        assert answer.text.startswith("store: unreachable"), answer.text
    assert httpx.get(f"{server.base_url}/healthz").status_code == 200
