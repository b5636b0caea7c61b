"""First start: the setup wizard the factory login is led to, and the dashboard after it."""
from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from mailsrv.core import settings
from mailsrv.core.actor import Role
from mailsrv.core.config import Config
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.directory import passwords
from mailsrv.directory.admins import Admins
from mailsrv.directory.system_settings import SystemSettings
from mailsrv.directory.web_sessions import SignedIn, WebSessions
from mailsrv.mta.status import ServerStatus
from services.web.admin.site import AdminSite, call, text
from services.web.render import redirect
from services.web.signin import client_ip, session_started

# Which wizard field an engine refusal belongs next to.
_FIELD_OF_CODE = {ResultCode.INVALID_USER_NAME: "username", ResultCode.ADMIN_EXISTS: "username",
                  ResultCode.PASSWORD_RULES: "password", ResultCode.INVALID_SETTING: "hostname"}

_STATUS_KEYS = ["smtpstatus", "submissionstatus", "popstatus", "imapstatus", "spoolcount", "spoololdestminutes",
                "messagesreceivedtoday", "messagessenttoday", "blockedaddresses", "domains", "users",
                "websessions", "version"]


@dataclass(frozen=True)
class DnsRecord:
    name: str
    kind: str
    value: str
    why: str


def dns_summary(host: str) -> list[DnsRecord]:
    """The records the seed's "Proper DNS Settings" asks for, for this host name (DOMAIN stands for
    each domain the server will receive mail for)."""
    return [DnsRecord(host, "A", "this server's public IPv4 address", "clients and other servers find the server"),
            DnsRecord("(the server's IP address)", "PTR", host, "receiving servers check the sender's reverse DNS"),
            DnsRecord("DOMAIN", "MX", f"10 {host}.", "mail for DOMAIN is delivered here"),
            DnsRecord("DOMAIN", "TXT", "v=spf1 mx -all", "SPF: only the MX hosts send DOMAIN's mail"),
            DnsRecord("_dmarc.DOMAIN", "TXT", "v=DMARC1; p=none", "DMARC: what receivers do with failures")]


class SetupPages:
    def __init__(self, site: AdminSite, admins: Admins, system_settings: SystemSettings, web_sessions: WebSessions,
                 status: ServerStatus, config: Config) -> None:
        self.site = site
        self.admins = admins
        self.system_settings = system_settings
        self.web_sessions = web_sessions
        self.status = status
        self.config = config

    async def wizard(self, request: Request, session: SignedIn) -> Response:
        host = (await call(self.system_settings.values))["smtphostname"]
        values = {"username": "", "hostname": "" if host == "localhost" else host}
        if request.method == "GET":
            return self._wizard(request, session, values, {})
        form = await request.form()
        values = {"username": text(form, "username"), "hostname": text(form, "hostname")}
        if str(form.get("password") or "") != str(form.get("confirm") or ""):
            return self._wizard(request, session, values, {"confirm": "The two passwords differ."})
        try:
            # Both checked before anything changes: a refused host name leaves the factory login as it was.
            changes = settings.parse_assignments(self.system_settings.table, [f"smtphostname={values['hostname']}"])
            # The engine call `mailsrv admin reset` makes: the primary gets this login, setup is complete.
            await call(self.admins.reset_primary, values["username"], str(form.get("password") or ""))
        except MailsrvError as exc:
            return self._wizard(request, session, values, {_FIELD_OF_CODE.get(exc.code, ""): exc.message})
        await call(self.system_settings.update, changes)
        # The new login ended every session of the factory one; this browser goes on under the new one.
        token, _ = await call(self.web_sessions.sign_in, values["username"], str(form.get("password")),
                              client_ip(request))
        return session_started(request, token, "/admin/?setup=done")

    def _wizard(self, request: Request, session: SignedIn, values: dict[str, str], errors: dict[str, str]) -> Response:
        return self.site.render(request, session, "admin/setup.html",
                                {"values": values, "errors": errors, "min_length": passwords.MIN_LENGTH,
                                 "records": dns_summary(values["hostname"] or "mail.example.com")},
                                400 if errors else 200)

    async def dashboard(self, request: Request, session: SignedIn) -> Response:
        if session.actor.role is not Role.SYSTEM_ADMIN:  # the server-wide figures are not a domain's
            return redirect("/admin/domains")
        pairs = await call(self.status.request, session.actor, _STATUS_KEYS)
        status = dict(pair.split("=", 1) for pair in pairs)
        host = (await call(self.system_settings.values))["smtphostname"]
        warnings = []
        if host == "localhost":
            warnings.append("The server's host name is 'localhost': other servers will refuse its mail. "
                            "Set it under General Settings.")
        if not self.config.tls.cert_file:
            warnings.append("TLS uses a self-signed certificate: mail clients will warn. "
                            "Set [tls] cert_file and key_file in mailsrv.toml.")
        notice = "Setup is complete: the factory login admin/admin no longer works." \
            if request.query_params.get("setup") == "done" else ""
        return self.site.render(request, session, "admin/dashboard.html",
                                {"status": status, "warnings": warnings, "host": host, "notice": notice})
