"""The HTTP application: everything mailsrv answers on its web listener.

Today that is the ASMX automation layer under /Services; Login.aspx and the web interface will be
added here as further routes beside it.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp

from services.asmx.endpoint import AsmxApp
from services.asmx.registry import load_services

if TYPE_CHECKING:
    from mailsrv.server import MailServer

# The WSDL documents we serve, one per service: the contract at run time.
WSDL_DIR = Path(__file__).resolve().parent.parent / "wsdl"


class IgnoreCaseMount(Mount):
    """A Mount whose prefix matches in any case, as IIS paths do (/services, /SERVICES, ...)."""

    def __init__(self, path: str, app: ASGIApp) -> None:
        super().__init__(path, app=app)
        self.path_regex: re.Pattern[str] = re.compile(self.path_regex.pattern, re.IGNORECASE)


def create_app(server: MailServer) -> Starlette:
    """Build the app; raises if a served operation has no handler (see services.asmx.registry)."""
    asmx = AsmxApp(server, load_services(WSDL_DIR), server.config.web.max_request_bytes)
    return Starlette(routes=[IgnoreCaseMount("/Services", asmx)])
