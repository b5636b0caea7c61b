"""General Settings (the seed's tabs) and Default Domain Settings: each tab is one
SetRequestedSystemSettings / SetRequestedDomainDefaults call with the tab's keys."""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from mailsrv.core.errors import MailsrvError
from mailsrv.directory.domains import Domains
from mailsrv.directory.system_settings import DISABLED, ENABLED, REQUIRE_SPF, SystemSettings
from mailsrv.directory.web_sessions import SignedIn
from services.web.admin.domains import BOOL, TABS as DOMAIN_TABS, Setting
from services.web.admin.site import AdminSite, call, field_errors, text
from services.web.render import redirect

ON_OFF = [(ENABLED, "Enabled"), (DISABLED, "Disabled")]
POLICY = [(ENABLED, "Enabled"), (REQUIRE_SPF, "Enabled when the sender passes SPF"), (DISABLED, "Disabled")]

SYSTEM_TABS: dict[str, tuple[str, list[Setting]]] = {
    "security": ("Security", [
        Setting("catchalls", "Catch-alls", ON_OFF, "(Disabled: no domain's catch-all receives mail)"),
        Setting("bouncing", "Bouncing", POLICY), Setting("autoresponders", "Auto-responders", POLICY),
        Setting("requiresmtpauthforlocalsenders", "Require SMTP authentication for local senders", BOOL)]),
    "relay": ("Relay", [
        Setting("relay", "Allow relay for", [("Nobody", "Nobody"), ("AuthenticatedUsers", "Authenticated users")])]),
    "delivery": ("Delivery", [
        Setting("smtphostname", "Server host name"),
        Setting("retryminutes", "Delivery retry times (minutes)", hint="(comma-separated, e.g. 10,10,10,1440)"),
        Setting("maxmessagesize", "Maximum message size (KB)", hint="(0: none)"),
        Setting("maxrecipients", "Maximum recipients per message", hint="(0: none)"),
        Setting("outboundips", "Outbound IP addresses", hint="(comma-separated; empty: the system's choice)")]),
    "gateways": ("Gatewaying", [
        Setting("gatewayenabled", "Send remote mail through the outgoing gateways", BOOL),
        Setting("gatewaybalance", "Balance", [("RoundRobin", "Round robin"), ("Failover", "Failover"),
                                              ("LeastQueued", "Least queued")])]),
}
DEFAULT_TABS = {tab: (label, [Setting(f"default{s.key}", s.label, s.choices, s.hint) for s in keys])
                for tab, (label, keys) in DOMAIN_TABS.items()}



class SettingsPages:
    def __init__(self, site: AdminSite, system_settings: SystemSettings, domains: Domains) -> None:
        self.site = site
        self.system_settings = system_settings
        self.domains = domains

    async def general(self, request: Request, session: SignedIn) -> Response:
        return await self._tabs(request, session, "/admin/settings", "General Settings", SYSTEM_TABS,
                                lambda keys: call(self.system_settings.read_requested, session.actor, keys),
                                lambda pairs: call(self.system_settings.set_requested, session.actor, pairs))

    async def defaults(self, request: Request, session: SignedIn) -> Response:
        return await self._tabs(request, session, "/admin/defaults", "Default Domain Settings", DEFAULT_TABS,
                                lambda keys: call(self.domains.requested_defaults, session.actor, keys),
                                lambda pairs: call(self.domains.set_requested_defaults, session.actor, pairs))

    async def _tabs(self, request: Request, session: SignedIn, url: str, title: str,
                    tabs: dict[str, tuple[str, list[Setting]]],
                    read: Callable[[list[str]], Awaitable[list[str]]],
                    assign: Callable[[list[str]], Awaitable[None]]) -> Response:
        tab = request.query_params.get("tab", "")
        tab = tab if tab in tabs else next(iter(tabs))
        keys = [s.key for s in tabs[tab][1]]
        errors: dict[str, str] = {}
        if request.method == "POST":
            form = await request.form()
            values = {key: text(form, key) for key in keys}
            try:
                await assign([f"{key}={value}" for key, value in values.items()])
                return redirect(f"{url}?" + urlencode({"tab": tab, "notice": "Saved."}))
            except MailsrvError as exc:
                errors = field_errors(exc, keys)
        else:
            values = dict(_pairs(await read(keys)))
        return self.site.render(request, session, "admin/settings.html", {
            "title": title, "url": url, "tab": tab, "tabs": tabs, "values": values, "errors": errors,
            "notice": request.query_params.get("notice", "")}, 400 if errors else 200)


def _pairs(assignments: Iterable[str]) -> Iterable[tuple[str, str]]:
    for pair in assignments:
        key, _, value = pair.partition("=")
        yield key.lower(), value
