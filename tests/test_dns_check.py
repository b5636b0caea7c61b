"""The DNS check (issue 14): the engine, `mailsrv dns check` and GET /admin/api/dns/<domain>, against
a real DNS server on loopback that the test fills with the records the check tells it to create."""
from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import dns.rcode
import dns.reversename
import httpx
import pytest

from conftest import web_listener
from dns_server import DnsServer, parse_zone_line
from mailsrv.core.actor import Actor
from mailsrv.mta.dns_check import DnsReport, RecordCheck
from mailsrv.server import MailServer
from serve_support import MAILSRV

DOMAIN, OTHER = "dns.example", "other.example"
HOST, PUBLIC = "mx.host.example", "192.0.2.25"
ROOT, ROOT_PW = "root", "Gr8-secret-pw"
ADMIN_PW = "Domain-pass-1"


def settings(dns_server: DnsServer, security: str = "") -> str:
    return (f'[dns]\nnameservers = ["{dns_server.address}"]\npublic_addresses = ["{PUBLIC}"]\n'
            f'[smtp]\nhostname = "{HOST}"\n{security}')


def provision(server: MailServer) -> Actor:
    server.admins.reset_primary(ROOT, ROOT_PW)
    root = server.login(ROOT, ROOT_PW, "127.0.0.1")
    for domain in (DOMAIN, OTHER):
        server.domains.add(root, domain, "", "postmaster", ADMIN_PW, "", "", {})
    server.users.add(root, "carol", "Wonder-land-1", DOMAIN, "", "", False)
    server.dkim_keys.generate(root, DOMAIN, 2048, "mail2026")
    return root


def publish(dns_server: DnsServer, checks: list[RecordCheck] | list[dict]) -> None:
    """Create in DNS exactly the records the report says to create."""
    for check in checks:
        dns_server.add_zone_lines(check["expected"] if isinstance(check, dict) else check.expected)


def marks(report: DnsReport) -> dict[str, str]:
    return {check.kind: check.status for check in report.checks}


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    # The server's host name resolves back to its public address, as a forward-confirmed PTR needs.
    server = DnsServer({(HOST, "A"): [PUBLIC]})
    yield server
    server.close()


@pytest.fixture
def engine(make_server, dns_server) -> tuple[MailServer, Actor]:
    server = make_server(settings(dns_server))
    return server, provision(server)


def test_missing_records_pass_once_the_records_it_names_are_created(engine, dns_server):
    server, root = engine
    before = server.dns_check.check(root, DOMAIN)
    assert marks(before) == {"MX": "missing", "A": "missing", "PTR": "missing", "SPF": "missing",
                             "DKIM": "missing", "DMARC": "missing"}
    assert not before.passed
    expected = {check.kind: check.expected for check in before.checks}
    assert expected["MX"] == [f"{DOMAIN}. IN MX 10 mail.{DOMAIN}."]
    assert expected["A"] == [f"mail.{DOMAIN}. IN A {PUBLIC}"]
    assert expected["PTR"] == [f"25.2.0.192.in-addr.arpa. IN PTR {HOST}."]
    assert expected["SPF"] == [f'{DOMAIN}. IN TXT "v=spf1 mx ip4:{PUBLIC} ~all"']
    assert expected["DMARC"] == [f'_dmarc.{DOMAIN}. IN TXT "v=DMARC1; p=quarantine; rua=mailto:postmaster@{DOMAIN}"']
    key = server.dkim_keys.get(root, DOMAIN).public_key
    dkim_name, _, dkim_value = parse_zone_line(expected["DKIM"][0])
    assert dkim_name == f"mail2026._domainkey.{DOMAIN}."
    assert dkim_value.replace('" "', "").strip('"') == f"v=DKIM1; k=rsa; p={key}"  # 2048 bits: split in strings

    publish(dns_server, before.checks)
    after = server.dns_check.check(root, DOMAIN)
    assert marks(after) == dict.fromkeys(marks(before), "pass"), after
    assert after.passed
    found = {check.kind: check.found for check in after.checks}
    assert found["MX"] == expected["MX"] and found["SPF"] == expected["SPF"]
    assert found["DKIM"] == expected["DKIM"]


@pytest.mark.parametrize("public, outbound, server_ip, sending, web", [
    ([PUBLIC], "", "", [PUBLIC], [PUBLIC]),
    ([PUBLIC], "192.0.2.30,2001:db8::30", "", ["192.0.2.30", "2001:db8::30"], ["192.0.2.30", "2001:db8::30"]),
    ([PUBLIC], "", "192.0.2.80", [PUBLIC], ["192.0.2.80"]),
    ([], "", "", [PUBLIC], [PUBLIC]),  # nothing configured: what the host name resolves to
], ids=["public_addresses", "outboundips", "domain ServerIP", "host name"])
def test_which_addresses_are_this_server(make_server, dns_server, public, outbound, server_ip, sending, web):
    text = settings(dns_server).replace(f'public_addresses = ["{PUBLIC}"]', f"public_addresses = {public}")
    server = make_server(text.replace("'", '"'))
    root = provision(server)
    server.system_settings.update({"outboundips": outbound})
    if server_ip:
        server.domains.update(root, DOMAIN, {"serverip": server_ip})
    report = server.dns_check.check(root, DOMAIN)
    assert [c.name for c in report.checks if c.kind == "PTR"] == [
        dns.reversename.from_address(a).to_text().rstrip(".") for a in sending]
    checks = {check.kind: check for check in report.checks}
    spf = " ".join(f"ip{6 if ':' in a else 4}:{a}" for a in sending)
    assert checks["SPF"].expected == [f'{DOMAIN}. IN TXT "v=spf1 mx {spf} ~all"']
    assert checks["A"].expected == [f"mail.{DOMAIN}. IN {'AAAA' if ':' in a else 'A'} {a}" for a in web]


def test_a_wrong_spf_record_and_a_foreign_mx_fail(engine, dns_server):
    server, root = engine
    publish(dns_server, server.dns_check.check(root, DOMAIN).checks)
    dns_server.add({(DOMAIN, "TXT"): ['"v=spf1 ip4:198.51.100.7 -all"'],
                    (DOMAIN, "MX"): ["10 mx.elsewhere.example."], ("mx.elsewhere.example", "A"): ["198.51.100.7"],
                    (f"mail.{DOMAIN}", "A"): ["198.51.100.8"]})
    report = server.dns_check.check(root, DOMAIN)
    checks = {check.kind: check for check in report.checks}
    assert checks["SPF"].status == "fail"
    assert checks["SPF"].detail == f"The SPF record does not authorise {PUBLIC} (fail)."
    assert checks["SPF"].found == [f'{DOMAIN}. IN TXT "v=spf1 ip4:198.51.100.7 -all"']
    assert checks["MX"].status == "fail" and "mx.elsewhere.example" in checks["MX"].detail
    assert checks["A"].status == "fail" and checks["A"].found == [f"mail.{DOMAIN}. IN A 198.51.100.8"]
    assert (checks["PTR"].status, checks["DKIM"].status, checks["DMARC"].status) == ("pass", "pass", "pass")


def test_a_dns_that_does_not_answer_is_an_error_not_a_crash(engine, dns_server):
    server, root = engine
    publish(dns_server, server.dns_check.check(root, DOMAIN).checks)
    dns_server.silent.update({DOMAIN, f"_dmarc.{DOMAIN}"})
    report = server.dns_check.check(root, DOMAIN, timeout=0.5)
    checks = {check.kind: check for check in report.checks}
    for kind in ("MX", "SPF", "DMARC"):
        assert checks[kind].status == "error"
        assert checks[kind].detail == "DNS did not answer within 0.5 s."
    assert (checks["A"].status, checks["PTR"].status, checks["DKIM"].status) == ("pass", "pass", "pass")
    assert not report.passed


def test_servfail_is_an_error(make_server):
    failing = DnsServer({}, unknown=dns.rcode.SERVFAIL)
    try:
        server = make_server(settings(failing))
        report = server.dns_check.check(provision(server), DOMAIN, timeout=2)
    finally:
        failing.close()
    assert set(marks(report).values()) == {"error"}
    assert all(check.detail.startswith("DNS failed: ") for check in report.checks)


def test_domain_admins_check_their_own_domain_only(engine):
    server, _ = engine
    admin = server.login(f"postmaster@{OTHER}", ADMIN_PW, "127.0.0.1")
    assert server.dns_check.check(admin, OTHER).domain == OTHER
    with pytest.raises(Exception) as refused:
        server.dns_check.check(admin, DOMAIN)
    assert refused.value.code == -5


# --- mailsrv dns check -----------------------------------------------------------------------------

def test_the_command_prints_json_and_exits_1_until_every_record_passes(engine, dns_server, tmp_path, env):
    server, root = engine
    url = server.config.database_url
    config = tmp_path / "mailsrv.toml"
    config.write_text(f'data_dir = "{server.config.data_dir}"\ndatabase_url = "{url}"\n{settings(dns_server)}')

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([MAILSRV, "dns", "check", *args, "--config", str(config)], env=env,
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)

    first = run(DOMAIN, "--json")
    assert first.returncode == 1, first.stderr
    database = url or f"sqlite:///{server.config.data_dir / 'mailsrv.db'}"
    assert f"mailsrv: config {config}; data directory {server.config.data_dir}; database {database}" in first.stderr
    report = json.loads(first.stdout)
    assert report["domain"] == DOMAIN and report["passed"] is False
    assert report["counts"] == {"pass": 0, "fail": 0, "missing": 6, "error": 0}
    assert [c["kind"] for c in report["checks"]] == ["MX", "A", "PTR", "SPF", "DKIM", "DMARC"]

    publish(dns_server, report["checks"])
    second = run(DOMAIN, "--json")
    assert second.returncode == 0, second.stdout
    assert json.loads(second.stdout)["counts"] == {"pass": 6, "fail": 0, "missing": 0, "error": 0}

    text = run(DOMAIN)
    assert text.returncode == 0
    assert text.stdout.splitlines()[0] == f"MX     pass     Mail pointer (MX): mail.{DOMAIN} receives the domain's mail."
    assert text.stdout.splitlines()[-1] == f"-- {DOMAIN}: 6 of 6 records pass"

    unknown = run("unknown.example")
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert "mailsrv: " in unknown.stderr and "unknown.example" in unknown.stderr


# --- GET /admin/api/dns/<domain> ---------------------------------------------------------------------

@pytest.fixture
def api(make_server, dns_server) -> Iterator[tuple[str, MailServer]]:
    server = make_server(settings(dns_server, "[security]\nmax_failures_per_login = 3\n"))
    provision(server)
    with web_listener(server) as base_url:
        yield base_url, server


def get(base_url: str, domain: str, auth: tuple[str, str] | None = None) -> httpx.Response:
    return httpx.get(f"{base_url}/admin/api/dns/{domain}", auth=auth, timeout=30)


def test_api_answers_the_report_to_system_and_domain_admins(api, dns_server):
    base_url, server = api
    answer = get(base_url, DOMAIN, (ROOT, ROOT_PW))
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["domain"] == DOMAIN and body["counts"]["missing"] == 6
    publish(dns_server, body["checks"])
    as_admin = get(base_url, DOMAIN, (f"postmaster@{DOMAIN}", ADMIN_PW))
    assert as_admin.status_code == 200 and as_admin.json()["passed"] is True


@pytest.mark.parametrize("auth, status, code", [
    (None, 401, -1),
    ((ROOT, "wrong-password"), 401, -1),
    ((f"postmaster@{OTHER}", ADMIN_PW), 403, -5),   # another domain's administrator
    ((f"carol@{DOMAIN}", "Wonder-land-1"), 403, -5),  # a mailbox user administers nothing
], ids=["no login", "wrong password", "other domain's admin", "mailbox user"])
def test_api_refusals(api, auth, status, code):
    base_url, _ = api
    answer = get(base_url, DOMAIN, auth)
    assert answer.status_code == status
    assert answer.json()["code"] == code
    assert ("www-authenticate" in answer.headers) == (status == 401)
    if status == 401:
        assert answer.headers["www-authenticate"].startswith('Basic realm="mailsrv administration"')


def test_api_unknown_domain_is_404_and_a_malformed_name_400(api):
    base_url, _ = api
    unknown = get(base_url, "unknown.example", (ROOT, ROOT_PW))
    assert (unknown.status_code, unknown.json()["code"]) == (404, -30)
    assert get(base_url, "not..a.name", (ROOT, ROOT_PW)).status_code == 400


def test_api_failures_count_toward_the_same_limit_as_soap(api):
    base_url, _ = api
    for _ in range(3):
        assert get(base_url, DOMAIN, (ROOT, "wrong-password")).status_code == 401
    held = get(base_url, DOMAIN, (ROOT, ROOT_PW))
    assert (held.status_code, held.json()["code"]) == (429, -3)
    soap = httpx.get(f"{base_url}/Services/svcServerAdmin.asmx/ListSystemAdmins",
                     params={"authUsername": ROOT, "authPassword": ROOT_PW}, timeout=10)
    assert "<ResultCode>-3</ResultCode>" in soap.text


def test_the_domain_pages_dns_tab_marks_records_missing_then_passing(api, dns_server):
    base_url, _ = api
    with httpx.Client(base_url=base_url, timeout=30) as client:
        signed_in = client.post("/admin/login", data={"email": ROOT, "password": ROOT_PW})
        assert (signed_in.status_code, signed_in.headers["location"]) == (303, "/admin/")
        before = client.get(f"/admin/domains/{DOMAIN}?tab=dns")
        assert before.status_code == 200
        assert "0 of 6 pass" in before.text and before.text.count('class="dns-missing"') == 6
        publish(dns_server, get(base_url, DOMAIN, (ROOT, ROOT_PW)).json()["checks"])
        after = client.get(f"/admin/domains/{DOMAIN}?tab=dns")
        assert "6 of 6 pass" in after.text and 'class="dns-missing"' not in after.text
