"""Status, services, greeting names and listening ports of svcServerAdmin (issue 11, items 2 and 4),
against real `mailsrv serve` processes: what a client sees on the sockets after each SOAP call."""
from __future__ import annotations

import imaplib
import os
import re
import smtplib
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from contract_clients import HttpClient, ok, refused
from serve_support import Serving, listen_table, wait_until
from smtp_peer import free_port

from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.core.sessions import OpenSessions
from mailsrv.directory.listeners import (
    IMAP,
    POP,
    SMTP,
    SSL,
    STARTTLS,
    Description,
    Greetings,
    Listener,
    _overlap,
    service_names,
)

ADMIN = {"AuthUserName": "root", "AuthPassword": "Gr8-secret-pw"}
NEW_ADMIN = {"authUsername": "root", "authPassword": "Gr8-secret-pw"}  # the newer operations' spelling
DOM = "a.test"
DOMAIN_ADMIN = {"AuthUserName": f"postmaster@{DOM}", "AuthPassword": "Domain-pass-1"}
SVC = "svcServerAdmin"


def answers(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on host:port and greets (refused: False)."""
    try:
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.settimeout(5)
            return sock.recv(512) != b""
    except OSError:
        return False


def unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def answers_tls(port: int, host: str) -> bool:
    try:
        with socket.create_connection((host, port), timeout=5) as raw, \
                unverified().wrap_socket(raw, server_hostname=host) as sock:
            return sock.recv(512).startswith(b"220 ")
    except OSError:
        return False


def greeting(port: int, host: str = "127.0.0.1") -> str:
    with socket.create_connection((host, port), timeout=5) as sock:
        return sock.recv(512).decode()


@pytest.fixture
def setup(make_server):
    """The store with a system admin and a domain (its admin is postmaster@a.test), closed again: the
    served processes below open it themselves."""
    server = make_server()
    server.admins.reset_primary("root", "Gr8-secret-pw")
    admin = server.login("root", "Gr8-secret-pw", "127.0.0.1")
    server.domains.add(admin, DOM, "", "postmaster", "Domain-pass-1", "", "", {})
    return server


@contextmanager
def serving(setup, tmp_path: Path, env: dict[str, str], name: str = "node", workers: int = 1,
            **ports: int) -> Iterator[tuple[Serving, HttpClient]]:
    """`mailsrv serve` on the fixture's store, with the [listen] mail ports given (others off)."""
    config = setup.config
    listen = "".join(f'{key} = "127.0.0.1:{port}"\n' for key, port in ports.items())
    path = tmp_path / f"{name}.toml"
    path.write_text(f'data_dir = "{config.data_dir}"\ndatabase_url = "{os.environ.get("MAILSRV_TEST_DATABASE_URL", "")}"\n'
                    f'[server]\nworkers = {workers}\n'
                    '[delivery]\nheartbeat_seconds = 1\nnode_timeout_seconds = 3\n'
                    '[dns]\nnameservers = ["127.0.0.1"]\n'
                    '[smtp]\nhostname = "mx.test"\nrelay_networks = ["127.0.0.0/8"]\n'
                    f'{listen_table("127.0.0.1:0", listen)}')
    with Serving(path, env) as server:
        client = HttpClient(server.base_url(), "POST")
        yield server, client
        assert server.stop() == 0


def status(client: HttpClient, *keys: str) -> dict[str, str]:
    pairs = ok(client.call(SVC, "RequestStatus", **ADMIN, reqStats=list(keys)))["KeyValuePairs"]
    return dict(pair.split("=", 1) for pair in pairs)


# -- status ---------------------------------------------------------------------------------------

def test_request_status_counts_open_sessions_and_the_spool(setup, tmp_path, env):
    smtp_port, imap_port = free_port(), free_port()
    with serving(setup, tmp_path, env, smtp=smtp_port, imap=imap_port) as (server, client):
        server.wait_for(re.compile(rf"IMAP listener on 127\.0\.0\.1:{imap_port}"))
        asked = ["Version", "uptimeseconds", "SPOOLCOUNT", "smtpstatus", "submissionstatus", "popstatus",
                 "imapstatus", "smtpsessions", "popsessions", "imapsessions", "websessions", "blockedaddresses",
                 "domains", "users", "messagesreceivedtoday", "messagessenttoday", "spoololdestminutes"]
        before = ok(client.call(SVC, "RequestStatus", **ADMIN, reqStats=asked))["KeyValuePairs"]
        assert [pair.split("=", 1)[0] for pair in before] == asked  # in the order and case asked
        values = dict(pair.split("=", 1) for pair in before)
        assert values["SPOOLCOUNT"] == "0" and values["smtpstatus"] == values["imapstatus"] == "Running"
        assert (values["domains"], values["users"], values["blockedaddresses"]) == ("1", "1", "0")
        assert int(values["uptimeseconds"]) >= 0 and values["Version"]

        # A message for a domain nobody can resolve waits in the spool; an SMTP and an IMAP
        # session stay open.
        smtp = smtplib.SMTP("127.0.0.1", smtp_port, local_hostname="client.test", timeout=10)
        imap = imaplib.IMAP4("127.0.0.1", imap_port, timeout=10)
        try:
            smtp.starttls(context=unverified())  # still one session (aiosmtpd starts it over after TLS)
            smtp.sendmail("sender@client.test", ["someone@nowhere.invalid"], b"Subject: hi\r\n\r\nwaiting\r\n")
            wait_until(lambda: status(client, "smtpsessions", "imapsessions") == {"smtpsessions": "1",
                                                                                  "imapsessions": "1"},
                       "both sessions counted (published with the heartbeat)")
            now = status(client, "spoolcount", "spoololdestminutes", "messagesreceivedtoday", "popsessions")
            assert now == {"spoolcount": "1", "spoololdestminutes": "0", "messagesreceivedtoday": "0",
                           "popsessions": "0"}
        finally:
            smtp.quit()
            imap.logout()
        wait_until(lambda: status(client, "smtpsessions", "imapsessions") == {"smtpsessions": "0",
                                                                              "imapsessions": "0"},
                   "the closed sessions no longer counted")

        code, message = refused(client.call(SVC, "RequestStatus", **ADMIN, reqStats=["domains", "cpuload"]))
        assert code == ResultCode.INVALID_SETTING and "'cpuload'" in message


# -- services ---------------------------------------------------------------------------------------

def test_a_stopped_service_refuses_connections_on_every_worker_and_after_a_restart(setup, tmp_path, env):
    smtp_port, pop_port = free_port(), free_port()
    ports = {"smtp": smtp_port, "pop3": pop_port}
    with serving(setup, tmp_path, env, workers=2, **ports) as (server, client):
        server.wait_for(re.compile(rf"SMTP listener on 127\.0\.0\.1:{smtp_port}"))
        assert answers(smtp_port) and answers(pop_port)

        # Bad names change nothing.
        code, message = refused(client.call(SVC, "StopServices", **ADMIN, ServicesToStop=["smtp", "FTP", "dns"]))
        assert code == ResultCode.UNKNOWN_SERVICE and "'FTP'" in message and "'dns'" in message
        code, _ = refused(client.call(SVC, "StopServices", **ADMIN, ServicesToStop=["SMTP", "Web"]))
        assert code == ResultCode.SERVICE_NOT_STOPPABLE
        assert status(client, "smtpstatus")["smtpstatus"] == "Running"
        assert all(answers(smtp_port) for _ in range(10))  # every worker still serves it

        ok(client.call(SVC, "StopServices", **ADMIN, ServicesToStop=["smtp"]))
        wait_until(lambda: all(not answers(smtp_port) for _ in range(10)), "SMTP refused by every worker")
        assert greeting(pop_port).startswith("+OK")
        assert status(client, "smtpstatus", "popstatus") == {"smtpstatus": "Stopped", "popstatus": "Running"}

    with serving(setup, tmp_path, env, **ports) as (server, client):  # restarted: still stopped
        server.wait_for(re.compile(rf"POP3 listener on 127\.0\.0\.1:{pop_port}"))
        assert not answers(smtp_port) and answers(pop_port)
        ok(client.call(SVC, "StartServices", **ADMIN, ServicesToStart=["Smtp"]))
        wait_until(lambda: answers(smtp_port), "SMTP answering again")
        assert greeting(smtp_port).startswith("220 mx.test")


@pytest.mark.skipif(not os.environ.get("MAILSRV_TEST_DATABASE_URL"), reason="two nodes share a PostgreSQL database")
def test_two_nodes_on_one_database_both_stop_and_start(setup, tmp_path, env):
    first, second = free_port(), free_port()
    with serving(setup, tmp_path, env, "one", smtp=first) as (one, client), \
            serving(setup, tmp_path, env, "two", smtp=second) as (two, _):
        one.wait_for(re.compile(rf"SMTP listener on 127\.0\.0\.1:{first}"))
        two.wait_for(re.compile(rf"SMTP listener on 127\.0\.0\.1:{second}"))
        ok(client.call(SVC, "StopServices", **ADMIN, ServicesToStop=["SMTP"]))
        wait_until(lambda: not answers(first) and not answers(second), "SMTP stopped on both nodes")
        ok(client.call(SVC, "StartServices", **ADMIN, ServicesToStart=["SMTP"]))
        wait_until(lambda: answers(first) and answers(second), "SMTP started on both nodes")


# -- ports and host names -----------------------------------------------------------------------------

def add_port(client: HttpClient, protocol: str, port: int, encryption: str = "None", name: str = "",
             certificate: str = "") -> str:
    return ok(client.call(SVC, "AddServerPort", **NEW_ADMIN, protocol=protocol, certificatePath=certificate,
                          encryption=encryption, name=name, port=port, description="test"))["NewID"]


def test_ports_from_the_store_bind_and_close_without_a_restart(setup, tmp_path, env):
    bootstrap, store_port, taken_port = free_port(), free_port(), free_port()
    with serving(setup, tmp_path, env, workers=2, smtp=bootstrap) as (server, client), \
            socket.create_server(("127.0.0.1", taken_port)) as taken:
        server.wait_for(re.compile(rf"SMTP listener on 127\.0\.0\.1:{bootstrap}"))
        new = add_port(client, "smtp", store_port, name="alt smtp")
        assert answers(bootstrap) and not answers(store_port)  # a port listens only once assigned
        assert ok(client.call(SVC, "AssignPortToIP", **NEW_ADMIN, portID=new, ipAddress="127.0.0.1"))["Message"] == ""
        wait_until(lambda: answers(store_port), "the assigned port answering")
        assert greeting(store_port).startswith("220 mx.test")
        # Once the store describes listeners, [listen]'s mail addresses are no longer bound.
        wait_until(lambda: not answers(bootstrap), "the bootstrap SMTP port closed")

        # A port some other program holds: reported at once and by ListServerPorts; the rest serves.
        busy = add_port(client, "POP", taken_port, encryption="starttls", name="busy pop")
        message = ok(client.call(SVC, "AssignPortToIP", **NEW_ADMIN, portID=busy, ipAddress="127.0.0.1"))["Message"]
        assert f"127.0.0.1:{taken_port}" in message and "in use" in message
        server.wait_for(re.compile(rf"cannot listen on 127\.0\.0\.1:{taken_port} \(POP3\): Address already in use"))

        def reported() -> bool:
            return f"127.0.0.1:{taken_port} (POP3)" in client.call(SVC, "ListServerPorts", **NEW_ADMIN)["Message"]
        wait_until(reported, "the busy port reported in ListServerPorts")
        assert answers(store_port)
        listed = ok(client.call(SVC, "ListServerPorts", **NEW_ADMIN))["Ports"]
        assert [(p["ID"], p["Protocol"], p["Encryption"], p["Port"], p["Name"]) for p in listed] == sorted(
            [(new, "SMTP", "None", store_port, "alt smtp"), (busy, "POP", "STARTTLS", taken_port, "busy pop")],
            key=lambda p: p[3])
        on_ip = ok(client.call(SVC, "ListPortsAssignedToIP", **NEW_ADMIN, ipAddress="127.0.0.1"))["Ports"]
        assert {p["ID"] for p in on_ip} == {new, busy}
        assert not ok(client.call(SVC, "ListPortsAssignedToIP", **NEW_ADMIN, ipAddress="127.0.0.2"))["Ports"]

        # The same port number on an overlapping address is refused.
        clash = add_port(client, "IMAP", store_port)
        code, message = refused(client.call(SVC, "AssignPortToIP", **NEW_ADMIN, portID=clash, ipAddress="0.0.0.0"))
        assert code == ResultCode.PORT_IN_USE and str(store_port) in message

        # The other program lets go: the port is bound at the next poll, and no longer reported.
        taken.close()
        wait_until(lambda: answers(taken_port) and not reported(), "the freed port bound")
        assert greeting(taken_port).startswith("+OK mx.test")

        ok(client.call(SVC, "RemovePortFromIP", **NEW_ADMIN, portID=busy, ipAddress="127.0.0.1"))
        ok(client.call(SVC, "DeleteServerPort", **NEW_ADMIN, portId=new))
        wait_until(lambda: not answers(store_port) and not answers(taken_port), "both ports closed")
        # Nothing assigned any more: the bootstrap default again.
        wait_until(lambda: answers(bootstrap), "the bootstrap SMTP port bound again")


def test_the_greeting_names_the_host_name_of_the_address_connected_to(setup, tmp_path, env):
    smtp_port, pop_port = free_port(), free_port()
    with serving(setup, tmp_path, env, workers=2) as (server, client):
        for protocol, port in (("SMTP", smtp_port), ("POP", pop_port)):
            new = add_port(client, protocol, port)
            for ip in ("127.0.0.1", "127.0.0.2"):
                ok(client.call(SVC, "AssignPortToIP", **NEW_ADMIN, portID=new, ipAddress=ip))
        ok(client.call(SVC, "AddHostname", **NEW_ADMIN, hostname="Mail2.Example.COM", ipAddress="127.0.0.2"))
        assert ok(client.call(SVC, "ListHostnames", **NEW_ADMIN))["Hostnames"] == [
            {"IPAddress": "127.0.0.2", "Hostname": "mail2.example.com"}]

        def named(host: str, name: str) -> bool:
            return (answers(smtp_port, host) and greeting(smtp_port, host).startswith(f"220 {name} ")
                    and greeting(pop_port, host).startswith(f"+OK {name} "))
        # Every worker (several connections each way) names it.
        wait_until(lambda: all(named("127.0.0.2", "mail2.example.com") for _ in range(6)), "the per-IP name")
        assert all(named("127.0.0.1", "mx.test") for _ in range(6))
        with smtplib.SMTP("127.0.0.2", smtp_port, local_hostname="client.test", timeout=10) as smtp:
            code, text = smtp.ehlo()
            assert code == 250 and text.decode().splitlines()[0] == "mail2.example.com"

        # Submission with TLS from the first byte: the greeting is the TLS one, and AUTH is allowed.
        submissions = free_port()
        ok(client.call(SVC, "AssignPortToIP", **NEW_ADMIN, portID=add_port(client, "Submission", submissions, "SSL"),
                       ipAddress="127.0.0.2"))
        wait_until(lambda: answers_tls(submissions, "127.0.0.2"), "the submission port with implicit TLS")
        with smtplib.SMTP_SSL("127.0.0.2", submissions, local_hostname="client.test", timeout=10,
                              context=unverified()) as smtp:
            assert smtp.ehlo()[1].decode().splitlines()[0] == "mail2.example.com"
            assert smtp.login(f"postmaster@{DOM}", "Domain-pass-1")[0] == 235
        wait_until(lambda: status(client, "smtpsessions") == {"smtpsessions": "0"}, "the TLS session counted once")

        ok(client.call(SVC, "DeleteHostname", **NEW_ADMIN, ipAddress="127.0.0.2"))
        wait_until(lambda: all(named("127.0.0.2", "mx.test") for _ in range(6)), "the server's name again")
        code, _ = refused(client.call(SVC, "DeleteHostname", **NEW_ADMIN, ipAddress="127.0.0.2"))
        assert code == ResultCode.ITEM_NOT_FOUND


# -- bad input and rights (in process: nothing is bound) ------------------------------------------------

@pytest.fixture
def c(live_server):
    live_server.server.admins.reset_primary("root", "Gr8-secret-pw")
    admin = live_server.server.login("root", "Gr8-secret-pw", "127.0.0.1")
    live_server.server.domains.add(admin, DOM, "", "postmaster", "Domain-pass-1", "", "", {})
    return HttpClient(live_server.url, "POST")


def port_args(**changes: object) -> dict:
    return {**NEW_ADMIN, "protocol": "SMTP", "certificatePath": "", "encryption": "STARTTLS", "name": "n",
            "port": 2525, "description": "", **changes}


@pytest.mark.parametrize("changes, code", [
    ({"port": 0}, ResultCode.VALUE_OUT_OF_RANGE),
    ({"port": 70000}, ResultCode.VALUE_OUT_OF_RANGE),
    ({"port": -25}, ResultCode.VALUE_OUT_OF_RANGE),
    ({"protocol": "FTP"}, ResultCode.INVALID_ARGUMENT),
    ({"protocol": ""}, ResultCode.INVALID_ARGUMENT),
    ({"encryption": "rot13"}, ResultCode.INVALID_ARGUMENT),
    ({"name": "n" * 129}, ResultCode.VALUE_OUT_OF_RANGE),
    ({"description": "d" * 1025}, ResultCode.VALUE_OUT_OF_RANGE),
    ({"certificatePath": "/nonexistent/cert.pem"}, ResultCode.INVALID_PATH),
    ({"certificatePath": "relative.pem"}, ResultCode.INVALID_PATH),
    ({"certificatePath": "/etc/hostname"}, ResultCode.INVALID_PATH),  # readable, not a certificate
], ids=["port0", "port70000", "negative", "protocol", "no-protocol", "encryption", "name", "description",
        "missing-cert", "relative-cert", "not-a-cert"])
def test_a_bad_port_is_refused_and_nothing_is_added(c, changes, code):
    assert refused(c.call(SVC, "AddServerPort", **port_args(**changes)))[0] == code
    assert not ok(c.call(SVC, "ListServerPorts", **NEW_ADMIN))["Ports"]


def test_bad_addresses_names_and_ids_are_refused_and_nothing_changes(c, tmp_path):
    cert = tmp_path / "data" / "tls" / "selfsigned.pem"
    from mailsrv.core.tls import ensure_self_signed
    ensure_self_signed(cert.parent, "mx.test")
    new = ok(c.call(SVC, "AddServerPort", **port_args(certificatePath=str(cert), encryption="ssl")))["NewID"]
    assert ok(c.call(SVC, "ListServerPorts", **NEW_ADMIN))["Ports"][0]["CertificatePath"] == str(cert)
    # An address this machine does not have: kept (another node may have it), and said at once.
    message = ok(c.call(SVC, "AssignPortToIP", **NEW_ADMIN, portID=new, ipAddress="192.0.2.1"))["Message"]
    assert "192.0.2.1:2525" in message and "Cannot assign requested address" in message
    ok(c.call(SVC, "RemovePortFromIP", **NEW_ADMIN, portID=new, ipAddress="192.0.2.1"))
    for ip in ("", "localhost", "127.0.0.256", "1.2.3.4/24", "::g"):
        assert refused(c.call(SVC, "AssignPortToIP", **NEW_ADMIN, portID=new, ipAddress=ip))[0] == \
            ResultCode.INVALID_ARGUMENT
        assert refused(c.call(SVC, "AddHostname", **NEW_ADMIN, hostname="mx.example.com", ipAddress=ip))[0] == \
            ResultCode.INVALID_ARGUMENT
    for name in ("a" * 64 + ".example.com", ("a" * 60 + ".") * 5 + "com", "bad_name.example.com", ""):
        assert refused(c.call(SVC, "AddHostname", **NEW_ADMIN, hostname=name, ipAddress="127.0.0.2"))[0] == \
            ResultCode.INVALID_DOMAIN_NAME
    for unknown in ("", "no-such-id"):
        assert refused(c.call(SVC, "AssignPortToIP", **NEW_ADMIN, portID=unknown, ipAddress="127.0.0.1"))[0] == \
            ResultCode.ITEM_NOT_FOUND
        assert refused(c.call(SVC, "DeleteServerPort", **NEW_ADMIN, portId=unknown))[0] == ResultCode.ITEM_NOT_FOUND
    assert refused(c.call(SVC, "RemovePortFromIP", **NEW_ADMIN, portID=new, ipAddress="127.0.0.1"))[0] == \
        ResultCode.ITEM_NOT_FOUND
    assert not ok(c.call(SVC, "ListPortsAssignedToIP", **NEW_ADMIN, ipAddress="127.0.0.1"))["Ports"]
    assert not ok(c.call(SVC, "ListHostnames", **NEW_ADMIN))["Hostnames"]
    assert refused(c.call(SVC, "StartServices", **ADMIN, ServicesToStart=[]))[0] == ResultCode.INVALID_ARGUMENT


def test_only_a_system_administrator_may_call_them(c):
    dom = {"authUsername": DOMAIN_ADMIN["AuthUserName"], "authPassword": DOMAIN_ADMIN["AuthPassword"]}
    calls = [
        ("RequestStatus", {**DOMAIN_ADMIN, "reqStats": ["smtpsessions"]}),
        ("StopServices", {**DOMAIN_ADMIN, "ServicesToStop": ["SMTP"]}),
        ("StartServices", {**DOMAIN_ADMIN, "ServicesToStart": ["SMTP"]}),
        ("AddHostname", {**dom, "hostname": "mx.example.com", "ipAddress": "127.0.0.2"}),
        ("DeleteHostname", {**dom, "ipAddress": "127.0.0.2"}),
        ("ListHostnames", dom),
        ("AddServerPort", {**port_args(), **dom}),
        ("DeleteServerPort", {**dom, "portId": "x"}),
        ("ListServerPorts", dom),
        ("AssignPortToIP", {**dom, "portID": "x", "ipAddress": "127.0.0.1"}),
        ("RemovePortFromIP", {**dom, "portID": "x", "ipAddress": "127.0.0.1"}),
        ("ListPortsAssignedToIP", {**dom, "ipAddress": "127.0.0.1"}),
    ]
    for operation, params in calls:
        assert refused(c.call(SVC, operation, **params))[0] == ResultCode.PERMISSION_DENIED, operation
        bad = {k: ("wrong" if k.lower() == "authpassword" else v) for k, v in params.items()}
        assert refused(c.call(SVC, operation, **bad))[0] == ResultCode.LOGIN_FAILED, operation
    assert status(c, "smtpstatus") == {"smtpstatus": "Running"}
    assert not ok(c.call(SVC, "ListServerPorts", **NEW_ADMIN))["Ports"]


# -- pure rules ------------------------------------------------------------------------------------------

BOOT = (Listener(SMTP, STARTTLS, "127.0.0.1", 25), Listener(IMAP, SSL, "127.0.0.1", 993))


def test_the_store_replaces_the_bootstrap_and_stopped_services_are_left_out():
    assert Description(1, (), frozenset()).to_bind(BOOT) == list(BOOT)
    assert Description(1, (), frozenset({SMTP})).to_bind(BOOT) == [BOOT[1]]
    store = (Listener(POP, STARTTLS, "::1", 110),)
    assert Description(1, store, frozenset()).to_bind(BOOT) == list(store)
    assert Description(1, store, frozenset({POP})).to_bind(BOOT) == []


def test_service_names_are_case_insensitive_and_unknown_or_web_ones_refused():
    assert service_names(["smtp", " IMAP ", "Submission", "pop"], stopping=True) == {"SMTP", "IMAP", "Submission",
                                                                                    "POP"}
    assert service_names(["web", "smtp"], stopping=False) == {"SMTP"}  # starting a running web listener: nothing
    for names, stopping, code in ((["web"], True, ResultCode.SERVICE_NOT_STOPPABLE),
                                  (["smtp", "x"], True, ResultCode.UNKNOWN_SERVICE), ([], False,
                                                                                      ResultCode.INVALID_ARGUMENT)):
        with pytest.raises(MailsrvError) as refusal:
            service_names(names, stopping)
        assert refusal.value.code == code


def test_greeting_names_by_local_address():
    greetings = Greetings()
    assert greetings.name_for("127.0.0.2", "mx.test") == "mx.test"
    greetings.update({"127.0.0.2": "two.test", "::1": "six.test"})
    assert [greetings.name_for(ip, "mx.test") for ip in ("127.0.0.2", "::ffff:127.0.0.2", "::1", "127.0.0.1", "x")] \
        == ["two.test", "two.test", "six.test", "mx.test", "mx.test"]


def test_overlapping_addresses():
    assert _overlap("127.0.0.1", "127.0.0.1") and _overlap("0.0.0.0", "127.0.0.1") and _overlap("::", "::1")
    assert not _overlap("127.0.0.1", "127.0.0.2") and not _overlap("0.0.0.0", "::1")


def test_open_sessions_count_up_and_down():
    sessions = OpenSessions()
    with sessions.session("smtp"), sessions.session("smtp"):
        assert sessions.count("smtp") == 2 and sessions.count("imap") == 0
    assert sessions.count("smtp") == 0
