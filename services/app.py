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
from starlette.routing import Mount

from mailsrv.mta.list_commands import OneClickUnsubscribe
from mailsrv.webmail.service import Webmail
from services.asmx.endpoint import AsmxApp
from services.asmx.registry import load_services
from services.monitoring import monitoring_routes
from services.routing import ignore_case
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


def create_app(server: AppEngine, https_port: int | None = None) -> Starlette:
    """Build the app; raises if a served operation has no handler (see services.asmx.registry).
    With `https_port`, plain HTTP redirects the sign-in pages to HTTPS on that port."""
    asmx = AsmxApp(server, load_services(WSDL_DIR), server.config.web.max_request_bytes,
                   server.config.web.max_list_request_bytes)
    middleware = [Middleware(SignInOverHttps, https_port=https_port)] if https_port else []
    return Starlette(routes=[ignore_case(Mount("/Services", app=asmx)),
                             *monitoring_routes(server.status, server.config.metrics),
                             *web_routes(server, server.webmail, server.one_click),
                             *admin_api_routes(server.auth, server.dns_check)],
                     middleware=middleware)
