"""svcGlobalUpdate: domain settings propagated to every domain by a background job, seen over SMTP;
bad input changes nothing; one job at a time; a job killed mid-way resumes; two nodes share it."""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from contract_clients import HttpClient, make_client, ok
from serve_support import Serving, listen_table
from smtp_support import ADMIN as SYSTEM_ADMIN
from smtp_support import DOMAIN
from sqlalchemy import func, insert, select, update
from web_support import web  # noqa: F401  (the fixture: SMTP, SOAP and a loopback DNS server)

from mailsrv.core import settings
from mailsrv.directory.jobs import BATCH_COMMITTED
from mailsrv.mailstore.disk import FAULT_POINT_VARIABLE
from mailsrv.store.models import DirectoryGeneration, Domain, Job, Node

ADMIN = {"AuthUserName": SYSTEM_ADMIN[0], "AuthPassword": SYSTEM_ADMIN[1]}
DOMAIN_ADMIN = {"AuthUserName": f"postmaster@{DOMAIN}", "AuthPassword": "Domain-pass-1"}
REPOSITORY = Path(__file__).resolve().parents[1]


def status(c, auth: dict = ADMIN) -> dict[str, str]:
    pairs = ok(c.call("svcGlobalUpdate", "GetGlobalUpdateStatus", **auth))["KeyValuePairs"]
    return dict(pair.split("=", 1) for pair in pairs)


def update_all(c, *assignments: str, auth: dict = ADMIN) -> dict:
    return c.call("svcGlobalUpdate", "UpdateAllDomainSettings", **auth, newSettings=list(assignments))


def domain_setting(server, name: str, key: str):
    return server.domains.get(server.login(*SYSTEM_ADMIN, "127.0.0.1"), name).settings[key]


def add_domains(server, count: int, prefix: str = "bulk") -> None:
    """`count` domains straight into the store in one statement (AddDomain makes directories and
    an administrator each: far slower, and beside the point here)."""
    values = settings.defaults(settings.DOMAIN)
    with server.store.session() as s:
        s.execute(insert(Domain), [{"name": f"{prefix}{i}.test", "path": f"/nonexistent/{prefix}{i}.test",
                                    "primary_admin": "postmaster", "settings": values} for i in range(count)])


def generation(server) -> int:
    with server.store.reading() as s:
        return s.execute(select(DirectoryGeneration.generation)).scalar_one()


@pytest.fixture
def c(web):
    return HttpClient(web.url, "GET")


def test_fields_list_the_propagatable_domain_keys_with_their_types(web, c):
    fields = ok(c.call("svcGlobalUpdate", "ListGlobalUpdateFields", **ADMIN))["KeyValuePairs"]
    assert "requiresmtpauthentication=bool" in fields and "maxmessagesize=int" in fields
    assert "enablecatchalls=string" in fields and "listcommandaddress=string" in fields
    assert not any(f.startswith("catchall=") for f in fields)  # it names an alias of its own domain
    assert status(c) == {"id": "", "state": "Idle", "done": "0", "total": "0", "started": "", "finished": "",
                         "fields": "", "error": ""}


def test_propagation_applies_to_every_domain_and_smtp_sees_it_at_once(web, c):
    mail = web.mail
    admin = mail.admin()
    for name in ("b.test", "c.test"):
        mail.server.domains.add(admin, name, "", "postmaster", "Domain-pass-1", "", "",
                                {"requiresmtpauthentication": False})
    mail.server.aliases.add(admin, "b.test", "catcher", [f"bob@{DOMAIN}"])
    mail.server.aliases.set_catch_all(admin, "b.test", "catcher")
    with mail.client() as smtp:  # the opposite values, live over SMTP (and now in the lookup cache)
        smtp.ehlo()
        assert smtp.mail("someone@b.test")[0] == 250
        assert smtp.rcpt("anything@b.test")[0] == 250

    answer = ok(update_all(c, "RequireSmtpAuthentication=True", "enablecatchalls=Disabled"))
    job_id = answer["Message"]
    assert len(job_id) == 32
    before = status(c)
    assert before["id"] == job_id and before["state"] == "Running" and before["done"] == "0"
    assert before["total"] == "3" and before["fields"] == "requiresmtpauthentication,enablecatchalls"

    assert mail.server.jobs.run_until_idle("test-node") >= 1
    after = status(c)
    assert after["state"] == "Finished" and after["done"] == after["total"] == "3" and after["error"] == ""
    assert after["started"].endswith("Z") and after["finished"].endswith("Z")
    with mail.client() as smtp:
        smtp.ehlo()
        assert smtp.mail("someone@b.test") == (530, b"5.7.0 Authentication required to send as someone@b.test")
        smtp.rset()
        assert smtp.mail("<>")[0] == 250
        assert smtp.rcpt("anything@b.test")[0] == 550
    for name in (DOMAIN, "b.test", "c.test"):
        assert domain_setting(mail.server, name, "requiresmtpauthentication") is True
        assert domain_setting(mail.server, name, "enablecatchalls") == "Disabled"
    # Other settings are untouched; the catch-all alias itself stays, only disabled.
    assert domain_setting(mail.server, "b.test", "catchall") == "catcher"
    assert domain_setting(mail.server, "b.test", "maxrecipients") == 200
    # A domain added after the job started keeps the defaults: propagation is not the defaults.
    mail.server.domains.add(admin, "d.test", "", "postmaster", "Domain-pass-1", "", "", {})
    assert domain_setting(mail.server, "d.test", "enablecatchalls") == "Enabled"


@pytest.mark.parametrize("assignments, code", [
    (["nosuchkey=1"], -15), (["requiresmtpauthentication=maybe"], -15), (["maxmessagesize=-4"], -15),
    (["smtpport=70000"], -13), (["serverip=not-an-ip"], -16), (["catchall=catcher"], -15),
    (["requiresmtpauthentication=False", "bogus"], -15), ([], -16),
])
def test_bad_input_is_refused_and_nothing_changes(web, c, assignments, code):
    result = update_all(c, *assignments)
    assert result["Result"] is False and result["ResultCode"] == code, result
    assert result["Message"]
    assert status(c)["state"] == "Idle"
    assert web.mail.server.jobs.run_until_idle("test-node") == 0
    assert domain_setting(web.mail.server, DOMAIN, "requiresmtpauthentication") is True


def test_only_system_administrators_may_propagate(web, c):
    for auth in (DOMAIN_ADMIN, {"AuthUserName": f"alice@{DOMAIN}", "AuthPassword": "User-pass-123"}):
        for operation, params in (("UpdateAllDomainSettings", {"newSettings": ["maxrecipients=1"]}),
                                  ("ListGlobalUpdateFields", {}), ("GetGlobalUpdateStatus", {})):
            result = c.call("svcGlobalUpdate", operation, **auth, **params)
            assert result["Result"] is False and result["ResultCode"] == -5, (operation, result)
    assert c.call("svcGlobalUpdate", "GetGlobalUpdateStatus", AuthUserName="nobody",
                  AuthPassword="x")["ResultCode"] == -1
    assert domain_setting(web.mail.server, DOMAIN, "maxrecipients") == 200


def test_a_second_update_is_refused_while_one_runs(web, c):
    first = ok(update_all(c, "maxrecipients=50"))["Message"]
    second = update_all(c, "maxrecipients=60")
    assert second["Result"] is False and second["ResultCode"] == -95 and "already running" in second["Message"]
    assert status(c)["id"] == first
    web.mail.server.jobs.run_until_idle("test-node")
    assert domain_setting(web.mail.server, DOMAIN, "maxrecipients") == 50
    third = ok(update_all(c, "maxrecipients=70"))["Message"]
    assert third != first and status(c)["id"] == third and status(c)["state"] == "Running"
    web.mail.server.jobs.run_until_idle("test-node")
    assert domain_setting(web.mail.server, DOMAIN, "maxrecipients") == 70


def _config(tmp_path: Path, lease_seconds: int, batch: int) -> str:
    database_url = os.environ.get("MAILSRV_TEST_DATABASE_URL", "")
    return (f'data_dir = "{(tmp_path / "data").resolve()}"\ndatabase_url = "{database_url}"\n'
            f'[jobs]\nlease_seconds = {lease_seconds}\nbatch_size = {batch}\n')


def _bumps_per_batch(server, domains: int, batches: int) -> int:
    """What the directory generation rises by when each domain is updated once: PostgreSQL's
    triggers fire per statement (one per batch), SQLite's per row."""
    return domains if server.store.is_sqlite else batches


def test_a_job_killed_after_a_batch_resumes_where_it_stopped(make_server, tmp_path, env):
    count, batch = 2_500, 1_000
    server = make_server(f'[jobs]\nlease_seconds = 1\nbatch_size = {batch}\n')
    add_domains(server, count)
    job_id = server.global_update.start(_system(server), ["maxrecipients=42"])
    start_generation = generation(server)
    # Another process works on it and is killed (SIGKILL) right after its first batch's commit.
    config = tmp_path / "child.toml"
    config.write_text(_config(tmp_path, 1, batch))
    child = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom mailsrv.core.config import load_config\n"
         "from mailsrv.server import MailServer\n"
         "MailServer(load_config(sys.argv[1]), recover=False).jobs.run_until_idle('child-node')", str(config)],
        env={**env, FAULT_POINT_VARIABLE: BATCH_COMMITTED, "PYTHONPATH": str(REPOSITORY)},
        cwd=REPOSITORY, capture_output=True, timeout=120)
    assert child.returncode == -9, child.stderr.decode()[-2000:]
    with server.store.reading() as s:
        job = s.get(Job, job_id)
        assert (job.state, job.done, job.total, job.claimed_by) == ("Running", batch, count, "child-node")
        assert s.execute(select(func.count()).where(Domain.settings["maxrecipients"].as_integer() == 42)
                         ).scalar_one() == batch
    # The job is the dead child's until its lease runs out; then this node takes it over.
    assert server.jobs.claim("this-node") is None
    time.sleep(1.2)
    server.jobs.run_until_idle("this-node")
    with server.store.reading() as s:
        job = s.get(Job, job_id)
        assert (job.state, job.done, job.total, job.active_kind) == ("Finished", count, count, None)
        values = s.execute(select(Domain.settings)).scalars().all()
    assert len(values) == count and all(v["maxrecipients"] == 42 and v["maxsize"] == 0 for v in values)
    # Each domain was updated exactly once: a batch done again would have raised it further.
    assert generation(server) - start_generation == _bumps_per_batch(server, count, 3)


def _system(server):
    server.admins.reset_primary(*SYSTEM_ADMIN)
    return server.login(*SYSTEM_ADMIN, "127.0.0.1")


def test_two_nodes_one_job_one_worker_and_a_takeover_after_the_lease(make_server):
    first = make_server("[jobs]\nlease_seconds = 1\nbatch_size = 100\n")
    second = make_server("[jobs]\nlease_seconds = 1\nbatch_size = 100\n")
    add_domains(first, 350)
    job_id = first.global_update.start(_system(first), ["maxaliases=7"])
    start_generation = generation(first)
    job = first.jobs.claim("node-a")
    assert job is not None and second.jobs.claim("node-b") is None  # held: only one works on it
    job = first.jobs.step(job, "node-a")
    assert job is not None and job.cursor > 0
    assert second.jobs.claim("node-b") is None  # each batch renews the lease
    time.sleep(1.2)  # node-a stalls past its lease: node-b takes over after the last committed batch
    taken = second.jobs.claim("node-b")
    assert taken is not None and taken.id == job_id and taken.cursor == job.cursor
    assert first.jobs.step(job, "node-a") is None  # node-a's next batch is not recorded: no longer its job
    assert not first.jobs.renew(job, "node-a")
    while taken is not None:
        taken = second.jobs.step(taken, "node-b")
    assert first.jobs.run_until_idle("node-a") == 0
    with first.store.reading() as s:
        finished = s.get(Job, job_id)
        assert (finished.state, finished.done, finished.total) == ("Finished", 350, 350)
        assert all(v["maxaliases"] == 7 for v in s.execute(select(Domain.settings)).scalars())
    assert generation(first) - start_generation == _bumps_per_batch(first, 350, 4)


def test_the_runner_loop_of_a_node_finishes_a_job(make_server):
    """What `mailsrv serve` runs in every worker: the loop claims, works and polls on."""
    server = make_server("[jobs]\npoll_seconds = 1\nbatch_size = 10\n")
    add_domains(server, 25)
    job_id = server.global_update.start(_system(server), ["maxlists=3"])

    async def run_until_finished() -> None:
        stop = asyncio.Event()
        runner = asyncio.create_task(server.job_runner.run(stop))
        for _ in range(200):
            if server.jobs.latest("propagation").state == "Finished":
                break
            await asyncio.sleep(0.05)
        stop.set()
        await runner

    asyncio.run(run_until_finished())
    job = server.jobs.latest("propagation")
    assert (job.id, job.state, job.done) == (job_id, "Finished", 25)


def test_mailsrv_serve_workers_run_the_job_started_over_soap(make_server, tmp_path, env):
    """The wiring: every worker of `mailsrv serve` runs the job loop; the job started through one
    worker's SOAP finishes, worked on by one of them, with each domain done once."""
    server = make_server()
    _system(server)
    add_domains(server, 55)
    start_generation = generation(server)
    config = tmp_path / "serve.toml"
    config.write_text(_config(tmp_path, 60, 10) + 'poll_seconds = 1\n[server]\nworkers = 2\n'
                      f'{listen_table()}')
    with Serving(config, env) as serving:
        c = HttpClient(serving.base_url(), "GET")
        job_id = ok(update_all(c, "maxusers=9"))["Message"]
        deadline = time.monotonic() + 60
        while (state := status(c))["state"] == "Running" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert state == {**state, "id": job_id, "state": "Finished", "done": "55", "total": "55"}
        assert serving.stop() == 0
    with server.store.reading() as s:
        assert all(v["maxusers"] == 9 for v in s.execute(select(Domain.settings)).scalars())
    assert generation(server) - start_generation == _bumps_per_batch(server, 55, 6)


def test_a_node_the_heartbeats_find_dead_leaves_its_job_at_once(make_server):
    first, second = make_server("[jobs]\nbatch_size = 100\n"), make_server("[jobs]\nbatch_size = 100\n")
    add_domains(first, 250)
    job_id = first.global_update.start(_system(first), ["maxlists=4"])
    first.heartbeat.beat()
    dead = first.heartbeat.node
    job = first.jobs.step(first.jobs.claim(dead), dead)
    assert job is not None and second.jobs.claim(second.heartbeat.node) is None  # a 60 s lease
    with first.store.session() as s:  # its heartbeats stop: the last one is now past the timeout
        s.execute(update(Node).where(Node.id == dead).values(beat_at=func.now() - dt.timedelta(minutes=5)))
    assert second.heartbeat.beat()[0] == [dead]
    taken = second.jobs.claim(second.heartbeat.node)
    assert taken is not None and taken.id == job_id and taken.cursor == job.cursor
    assert first.jobs.step(job, dead) is None  # nothing recorded for it any more
    while taken is not None:
        taken = second.jobs.step(taken, second.heartbeat.node)
    finished = first.jobs.latest("propagation")
    assert (finished.state, finished.done, finished.total) == ("Finished", 250, 250)


@pytest.mark.parametrize("kind", ["soap11", "soap12", "post"])
def test_every_binding_starts_and_reports_a_propagation(web, kind):
    client = make_client(kind, web.url)
    fields = ok(client.call("svcGlobalUpdate", "ListGlobalUpdateFields", **ADMIN))["KeyValuePairs"]
    assert "maxaliases=int" in fields
    job_id = ok(client.call("svcGlobalUpdate", "UpdateAllDomainSettings", **ADMIN,
                            newSettings=["maxaliases=12", "showspammenu=False"]))["Message"]
    web.mail.server.jobs.run_until_idle("test-node")
    pairs = ok(client.call("svcGlobalUpdate", "GetGlobalUpdateStatus", **ADMIN))["KeyValuePairs"]
    assert f"id={job_id}" in pairs and "state=Finished" in pairs and "fields=maxaliases,showspammenu" in pairs
    assert domain_setting(web.mail.server, DOMAIN, "showspammenu") is False
