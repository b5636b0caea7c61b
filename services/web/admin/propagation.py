"""Default Domain Settings propagation (svcGlobalUpdate): apply chosen defaults to every domain as
a background job, and follow its progress."""
from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from mailsrv.core.errors import MailsrvError
from mailsrv.directory.domains import Domains
from mailsrv.directory.propagation import NOT_PROPAGATED, GlobalUpdate
from mailsrv.directory.web_sessions import SignedIn
from services.web.admin.domains import TABS
from services.web.admin.site import AdminSite, call
from services.web.render import redirect

CHOICES = [setting for _, keys in TABS.values() for setting in keys if setting.key not in NOT_PROPAGATED]


class PropagationPages:
    def __init__(self, site: AdminSite, global_update: GlobalUpdate, domains: Domains) -> None:
        self.site = site
        self.global_update = global_update
        self.domains = domains

    async def page(self, request: Request, session: SignedIn, error: str = "") -> Response:
        status = dict(pair.split("=", 1) for pair in await call(self.global_update.status, session.actor))
        defaults = await call(self.domains.defaults, session.actor)
        return self.site.render(request, session, "admin/propagation.html", {
            "status": status, "choices": CHOICES, "defaults": defaults, "errors": {"": error} if error else {},
            "notice": request.query_params.get("notice", "")}, 400 if error else 200)

    async def start(self, request: Request, session: SignedIn) -> Response:
        """The ticked keys, each with its current default value."""
        form = await request.form()
        defaults = await call(self.domains.defaults, session.actor)
        chosen = [s.key for s in CHOICES if form.get(s.key) == "on"]
        try:
            await call(self.global_update.start, session.actor, [f"{key}={defaults[key]}" for key in chosen])
        except MailsrvError as exc:
            return await self.page(request, session, exc.message)
        return redirect("/admin/propagation?" + urlencode({"notice": "Propagation started."}))
