"""The HTTP application: everything mailsrv answers on its web listener.

The ASMX automation layer under /Services, and beside it the web interface: Login.aspx and
webmail, the administration pages under /admin/ (services.web) and the administrators' JSON API
(services.web.admin_api).
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from mailsrv.mta.list_commands import OneClickUnsubscribe
from mailsrv.webmail.service import Webmail
from services.asmx.endpoint import SERVICES_PREFIX, AsmxApp
from services.asmx.registry import load_services
from services.monitoring import monitoring_routes
from services.web.admin_api import admin_api_routes
from services.web.https_redirect import SignInOverHttps
from services.web.admin.routes import AdminEngine
from services.web.routes import web_routes

# The WSDL documents we serve, one per service: the contract at run time.
WSDL_DIR = Path(__file__).resolve().parent.parent / "wsdl"


class AppEngine(AdminEngine, Protocol):
    """What the HTTP application takes from the wiring (MailServer, the composition root, has it):
    what the ASMX operations and the administration pages call, and webmail's parts."""
    webmail: Webmail
    one_click: OneClickUnsubscribe


class _ServicesFirst:
    """Requests under /Services (in any case, as IIS matches paths) go straight to the ASMX app,
    the rest to Starlette. The ASMX app answers every error of its own, so Starlette's error and
    exception middleware and its router had nothing to do for a SOAP call but cost ~10% of a quick
    one's CPU; the sign-in redirect never concerns /Services."""

    def __init__(self, services: ASGIApp, pages: Starlette) -> None:
        self.services = services
        self.pages = pages

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"][:len(SERVICES_PREFIX)].lower() == SERVICES_PREFIX:
            await self.services(scope, receive, send)
        else:
            await self.pages(scope, receive, send)


def create_app(server: AppEngine, https_port: int | None = None) -> ASGIApp:
    """Build the app; raises if a served operation has no handler (see services.asmx.registry).
    With `https_port`, plain HTTP redirects the sign-in pages to HTTPS on that port."""
    asmx = AsmxApp(server, load_services(WSDL_DIR), server.config.web.max_request_bytes,
                   server.config.web.max_list_request_bytes)
    middleware = [Middleware(SignInOverHttps, https_port=https_port)] if https_port else []
    pages = Starlette(routes=[*monitoring_routes(server.status, server.config.metrics),
                              *web_routes(server, server.webmail, server.one_click),
                              *admin_api_routes(server.auth, server.dns_check)],
                      middleware=middleware)
    return _ServicesFirst(asmx, pages)
