"""What every administration page shares: who may see it (signed in, setup done, the right role),
the CSRF check and size cap of its POSTs, and the frame it is rendered in.

The factory login may open nothing but the setup wizard, as over SOAP it may call nothing but
SetSystemAdminPassword; a domain administrator sees its own domain's pages only (the engine's
rights checks refuse the rest; the navigation simply does not offer them)."""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from mailsrv.core import events
from mailsrv.core.actor import Role
from mailsrv.core.errors import MailsrvError
from mailsrv.directory.web_sessions import SignedIn, WebSessions
from services.web.render import page, redirect
from services.web.signin import INBOX_URL, checked_post, client_ip, signed_in

ADMIN_LOGIN_URL = "/admin/login"
SETUP_URL = "/admin/setup"

Handler = Callable[[Request, SignedIn], Awaitable[Response]]
T = TypeVar("T")


@dataclass(frozen=True)
class NavEntry:
    url: str
    label: str


SYSTEM_NAV = [NavEntry("/admin/", "Dashboard"), NavEntry("/admin/domains", "Domains"),
              NavEntry("/admin/settings", "General Settings"), NavEntry("/admin/defaults", "Default Domain Settings"),
              NavEntry("/admin/propagation", "Propagation"), NavEntry("/admin/gateways", "Gateways"),
              NavEntry("/admin/ip-lists", "IP lists"),
              NavEntry("/admin/administrators", "Administrators"), NavEntry("/admin/spool", "Spool"),
              NavEntry("/admin/traffic", "Bandwidth and traffic")]
DOMAIN_NAV = [NavEntry("/admin/domains", "My domain"), NavEntry("/admin/traffic", "Bandwidth and traffic")]


async def call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """An engine call (blocking: it reads the store) off the event loop."""
    return await run_in_threadpool(function, *args, **kwargs)


def field_errors(exc: MailsrvError, fields: Iterable[str]) -> dict[str, str]:
    """The error shown next to the field it names (the engine's messages quote the setting or
    field they refuse), or at the top of the form ("") when it names none."""
    lowered = exc.message.lower()
    for name in fields:
        if f"'{name}'" in lowered or f"setting {name}" in lowered:
            return {name: exc.message}
    return {"": exc.message}


class AdminSite:
    def __init__(self, web_sessions: WebSessions, max_request_bytes: int) -> None:
        self.web_sessions = web_sessions
        self.max_request_bytes = max_request_bytes

    def page(self, handler: Handler, system_only: bool = True, during_setup: bool = False) -> Callable[[Request], Awaitable[Response]]:
        """`handler` for administrators; `system_only`: system administrators only; `during_setup`:
        the one page the factory login may open (the wizard), which nobody else needs."""
        async def endpoint(request: Request) -> Response:
            session = await signed_in(self.web_sessions, request)
            if session is None:
                return redirect(ADMIN_LOGIN_URL)
            actor = session.actor
            if actor.role is Role.USER:
                return redirect(INBOX_URL)
            if actor.setup_pending != during_setup:
                return redirect(SETUP_URL if actor.setup_pending else "/admin/")
            if system_only and actor.role is not Role.SYSTEM_ADMIN:
                return self.render(request, session, "admin/error.html",
                                   {"message": "This page is for system administrators."}, 403)
            if request.method == "POST":
                checked = await checked_post(session, request, self.max_request_bytes)
                if isinstance(checked, Response):
                    return checked
                request = checked
            try:
                response = await handler(request, session)
            except MailsrvError as exc:  # a refusal the page did not show next to a field
                response = self.render(request, session, "admin/error.html", {"message": exc.message}, 400)
            if request.method == "POST":  # a change through the pages: logged as a SOAP one is
                events.emit("admin", by=actor.login, ip=client_ip(request), service="web",
                            operation=request.url.path, action=request.query_params.get("tab", ""),
                            status=response.status_code)
            return response
        return endpoint

    @staticmethod
    def render(request: Request, session: SignedIn, template: str, context: Mapping[str, Any],
               status: int = 200) -> Response:
        nav = [] if session.actor.setup_pending else (
            SYSTEM_NAV if session.actor.role is Role.SYSTEM_ADMIN else DOMAIN_NAV)
        return page(request, template, {"session": session, "nav": nav, "csrf": session.csrf_token,
                                        "path": request.url.path, "errors": {}, "notice": "", **context}, status)


def text(form: FormData, name: str) -> str:
    return str(form.get(name) or "").strip()

