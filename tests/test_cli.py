"""The `mailsrv` command as an operator runs it: real processes, real sockets, real signals."""
from __future__ import annotations

import imaplib
import os
import poplib
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mailsrv import __version__
from mailsrv.core.config import ConfigError
from mailsrv.serve import parse_address
from mailsrv.store.db import Store
from mailsrv.core.tls import SELF_SIGNED_NAME
from serve_support import MAILSRV, Serving, listen_table



@pytest.fixture
def database_url() -> Iterator[str]:
    """The suite's database (MAILSRV_TEST_DATABASE_URL), emptied afterwards; '' means SQLite."""
    url = os.environ.get("MAILSRV_TEST_DATABASE_URL", "")
    yield url
    if url:
        store = Store(url)
        store.drop_all()
        store.close()


def write_config(path: Path, database_url: str, web: str = "127.0.0.1:0", extra: str = "", listen: str = "") -> Path:
    # SMTP, IMAP and POP3 listeners off: these tests are about the process, and ports below 1024
    # need root (and may be another server's).
    path.write_text(f'data_dir = "{path.parent / "data"}"\ndatabase_url = "{database_url}"\n{extra}'
                    f'{listen_table(web, listen)}')
    return path


@pytest.fixture
def config(tmp_path, database_url) -> Path:
    return write_config(tmp_path / "mailsrv.toml", database_url)


def mailsrv(*args: str, env: dict[str, str], input: str | None = None) -> subprocess.CompletedProcess[str]:
    """The command; `input` its stdin (none: an empty one), where it reads passwords."""
    return subprocess.run([MAILSRV, *args], env=env, capture_output=True, text=True, timeout=60,
                          input=input or "")


def list_system_admins(base_url: str, username: str, password: str) -> httpx.Response:
    return httpx.get(f"{base_url}/Services/svcServerAdmin.asmx/ListSystemAdmins",
                     params={"authUsername": username, "authPassword": password}, timeout=10)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_answers_then_stops_cleanly_on_a_signal(config, env, sig):
    with Serving(config, env) as server:
        response = httpx.get(f"{server.base_url()}/Services/svcProductInfo.asmx", timeout=10)
        assert response.status_code == 200

        started = time.monotonic()
        assert server.stop(sig) == 0
        assert time.monotonic() - started < 8
        server.wait_for(re.compile(r"mailsrv\.serve: stopped"))


def test_serve_listens_on_ipv6(tmp_path, database_url, env):
    try:
        with socket.create_server(("::1", 0), family=socket.AF_INET6):
            pass
    except OSError:
        pytest.skip("this machine has no IPv6 loopback")
    with Serving(write_config(tmp_path / "v6.toml", database_url, web="[::1]:0"), env) as server:
        base_url = server.base_url()
        assert base_url.startswith("http://[::1]:")
        assert httpx.get(f"{base_url}/Services/svcProductInfo.asmx", timeout=10).status_code == 200
        assert server.stop() == 0


def test_serve_offers_the_web_interface_over_https_with_the_mail_certificate(tmp_path, database_url, env):
    config = write_config(tmp_path / "https.toml", database_url, listen='webs = "127.0.0.1:0"\n')
    with Serving(config, env) as server:
        address = server.wait_for(re.compile(r"web listener \(HTTPS\) on https://(\S+)")).group(1)
        trust = ssl.create_default_context(cafile=str(tmp_path / "data" / "tls" / SELF_SIGNED_NAME))
        trust.check_hostname = False  # the certificate names the mail host; we dial 127.0.0.1
        with httpx.Client(verify=trust, timeout=10) as client:
            response = client.get(f"https://{address}/Login.aspx")
            assert response.status_code == 200 and "<form" in response.text
            assert response.extensions["network_stream"].get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
        assert server.stop() == 0


@pytest.mark.parametrize("args", [["serve"], ["admin", "reset", "--username", "root", "--create"]],
                         ids=["serve", "admin reset"])
def test_an_unknown_configuration_key_exits_2_naming_it(tmp_path, env, args):
    config = write_config(tmp_path / "typo.toml", "", extra="[security]\nlockout_secs = 60\n")
    result = mailsrv(*args, "--config", str(config), env=env)
    assert result.returncode == 2
    assert "mailsrv: unknown configuration key 'security.lockout_secs'" in result.stderr
    assert not (tmp_path / "data").exists()  # refused before anything was created


@pytest.mark.parametrize("web", ["9998", "localhost:9998", "::1:9998", "[127.0.0.1]:9998", "0.0.0.0:65536"])
def test_a_bad_web_address_exits_2_naming_listen_web(tmp_path, env, web):
    result = mailsrv("serve", "--config", str(write_config(tmp_path / "bad.toml", "", web=web)), env=env)
    assert result.returncode == 2
    assert "mailsrv: configuration key 'listen.web' must be 'address:port'" in result.stderr
    assert not (tmp_path / "data").exists()


def test_a_taken_web_port_exits_1_naming_listen_web(tmp_path, env):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        web = f"127.0.0.1:{taken.getsockname()[1]}"
        result = mailsrv("serve", "--config", str(write_config(tmp_path / "taken.toml", "", web=web)), env=env)
    assert result.returncode == 1
    assert f"mailsrv: cannot listen on {web} (listen.web)" in result.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("value, expected", [
    ("0.0.0.0:9998", ("0.0.0.0", 9998)),
    ("127.0.0.1:0", ("127.0.0.1", 0)),
    ("[::]:25", ("::", 25)),
    ("[::1]:9998", ("::1", 9998)),
])
def test_listen_addresses_are_ip_and_port(value, expected):
    assert parse_address(value, "listen.web") == expected


@pytest.mark.parametrize("value", ["", ":9998", "[::1]", "[::1]:", "host:25", "1.2.3.4:x", "1.2.3.4:-1",
                                   "1.2.3.4:٩٩", "1.2.3.4:99999"])
def test_malformed_listen_addresses_are_refused_naming_the_key(value):
    with pytest.raises(ConfigError, match="'listen.smtp' must be 'address:port'"):
        parse_address(value, "listen.smtp")


def test_admin_reset_sets_the_login_the_soap_services_accept(config, env):
    env = {**env, "MAILSRV_CONFIG": str(config)}  # found without --config, as an operator would
    result = mailsrv("admin", "reset", "--username", "postmaster", "--create", env=env, input="Correct-Horse-9\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "The primary system administrator now logs in as 'postmaster'."

    with Serving(config, env) as server:
        base_url = server.base_url()
        accepted = list_system_admins(base_url, "postmaster", "Correct-Horse-9")
        assert "<Result>true</Result>" in accepted.text
        assert "<Result>true</Result>" not in list_system_admins(base_url, "admin", "admin").text
        assert server.stop() == 0


def test_admin_reset_refusal_exits_1_with_the_reason(config, env):
    result = mailsrv("admin", "reset", "--config", str(config), "--username", "postmaster", "--create", env=env,
                     input="short\n")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("mailsrv: ") and "password" in result.stderr.lower()
    assert result.stdout == ""


def test_version(env):
    result = mailsrv("--version", env=env)
    assert (result.returncode, result.stdout.strip()) == (0, f"mailsrv {__version__}")


def test_the_served_process_speaks_starttls_on_smtp_imap_and_pop3(tmp_path, database_url, env):
    # The listeners' TLS upgrades on the event loop `mailsrv serve` runs (uvloop), not only on the
    # asyncio loop the in-process test harnesses use.
    listen = 'smtp = "127.0.0.1:0"\nimap = "127.0.0.1:0"\npop3 = "127.0.0.1:0"\n'
    config = write_config(tmp_path / "tls.toml", database_url, web="127.0.0.1:0")
    config.write_text(config.read_text().replace('smtp = ""\n', "").replace('imap = ""\n', "")
                      .replace('pop3 = ""\n', "") + listen)
    with Serving(config, env) as server:
        ports = {name: int(server.wait_for(re.compile(rf"{name} listener on [\d.]+:(\d+)"))[1])
                 for name in ("SMTP", "IMAP", "POP3")}
        trust = ssl.create_default_context(cafile=str(tmp_path / "data" / "tls" / SELF_SIGNED_NAME))
        trust.check_hostname = False  # the certificate names the mail host; we dial 127.0.0.1
        with smtplib.SMTP("127.0.0.1", ports["SMTP"], timeout=10) as smtp:
            smtp.starttls(context=trust)
            assert smtp.ehlo()[0] == 250 and smtp.sock.version() in ("TLSv1.2", "TLSv1.3")
        imap = imaplib.IMAP4("127.0.0.1", ports["IMAP"], timeout=10)
        try:
            assert imap.starttls(ssl_context=trust)[0] == "OK"
            assert imap.capability()[0] == "OK"
        finally:
            imap.shutdown()
        pop = poplib.POP3("127.0.0.1", ports["POP3"], timeout=10)
        try:
            assert pop.stls(context=trust).startswith(b"+OK")
            assert pop.capa()
        finally:
            pop.close()
        assert server.stop() == 0
