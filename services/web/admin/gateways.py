"""Outgoing gateways and incoming gateways (backup MX / gateway for a primary), each with a Test
button: mailsrv.mta.server_probe, what `mailsrv gateway test` runs."""
from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from mailsrv.core.config import Config
from mailsrv.core.errors import MailsrvError
from mailsrv.directory.gateways import Gateways
from mailsrv.directory.incoming_gateways import DOMAIN_VERIFY, MODES, IncomingGateways
from mailsrv.directory.web_sessions import SignedIn
from mailsrv.mta.server_probe import ApiLogin, probe_server
from services.web.admin.site import AdminSite, call, text
from services.web.render import redirect

PROBE_TIMEOUT = 5  # seconds per step: the page answers within a few of them even for a dead server


class GatewayPages:
    def __init__(self, site: AdminSite, gateways: Gateways, incoming: IncomingGateways, config: Config) -> None:
        self.site = site
        self.gateways = gateways
        self.incoming = incoming
        self.config = config

    async def listing(self, request: Request, session: SignedIn, errors: dict[str, str] | None = None,
                      probe: object = None) -> Response:
        outgoing = await call(self.gateways.list, session.actor)
        incoming = await call(self.incoming.list, session.actor)
        return self.site.render(request, session, "admin/gateways.html", {
            "outgoing": outgoing, "incoming": incoming, "modes": MODES, "domain_verify": DOMAIN_VERIFY,
            "probe": probe, "errors": errors or {}, "notice": request.query_params.get("notice", "")},
            400 if errors else 200)

    async def change(self, request: Request, session: SignedIn) -> Response:
        form = await request.form()
        action, actor = text(form, "action"), session.actor
        try:
            if action == "add-outgoing":
                sm = (text(form, "sm_url"), text(form, "sm_user"), str(form.get("sm_password") or "")) \
                    if text(form, "sm_url") else None
                await call(self.gateways.add, actor, text(form, "address"), True, sm)
            elif action == "remove-outgoing":
                await call(self.gateways.remove, actor, text(form, "guid"))
            elif action == "add-incoming":
                await call(self.incoming.add, actor, {
                    "gatewayMode": text(form, "mode"), "IPAddress": text(form, "primary"),
                    "domainVerifyType": text(form, "domain_verify"),
                    "domainsToForward": text(form, "domains").replace(",", " ").split(),
                    "smarterMailURL": text(form, "api_url")})
            elif action == "remove-incoming":
                await call(self.incoming.remove, actor, text(form, "guid"))
            else:
                return await self.test(request, session)
        except MailsrvError as exc:
            return await self.listing(request, session, {action: exc.message})
        return redirect("/admin/gateways?" + urlencode({"notice": "Saved."}))

    async def test(self, request: Request, session: SignedIn) -> Response:
        form = await request.form()
        address, api_url = text(form, "address"), text(form, "api_url")
        api = ApiLogin(api_url, text(form, "api_user"), str(form.get("api_password") or "")) if api_url else None
        found = await call(probe_server, address, api, local_name=self.config.smtp.hostname,
                           nameservers=self.config.dns.nameservers, timeout=PROBE_TIMEOUT)
        return await self.listing(request, session, probe=found)
