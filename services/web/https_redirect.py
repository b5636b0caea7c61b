"""Plain HTTP sends the sign-in pages to the HTTPS listener (`[web] https_redirect`).

A password typed into a page served over plain HTTP travels in the clear, and so would the session
cookie it sets: Login.aspx and the administration pages (/admin/) answer plain HTTP with a 307 to
the same path on the HTTPS listener (307 keeps the method, so a control panel's auto-login POST
still arrives). The SOAP services stay on both: control panels call them where they are told to.
"""
from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from services.web.render import security_headers
from services.web.signin import LOGIN_URL

ADMIN_PREFIX = "/admin"


def is_sign_in_page(path: str) -> bool:
    lowered = path.lower()  # paths match in any case, as under IIS (services.routing)
    return lowered == LOGIN_URL.lower() or lowered == ADMIN_PREFIX or lowered.startswith(ADMIN_PREFIX + "/")


def _host_only(host: str) -> str:
    """The Host header without its port ("[::1]:9998" -> "[::1]")."""
    if host.startswith("["):
        return host[:host.find("]") + 1]
    return host.rsplit(":", 1)[0]


class SignInOverHttps:
    """ASGI middleware: a plain-HTTP request for a sign-in page is redirected to `https_port`."""

    def __init__(self, app: ASGIApp, https_port: int) -> None:
        self.app = app
        self.https_port = https_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["scheme"] != "http" or not is_sign_in_page(scope["path"]):
            await self.app(scope, receive, send)
            return
        server = scope.get("server") or ("localhost", 0)
        host = _host_only(Headers(scope=scope).get("host") or server[0])
        port = "" if self.https_port == 443 else f":{self.https_port}"
        query = scope.get("query_string", b"").decode("latin-1")
        url = f"https://{host}{port}{scope['path']}" + (f"?{query}" if query else "")
        await RedirectResponse(url, 307, headers=security_headers())(scope, receive, send)
