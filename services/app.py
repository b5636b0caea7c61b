"""The HTTP application: everything mailsrv answers on its web listener.

The ASMX automation layer under /Services, and beside it the web interface: Login.aspx and
webmail (services.web).
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

from starlette.applications import Starlette
from starlette.routing import Mount

from mailsrv.core.config import Config
from mailsrv.directory.web_sessions import WebSessions
from mailsrv.webmail.service import Webmail
from services.asmx.call import Engine
from services.asmx.endpoint import AsmxApp
from services.asmx.registry import load_services
from services.monitoring import monitoring_routes
from services.routing import ignore_case
from services.web.routes import web_routes

# The WSDL documents we serve, one per service: the contract at run time.
WSDL_DIR = Path(__file__).resolve().parent.parent / "wsdl"


class AppEngine(Engine, Protocol):
    """What the HTTP application takes from the wiring (MailServer, the composition root, has it):
    what the ASMX operations call (services.asmx.call.Engine), and the web interface's parts."""
    config: Config
    web_sessions: WebSessions
    webmail: Webmail


def create_app(server: AppEngine) -> Starlette:
    """Build the app; raises if a served operation has no handler (see services.asmx.registry)."""
    asmx = AsmxApp(server, load_services(WSDL_DIR), server.config.web.max_request_bytes)
    return Starlette(routes=[ignore_case(Mount("/Services", app=asmx)),
                             *monitoring_routes(server.status, server.config.metrics),
                             *web_routes(server.web_sessions, server.webmail, server.config,
                                                        server.one_click)])
