"""The spool: messages waiting, with attempts, next attempt and last error; reset retry counts,
hold, release and delete, for the ticked messages or all of them (svcSpoolAdmin's calls)."""
from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from mailsrv.directory.web_sessions import SignedIn
from mailsrv.mta.spool_control import SpoolControl
from services.web.admin.site import AdminSite, call
from services.web.render import redirect

SHOWN = 500  # the oldest ones; the dashboard shows the whole count


class SpoolPages:
    def __init__(self, site: AdminSite, spool_control: SpoolControl) -> None:
        self.site = site
        self.spool_control = spool_control

    async def listing(self, request: Request, session: SignedIn) -> Response:
        entries = await call(self.spool_control.list, session.actor, SHOWN)
        return self.site.render(request, session, "admin/spool.html",
                                {"entries": entries, "shown": SHOWN, "notice": request.query_params.get("notice", "")})

    async def action(self, request: Request, session: SignedIn) -> Response:
        form = await request.form()
        action, ids = str(form.get("action") or ""), [str(i) for i in form.getlist("id")]
        every = str(form.get("scope") or "") == "all"
        if every and action != "reset":  # reset_retries takes "no IDs" as every message; the others need them
            ids = [entry.id for entry in await call(self.spool_control.list, session.actor, SHOWN)]
        actor, control = session.actor, self.spool_control
        if action == "reset":
            count = await call(control.reset_retries, actor, [] if every else ids)
            notice = f"{count} recipient{'' if count == 1 else 's'} due now."
        elif action in ("hold", "release", "delete"):
            await call(getattr(control, action), actor, ids)
            notice = f"{len(ids)} message{'' if len(ids) == 1 else 's'}: {action} done."
        else:
            notice = "Choose an action."
        return redirect("/admin/spool?" + urlencode({"notice": notice}))
