"""Testing a server this one hands mail to or takes mail from (a gateway, a primary, a backup MX):
the seed's "test servers added to the web interface", and `mailsrv gateway test`.

Over SMTP: connect, read the greeting, say EHLO (the round trip is timed), note whether STARTTLS is
offered and whether TLS then negotiates. For a SmarterMail-type server (mailsrv or SmarterMail) with
an API URL and credentials: log in to its API and read its product version and spool count. Every
step is bounded by the timeout, and a step that fails records why in its field of the result; the
steps after it that depend on it are not tried."""
from __future__ import annotations

import smtplib
import socket
import ssl
import time
from dataclasses import dataclass, field

import dns.exception
import dns.resolver

from mailsrv.core import names, soap_client
from mailsrv.core.dns import make_resolver

SMTP_PORT = 25


@dataclass(frozen=True)
class ApiLogin:
    """Where and as whom to reach a SmarterMail-type server's API (a gateway's smUrl and login)."""
    url: str
    username: str
    password: str


@dataclass
class ServerProbe:
    """What a test of one server found. Empty strings and None: not found (see the step's error)."""
    address: str
    host: str
    port: int
    ip: str = ""
    connect_ms: float | None = None  # until the greeting
    greeting: str = ""
    ehlo: list[str] = field(default_factory=list)  # the EHLO reply's lines: the name, then extensions
    round_trip_ms: float | None = None  # of the EHLO command
    starttls_offered: bool = False
    tls_version: str = ""
    tls_cipher: str = ""
    smtp_error: str = ""  # connect, greeting or EHLO
    tls_error: str = ""
    product_name: str = ""
    product_version: str = ""
    spool_count: int | None = None
    api_error: str = ""  # API login and product version
    spool_error: str = ""

    @property
    def reachable(self) -> bool:
        """It greeted us as a mail server."""
        return bool(self.greeting)

    @property
    def tls_negotiated(self) -> bool:
        return bool(self.tls_version)


def parse_address(text: str) -> tuple[str, int]:
    """(host, port) of a server address (`names.server_address`); the port defaults to 25."""
    address = names.server_address(text, "server address")
    return address.host, address.port or SMTP_PORT


def _resolve(host: str, nameservers: list[str], timeout: float) -> str:
    """The address to dial: the host itself when it is an IP address, else its first A/AAAA record
    from the configured nameservers (the ones remote delivery asks), else from the system."""
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return host
    except OSError:
        pass
    if not nameservers:
        try:
            return socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][4][0]
        except OSError as exc:
            raise LookupError(f"cannot resolve {host}: {exc}") from None
    resolver = make_resolver(nameservers)
    resolver.lifetime = timeout
    for rdtype in ("A", "AAAA"):
        try:
            return resolver.resolve(host, rdtype)[0].to_text()
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            continue
        except dns.exception.DNSException as exc:
            raise LookupError(f"cannot resolve {host}: {exc}") from None
    raise LookupError(f"cannot resolve {host}: no A or AAAA record")


def _reply_text(code: int, message: bytes) -> str:
    return f"{code} {message.decode('utf-8', 'replace')}"


def _probe_smtp(found: ServerProbe, local_name: str, timeout: float, try_tls: bool) -> None:
    smtp = smtplib.SMTP(local_hostname=local_name, timeout=timeout)
    # The name STARTTLS sends (SNI); smtplib sets it only when the constructor connects, and that
    # would not let us time the steps apart.
    smtp._host = found.host
    step = "connect"
    try:
        started = time.monotonic()
        code, message = smtp.connect(found.ip, found.port)
        found.connect_ms = (time.monotonic() - started) * 1000  # the connection and the greeting
        if code != 220:
            found.smtp_error = f"greeting refused: {_reply_text(code, message)}"
            return
        found.greeting = _reply_text(code, message)
        step = "EHLO"
        started = time.monotonic()
        code, message = smtp.ehlo()
        found.round_trip_ms = (time.monotonic() - started) * 1000
        if code != 250:
            found.smtp_error = f"EHLO refused: {_reply_text(code, message)}"
            return
        found.ehlo = message.decode("utf-8", "replace").splitlines()
        found.starttls_offered = smtp.has_extn("starttls")
        if found.starttls_offered and try_tls:
            step = "STARTTLS"
            _negotiate_tls(found, smtp)
    except (OSError, smtplib.SMTPException) as exc:
        if step == "connect" and isinstance(exc, smtplib.SMTPServerDisconnected):
            step = "greeting"  # connected, then no greeting came
        error = f"{step} ({found.ip} port {found.port}): {_describe(exc)}"
        if step == "STARTTLS":
            found.tls_error = error
        else:
            found.smtp_error = error
    finally:
        _hang_up(smtp, polite=not (found.smtp_error or found.tls_error))


def _hang_up(smtp: smtplib.SMTP, polite: bool) -> None:
    # After a failed step the peer may not answer QUIT either: waiting for it would double the wait.
    if polite:
        try:
            smtp.quit()
            return
        except (OSError, smtplib.SMTPException):
            pass
    smtp.close()


def _negotiate_tls(found: ServerProbe, smtp: smtplib.SMTP) -> None:
    # Whether TLS negotiates, not whom the certificate names: gateways commonly serve self-signed
    # certificates, and remote delivery's STARTTLS is opportunistic too.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    smtp.starttls(context=context)
    assert isinstance(smtp.sock, ssl.SSLSocket)
    found.tls_version = smtp.sock.version() or ""
    found.tls_cipher = (smtp.sock.cipher() or ("",))[0]


def _describe(exc: BaseException) -> str:
    # smtplib reports a read that timed out as a disconnection, raised while handling the timeout.
    if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
        return "no answer within the timeout"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return "the server closed the connection"
    if isinstance(exc, smtplib.SMTPResponseException):
        return _reply_text(exc.smtp_code, exc.smtp_error)
    return str(exc) or type(exc).__name__


def _probe_api(found: ServerProbe, api: ApiLogin, timeout: float) -> None:
    login = {"AuthUserName": api.username, "AuthPassword": api.password}
    try:
        info = soap_client.call(api.url, "svcProductInfo", "GetProductInfo", login, timeout)
    except soap_client.SoapError as exc:
        found.api_error = str(exc)
        return
    if not info.result:
        found.api_error = f"GetProductInfo refused (code {info.code}): {info.message}"
        return
    found.product_name = info.fields.get("ProductName", "")
    found.product_version = info.fields.get("ProductVersion", "")
    try:
        spool = soap_client.call(api.url, "svcServerAdmin", "GetSpoolMessageCount", login, timeout)
    except soap_client.SoapError as exc:
        found.spool_error = str(exc)
        return
    if not spool.result:
        found.spool_error = f"GetSpoolMessageCount refused (code {spool.code}): {spool.message}"
        return
    try:
        found.spool_count = int(spool.fields.get("messageCount", ""))
    except ValueError:
        found.spool_error = "GetSpoolMessageCount: messageCount is not a number"


def probe_server(address: str, api: ApiLogin | None = None, *, local_name: str = "localhost",
                 nameservers: list[str] | None = None, timeout: float = 10, try_tls: bool = True) -> ServerProbe:
    """Test the server at `address` ("ip", "ip:port", "[ipv6]:port", "name[:port]"); with `api`, its
    SOAP API too (whether or not SMTP answered: the web interface may be up when SMTP is not).
    A malformed address is refused (INVALID_ARGUMENT); everything else is a finding. It blocks (for
    at most a few timeouts): an event loop runs it in a thread."""
    host, port = parse_address(address)
    found = ServerProbe(address=address, host=host, port=port)
    try:
        found.ip = _resolve(host, nameservers or [], timeout)
    except LookupError as exc:
        found.smtp_error = str(exc)
    else:
        _probe_smtp(found, local_name, timeout, try_tls)
    if api is not None:
        _probe_api(found, api, timeout)
    return found
