"""Login.aspx, logout, and the session cookie and CSRF check every signed-in page relies on.

Login.aspx takes the fields of SmarterMail's documented auto-login form (`email`, `password`,
`shortcutLink=autologin`) from any origin, so a hosting panel's "Log into your mail" link works
unchanged: it is the one state-changing POST without a CSRF token, as it must be to work at all.
"""
from __future__ import annotations

import secrets

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from mailsrv.errors import MailsrvError, ResultCode
from mailsrv.server import MailServer
from mailsrv.web_sessions import SESSION_LIFETIME, SignedIn
from services.web.render import page, redirect, security_headers

COOKIE = "mailsrv_session"
INBOX_URL = "/Mail"
LOGIN_URL = "/Login.aspx"


def client_ip(request: Request) -> str:
    """The TCP peer's address (no proxy headers are trusted): what the brute-force limit counts."""
    return request.client.host if request.client else ""


def _token(request: Request) -> str | None:
    return request.cookies.get(COOKIE)


async def signed_in(server: MailServer, request: Request) -> SignedIn | None:
    return await run_in_threadpool(server.web_sessions.find, _token(request))


def csrf_ok(session: SignedIn, form: FormData) -> bool:
    sent = form.get("csrf")
    return isinstance(sent, str) and secrets.compare_digest(sent.encode(), session.csrf_token.encode())


def too_large(request: Request, limit: int) -> Response | None:
    """413 when the declared body is over `limit` bytes, before any of it is parsed."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return PlainTextResponse(f"The request body is larger than {limit} bytes.", 413, headers=security_headers())
    return None


def csrf_refused() -> Response:
    return PlainTextResponse("This form has expired or did not come from this site; reload the page and try again.",
                             403, headers=security_headers())


class SignInPages:
    def __init__(self, server: MailServer) -> None:
        self.server = server

    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            return page(request, "login.html", {"email": "", "error": ""})
        refusal = too_large(request, self.server.config.web.max_request_bytes)
        if refusal is not None:
            return refusal
        form = await request.form()
        email, password = str(form.get("email") or ""), str(form.get("password") or "")
        try:
            token = await run_in_threadpool(self.server.web_sessions.sign_in, email, password, client_ip(request))
        except MailsrvError as exc:
            if exc.code not in (ResultCode.LOGIN_FAILED, ResultCode.LOGIN_LOCKED):
                raise
            status = 429 if exc.code == ResultCode.LOGIN_LOCKED else 401
            return page(request, "login.html", {"email": email, "error": exc.message}, status)
        response = redirect(INBOX_URL)
        # Lax: the cookie goes with top-level navigations (the auto-login's redirect into the
        # inbox, a link from another site) but never with another site's POST or fetch.
        response.set_cookie(COOKIE, token, max_age=int(SESSION_LIFETIME.total_seconds()), path="/",
                            secure=request.url.scheme == "https", httponly=True, samesite="lax")
        return response

    async def logout(self, request: Request) -> Response:
        session = await signed_in(self.server, request)
        if session is not None:
            refusal = too_large(request, self.server.config.web.max_request_bytes)
            if refusal is not None:
                return refusal
            if not csrf_ok(session, await request.form()):
                return csrf_refused()
            await run_in_threadpool(self.server.web_sessions.sign_out, _token(request))
        response = redirect(LOGIN_URL)
        response.delete_cookie(COOKIE, path="/", secure=request.url.scheme == "https", httponly=True, samesite="lax")
        return response
