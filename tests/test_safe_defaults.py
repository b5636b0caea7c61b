"""Safe defaults and packaging (issue 15): implicit TLS on 465/993/995 and HTTPS in the embedded
defaults, plain HTTP sending the sign-in pages to HTTPS, what `mailsrv serve` warns about at start,
certificates reloaded on SIGHUP by every worker (through the shipped certbot deploy hook), and the
systemd unit as systemd itself reads it."""
from __future__ import annotations

import datetime as dt
import hashlib
import imaplib
import os
import poplib
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
from conftest import unavailable
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from serve_support import MAILSRV, Serving
from smtp_support import USER_PASSWORD
from sqlalchemy.engine import make_url
from test_cli import database_url, write_config  # noqa: F401 (fixture)

from mailsrv.core.config import load_config, parse_config
from mailsrv.core.tls import SELF_SIGNED_NAME
from mailsrv.server import MailServer

ROOT = Path(__file__).resolve().parent.parent
HOOK = ROOT / "contrib" / "certbot-deploy-hook.sh"
UNIT = ROOT / "contrib" / "systemd" / "mailsrv.service"
ALICE = "alice@a.test"
ADMIN = ("sysadmin", "Secret-pass-123")
LISTENER_LINE = r"{} on (?:https://)?127\.0\.0\.1:(\d+)"


def test_the_embedded_defaults_listen_with_implicit_tls_and_https():
    config = parse_config("")
    listen = config.listen
    assert (listen.submissions, listen.imaps, listen.pop3s) == ("0.0.0.0:465", "0.0.0.0:993", "0.0.0.0:995")
    assert (listen.web, listen.webs) == ("0.0.0.0:9998", "0.0.0.0:9443")
    assert config.web.https_redirect is True


# -- certificates ----------------------------------------------------------------------------

@dataclass
class Authority:
    """A certificate authority the test's clients trust, issuing the server's certificates."""
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    pem: Path

    @classmethod
    def create(cls, directory: Path) -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
        cert = (_builder(name, name, key.public_key())
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        pem = directory / "ca.pem"
        pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(key, cert, pem)

    def issue(self, lineage: Path, hostname: str = "mail.example.test") -> str:
        """A certbot-like lineage directory (fullchain.pem, privkey.pem); the SHA-256 fingerprint."""
        lineage.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (_builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]), self.cert.subject,
                         key.public_key())
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
                .sign(self.key, hashes.SHA256()))
        (lineage / "fullchain.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM)
                                                + self.cert.public_bytes(serialization.Encoding.PEM))
        (lineage / "privkey.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                                serialization.PrivateFormat.PKCS8,
                                                                serialization.NoEncryption()))
        return cert.fingerprint(hashes.SHA256()).hex()

    def client(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pem))
        context.check_hostname = False  # the certificate names the mail host; we dial 127.0.0.1
        return context


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=90)))


def run_hook(lineage: Path, tls_dir: Path, reload: str) -> None:
    """contrib/certbot-deploy-hook.sh as certbot runs it after a renewal."""
    env = {**os.environ, "RENEWED_LINEAGE": str(lineage), "MAILSRV_TLS_DIR": str(tls_dir),
           "MAILSRV_GROUP": str(os.getgid()), "MAILSRV_RELOAD": reload}
    done = subprocess.run([str(HOOK)], env=env, capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr


def served_fingerprint(port: int, context: ssl.SSLContext) -> str:
    """The SHA-256 fingerprint of the certificate a new TLS session on `port` is given."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        with context.wrap_socket(raw) as tls:
            return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


# -- serving ---------------------------------------------------------------------------------

def provision(config: Path) -> None:
    """The administrator, a.test and alice, straight into the store before the server starts."""
    server = MailServer(load_config(config))
    try:
        server.admins.reset_primary(*ADMIN)
        admin = server.login(*ADMIN, "127.0.0.1")
        server.domains.add(admin, "a.test", "", "postmaster", "Domain-pass-1", "", "", {})
        server.users.add(admin, "alice", USER_PASSWORD, "a.test", "", "", False)
    finally:
        server.close()


def port_of(server: Serving, name: str) -> int:
    """The port a listener logs it is bound to ("IMAPS", "submission (TLS)", "web (HTTPS)", …)."""
    label = "web listener (HTTPS)" if name == "web (HTTPS)" else f"{name} listener"
    return int(server.wait_for(re.compile(LISTENER_LINE.format(re.escape(label))))[1])


def test_implicit_tls_from_the_first_byte_on_465_993_995_and_https(tmp_path, database_url, env):
    listen = "".join(f'{key} = "127.0.0.1:0"\n' for key in ("submissions", "imaps", "pop3s", "webs"))
    config = write_config(tmp_path / "mailsrv.toml", database_url, listen=listen)
    provision(config)
    with Serving(config, env) as server:
        https = port_of(server, "web (HTTPS)")
        ports = {name: port_of(server, name) for name in ("submission (TLS)", "IMAPS", "POP3S")}
        trust = ssl.create_default_context(cafile=str(tmp_path / "data" / "tls" / SELF_SIGNED_NAME))
        trust.check_hostname = False

        with smtplib.SMTP_SSL("127.0.0.1", ports["submission (TLS)"], context=trust, timeout=30) as smtp:
            assert smtp.sock.version() in ("TLSv1.2", "TLSv1.3")
            assert smtp.ehlo()[0] == 250 and "PLAIN" in smtp.esmtp_features["auth"]  # AUTH offered: TLS already
            smtp.login(ALICE, USER_PASSWORD)
            smtp.sendmail(ALICE, [ALICE], b"From: alice@a.test\r\nSubject: over 465\r\n\r\nhello\r\n")
        imap = imaplib.IMAP4_SSL("127.0.0.1", ports["IMAPS"], ssl_context=trust, timeout=30)
        try:
            imap.login(ALICE, USER_PASSWORD)
            assert imap.select("INBOX") == ("OK", [b"1"])
        finally:
            imap.logout()
        pop3 = poplib.POP3_SSL("127.0.0.1", ports["POP3S"], context=trust, timeout=30)
        try:
            pop3.user(ALICE)
            pop3.pass_(USER_PASSWORD)
            assert pop3.stat()[0] == 1
        finally:
            pop3.quit()
        with httpx.Client(verify=trust, timeout=30) as client:
            assert client.get(f"https://127.0.0.1:{https}/Login.aspx").status_code == 200

        # A client speaking in the clear is never greeted in the clear: the server waits for a TLS
        # hello and drops the connection on anything else.
        for port in ports.values():
            with socket.create_connection(("127.0.0.1", port), timeout=30) as plain:
                plain.sendall(b"EHLO client.test\r\n")
                answer = plain.recv(1024)
                assert not answer.startswith((b"220", b"* OK", b"+OK")), answer
        assert server.stop() == 0


def test_plain_http_sends_the_sign_in_pages_to_https(tmp_path, database_url, env):
    config = write_config(tmp_path / "mailsrv.toml", database_url, listen='webs = "127.0.0.1:0"\n')
    with Serving(config, env) as server:
        http = server.base_url()
        https = port_of(server, "web (HTTPS)")
        trust = ssl.create_default_context(cafile=str(tmp_path / "data" / "tls" / SELF_SIGNED_NAME))
        trust.check_hostname = False
        with httpx.Client(timeout=30) as client:
            for path in ("/Login.aspx?shortcutLink=autologin", "/LOGIN.ASPX", "/admin", "/admin/domains"):
                answer = client.get(f"{http}{path}")
                assert answer.status_code == 307, path
                assert answer.headers["location"] == f"https://127.0.0.1:{https}{path}"
            # SOAP stays where control panels are told it is.
            assert client.get(f"{http}/Services/svcProductInfo.asmx").status_code == 200
        # A control panel's auto-login form posts to plain HTTP: 307 keeps it a POST, now over TLS.
        with httpx.Client(timeout=30, verify=trust, follow_redirects=True) as client:
            answer = client.post(f"{http}/Login.aspx", data={"email": ALICE, "password": "wrong-pass-1"})
            assert (answer.url.scheme, answer.request.method, answer.status_code) == ("https", "POST", 401)
        assert server.stop() == 0

    # Behind a reverse proxy that terminates TLS, the redirect is turned off.
    config = write_config(tmp_path / "proxied.toml", database_url, extra="[web]\nhttps_redirect = false\n",
                          listen='webs = "127.0.0.1:0"\n')
    with Serving(config, env) as server:
        assert httpx.get(f"{server.base_url()}/Login.aspx", timeout=30).status_code == 200
        assert server.stop() == 0


def test_without_an_https_listener_nothing_is_redirected(tmp_path, database_url, env):
    with Serving(write_config(tmp_path / "mailsrv.toml", database_url), env) as server:
        assert httpx.get(f"{server.base_url()}/Login.aspx", timeout=30).status_code == 200
        assert server.stop() == 0


# -- what the start says ---------------------------------------------------------------------

def answered(server: Serving) -> None:
    """The server is serving (its signal handlers in place): a SOAP page answers."""
    assert httpx.get(f"{server.base_url()}/Services/svcProductInfo.asmx", timeout=30).status_code == 200


HOSTNAME_WARNING = re.compile(r"warning: .*host name is 'localhost'")
SELF_SIGNED_WARNING = re.compile(r"warning: .*TLS certificate (\S+) is self-signed")
FACTORY_WARNING = re.compile(r"warning: .*factory login admin/admin is unchanged")


def test_start_warns_of_localhost_a_self_signed_certificate_and_the_factory_login(tmp_path, database_url, env):
    # PostgreSQL here trusts any password: one in the URL shows it is never logged.
    database = make_url(database_url).set(password="Db-secret-42").render_as_string(False) if database_url else ""
    config = write_config(tmp_path / "mailsrv.toml", database, extra='[smtp]\nhostname = "localhost"\n')
    with Serving(config, env) as server:
        where = server.wait_for(re.compile(r"mailsrv\.serve: data directory (\S+), database (\S+)"))
        assert where[1] == str((tmp_path / "data").resolve())
        if database:
            assert where[2] == make_url(database).render_as_string(hide_password=True)
            assert "Db-secret-42" not in where[2]
        else:
            assert where[2] == f"sqlite:///{(tmp_path / 'data').resolve() / 'mailsrv.db'}"
        server.wait_for(HOSTNAME_WARNING)
        assert server.wait_for(SELF_SIGNED_WARNING)[1] == str((tmp_path / "data" / "tls" / SELF_SIGNED_NAME).resolve())
        server.wait_for(FACTORY_WARNING)
        answered(server)
        assert server.stop() == 0


def test_a_server_set_up_properly_starts_without_a_warning(tmp_path, database_url, env):
    authority = Authority.create(tmp_path)
    authority.issue(tmp_path / "live")
    config = write_config(tmp_path / "mailsrv.toml", database_url,
                          extra=f'[smtp]\nhostname = "mail.example.test"\n[tls]\n'
                                f'cert_file = "{tmp_path}/live/fullchain.pem"\nkey_file = "{tmp_path}/live/privkey.pem"\n')
    provision(config)  # the administrator login is set
    with Serving(config, env) as server:
        answered(server)  # the warnings come before the listeners are announced
        assert not [line for line in server.log if "warning:" in line], "".join(server.log)
        assert server.stop() == 0


# -- SIGHUP ----------------------------------------------------------------------------------

def test_sighup_reloads_the_certificate_in_every_worker(tmp_path, database_url, env):
    authority = Authority.create(tmp_path)
    tls_dir = tmp_path / "tls"
    first = authority.issue(tmp_path / "lineage-1")
    run_hook(tmp_path / "lineage-1", tls_dir, "true")  # the first certificate, before the server runs
    listen = "".join(f'{key} = "127.0.0.1:0"\n' for key in ("submissions", "imaps", "webs"))
    config = write_config(tmp_path / "mailsrv.toml", database_url, listen=listen,
                          extra=f'[server]\nworkers = 2\n[tls]\ncert_file = "{tls_dir}/fullchain.pem"\n'
                                f'key_file = "{tls_dir}/privkey.pem"\n')
    with Serving(config, env) as server:
        https = port_of(server, "web (HTTPS)")  # bound by the supervisor, before it starts the workers
        workers = {server.wait_for(re.compile(r"worker \d+ started \(pid (\d+)\)"))[1] for _ in range(2)}
        # Each worker logs its mail listeners once its event loop (and SIGHUP handler) runs.
        mail_ports = [server.wait_for(re.compile(r"(submission \(TLS\)|IMAPS) listener on 127\.0\.0\.1:(\d+)"))
                      for _ in range(4)]
        assert sorted(match[1] for match in mail_ports) == ["IMAPS", "IMAPS", "submission (TLS)", "submission (TLS)"]
        ports = [https, *sorted({int(match[2]) for match in mail_ports})]
        imaps = next(int(match[2]) for match in mail_ports if match[1] == "IMAPS")
        trust = authority.client()
        assert {served_fingerprint(port, trust) for port in ports * 4} == {first}
        # A session open across the reload keeps its certificate and goes on.
        open_session = imaplib.IMAP4_SSL("127.0.0.1", imaps, ssl_context=trust, timeout=30)

        renewed = authority.issue(tmp_path / "lineage-2")
        run_hook(tmp_path / "lineage-2", tls_dir, f"kill -HUP {server.process.pid}")
        reloaded = re.compile(rf"TLS certificate {re.escape(str(tls_dir))}/fullchain.pem reloaded "
                              rf"\(SHA-256 {':'.join(re.findall('..', renewed))}\) \(pid (\d+)\)")
        assert {server.wait_for(reloaded)[1] for _ in range(2)} == workers

        # New sessions, spread by the kernel over both workers, all get the renewed certificate.
        assert {served_fingerprint(port, trust) for port in ports * 8} == {renewed}
        assert open_session.noop()[0] == "OK"
        open_session.logout()

        # A renewal whose key does not match its certificate is refused; the current one stays.
        broken = tmp_path / "lineage-3"
        authority.issue(broken)
        shutil.copy(tmp_path / "lineage-1" / "privkey.pem", broken / "privkey.pem")
        run_hook(broken, tls_dir, f"kill -HUP {server.process.pid}")
        refused = re.compile(rf"TLS certificate {re.escape(str(tls_dir))}/fullchain.pem NOT reloaded, the previous "
                             r"one stays: .* \(pid (\d+)\)")
        assert {server.wait_for(refused)[1] for _ in range(2)} == workers
        assert {served_fingerprint(port, trust) for port in ports * 4} == {renewed}
        assert not [line for line in server.log if "ended" in line]  # no worker died of the signal
        assert server.stop() == 0


# -- systemd ---------------------------------------------------------------------------------

def unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_the_systemd_unit_is_valid_and_hardened(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        unavailable("systemd-analyze is not installed (Debian package systemd; .ci/run installs it)")
    # The unit verbatim; a drop-in points ExecStart at this environment's console script, as an
    # installation's path (/opt/mailsrv/.venv) does not exist here and verify checks that it does.
    units = tmp_path / "units"
    (units / "mailsrv.service.d").mkdir(parents=True)
    shutil.copy(UNIT, units / "mailsrv.service")
    (units / "mailsrv.service.d" / "here.conf").write_text(
        f"[Service]\nExecStart=\nExecStart={MAILSRV} serve --config /etc/mailsrv/mailsrv.toml\n")
    done = subprocess.run([analyze, "verify", str(units / "mailsrv.service")], capture_output=True, text=True,
                          env={**os.environ, "SYSTEMD_UNIT_PATH": f"{units}:"}, timeout=60, stdin=subprocess.DEVNULL)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")

    settings = unit_settings(UNIT.read_text())
    assert settings["ExecStart"] == ["/opt/mailsrv/.venv/bin/mailsrv serve --config /etc/mailsrv/mailsrv.toml"]
    assert settings["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert settings["User"] == ["mailsrv"] and settings["Group"] == ["mailsrv"]
    assert settings["AmbientCapabilities"] == settings["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    for key, value in [("ProtectSystem", "strict"), ("NoNewPrivileges", "yes"), ("PrivateTmp", "yes"),
                       ("ProtectHome", "yes"), ("PrivateDevices", "yes"), ("RestrictSUIDSGID", "yes")]:
        assert settings[key] == [value], key
    # The one writable path is the data directory of the configuration the unit starts with.
    shipped = load_config(ROOT / "contrib" / "systemd" / "mailsrv.toml")
    assert settings["ReadWritePaths"] == [str(shipped.data_dir)] == ["/var/lib/mailsrv"]
    assert settings["StateDirectory"] == ["mailsrv"]
    assert (ROOT / "contrib" / "systemd" / "mailsrv.sysusers").read_text().splitlines()[-1].split()[:2] == [
        "u", "mailsrv"]
    assert shipped.listen.webs == "0.0.0.0:443"

