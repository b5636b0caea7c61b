"""The HTTP application: everything mailsrv answers on its web listener.

The ASMX automation layer under /Services, and beside it the web interface: Login.aspx and
webmail (services.web).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.routing import Mount

from services.asmx.endpoint import AsmxApp
from services.asmx.registry import load_services
from services.routing import ignore_case
from services.web.routes import web_routes

if TYPE_CHECKING:
    from mailsrv.server import MailServer

# The WSDL documents we serve, one per service: the contract at run time.
WSDL_DIR = Path(__file__).resolve().parent.parent / "wsdl"


def create_app(server: MailServer) -> Starlette:
    """Build the app; raises if a served operation has no handler (see services.asmx.registry)."""
    asmx = AsmxApp(server, load_services(WSDL_DIR), server.config.web.max_request_bytes)
    return Starlette(routes=[ignore_case(Mount("/Services", app=asmx)), *web_routes(server)])
