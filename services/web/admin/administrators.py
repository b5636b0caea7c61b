"""Administrators: changing one's own name and password (the seed's "Changing the System
Administrator Login", the current password verified first), the other system administrators and
their IP restrictions."""
from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.directory.admins import Admins
from mailsrv.directory.auth import Authenticator
from mailsrv.directory.web_sessions import SignedIn, WebSessions
from services.web.admin.site import AdminSite, call, text
from services.web.render import redirect
from services.web.signin import client_ip, session_started

_FIELD_OF_CODE = {ResultCode.INVALID_USER_NAME: "username", ResultCode.ADMIN_EXISTS: "username",
                  ResultCode.PASSWORD_RULES: "password", ResultCode.LOGIN_FAILED: "current",
                  ResultCode.LOGIN_LOCKED: "current"}


class AdministratorPages:
    def __init__(self, site: AdminSite, admins: Admins, auth: Authenticator, web_sessions: WebSessions) -> None:
        self.site = site
        self.admins = admins
        self.auth = auth
        self.web_sessions = web_sessions

    async def listing(self, request: Request, session: SignedIn, errors: dict[str, str] | None = None,
                      form: str = "") -> Response:
        admins = await call(self.admins.list, session.actor)
        return self.site.render(request, session, "admin/administrators.html", {
            "admins": admins, "errors": errors or {}, "failed_form": form,
            "notice": request.query_params.get("notice", "")}, 400 if errors else 200)

    async def own(self, request: Request, session: SignedIn) -> Response:
        form = await request.form()
        name = text(form, "username") or session.actor.login
        password = str(form.get("password") or "")
        if password != str(form.get("confirm") or ""):
            return await self.listing(request, session, {"confirm": "The two passwords differ."}, "own")
        try:
            # The brute-force limit applies: this form must not become a way to guess the password.
            await call(self.auth.login, session.actor.login, str(form.get("current") or ""), client_ip(request), "web")
            await call(self.admins.set_password, session.actor, name, password)
        except MailsrvError as exc:
            return await self.listing(request, session, {_FIELD_OF_CODE.get(exc.code, ""): exc.message}, "own")
        # The new login ended this administrator's sessions; this browser goes on under it.
        token, _ = await call(self.web_sessions.sign_in, name, password, client_ip(request))
        return session_started(request, token, "/admin/administrators?" + urlencode({"notice": "Your login was changed."}))

    async def add(self, request: Request, session: SignedIn) -> Response:
        form = await request.form()
        try:
            await call(self.admins.add, session.actor, text(form, "new_username"), str(form.get("new_password") or ""),
                       text(form, "description"))
        except MailsrvError as exc:
            field = {ResultCode.PASSWORD_RULES: "new_password"}.get(exc.code, "new_username")
            return await self.listing(request, session, {field: exc.message}, "add")
        return redirect("/admin/administrators?" + urlencode({"notice": f"{text(form, 'new_username')} added."}))

    async def change(self, request: Request, session: SignedIn) -> Response:
        """Delete an administrator, or add or remove one of its IP restrictions."""
        form = await request.form()
        name, action, network = text(form, "name"), text(form, "action"), text(form, "network")
        try:
            if action == "delete":
                await call(self.admins.delete, session.actor, name)
            elif action == "restrict":
                await call(self.admins.add_ip_restriction, session.actor, name, network, text(form, "description"))
            else:
                await call(self.admins.remove_ip_restriction, session.actor, name, network)
        except MailsrvError as exc:
            return await self.listing(request, session, {f"network-{name}": exc.message}, "change")
        return redirect("/admin/administrators?" + urlencode({"notice": "Saved."}))
