"""Login.aspx, logout, and the session cookie and CSRF check every signed-in page relies on.

Login.aspx takes the fields of SmarterMail's documented auto-login form (`email`, `password`,
`shortcutLink=autologin`) from any origin, so a hosting panel's "Log into your mail" link works
unchanged: it is the one state-changing POST without a CSRF token, as it must be to work at all.
"""
from __future__ import annotations

import secrets
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from mailsrv.core.actor import Actor, Role
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.directory.web_sessions import SESSION_LIFETIME, SignedIn, WebSessions
from services.bodies import BodyTooLarge, counted
from services.web.render import page, redirect, security_headers

COOKIE = "mailsrv_session"
INBOX_URL = "/Mail"
LOGIN_URL = "/Login.aspx"
ADMIN_URL = "/admin/"


def mail_landing(actor: Actor) -> str:
    """Login.aspx: a system administrator (no mailbox) lands in the administration pages."""
    return ADMIN_URL if actor.role is Role.SYSTEM_ADMIN else INBOX_URL


def admin_landing(actor: Actor) -> str:
    """/admin/login: administrators of either kind land in the administration pages, users in their mail."""
    return INBOX_URL if actor.role is Role.USER else ADMIN_URL


def client_ip(request: Request) -> str:
    """The TCP peer's address (no proxy headers are trusted): what the brute-force limit counts."""
    return request.client.host if request.client else ""


def _token(request: Request) -> str | None:
    return request.cookies.get(COOKIE)


async def signed_in(web_sessions: WebSessions, request: Request) -> SignedIn | None:
    return await run_in_threadpool(web_sessions.find, _token(request))


def session_started(request: Request, token: str, url: str) -> Response:
    """The redirect to `url` that hands the browser a new session's cookie."""
    response = redirect(url)
    # Lax: the cookie goes with top-level navigations (the auto-login's redirect into the
    # inbox, a link from another site) but never with another site's POST or fetch.
    response.set_cookie(COOKIE, token, max_age=int(SESSION_LIFETIME.total_seconds()), path="/",
                        secure=request.url.scheme == "https", httponly=True, samesite="lax")
    return response


def csrf_ok(session: SignedIn, request: Request) -> bool:
    """The session's token is in the form's URL (`?csrf=`), so it is checked before a byte of the
    body is read: a forged POST never gets its upload parsed or spooled to disk."""
    sent = request.query_params.get("csrf", "")
    return secrets.compare_digest(sent.encode(), session.csrf_token.encode())


def csrf_refused() -> Response:
    return PlainTextResponse("This form has expired or did not come from this site; reload the page and try again.",
                             403, headers=security_headers())


async def checked_post(session: SignedIn, request: Request, body_limit: int | None) -> Request | Response:
    """A signed-in POST with its form parsed within `body_limit` (handlers read it from the cache),
    or the refusal: 403 without the session's CSRF token, 413 past the limit."""
    if not csrf_ok(session, request):
        return csrf_refused()
    request = counted(request, body_limit)
    try:
        await request.form()
    except BodyTooLarge as exc:
        return exc.response(security_headers())
    return request


class SignInPages:
    def __init__(self, web_sessions: WebSessions, max_request_bytes: int) -> None:
        self.web_sessions = web_sessions
        self.max_request_bytes = max_request_bytes  # [web] max_request_bytes, for the login form

    async def login(self, request: Request) -> Response:
        return await self.sign_in(request, "login.html", mail_landing)

    async def sign_in(self, request: Request, template: str, landing: Callable[[Actor], str]) -> Response:
        """The login form `template` and its POST, which lands the caller on `landing(actor)`."""
        if request.method == "GET":
            return page(request, template, {"email": "", "error": ""})
        try:
            form = await counted(request, self.max_request_bytes).form()
        except BodyTooLarge as exc:
            return exc.response(security_headers())
        email, password = str(form.get("email") or ""), str(form.get("password") or "")
        try:
            token, actor = await run_in_threadpool(self.web_sessions.sign_in, email, password, client_ip(request))
        except MailsrvError as exc:
            if exc.code not in (ResultCode.LOGIN_FAILED, ResultCode.LOGIN_LOCKED):
                raise
            status = 429 if exc.code == ResultCode.LOGIN_LOCKED else 401
            return page(request, template, {"email": email, "error": exc.message}, status)
        return session_started(request, token, landing(actor))

    async def logout(self, request: Request) -> Response:
        session = await signed_in(self.web_sessions, request)
        if session is not None:
            if not csrf_ok(session, request):
                return csrf_refused()
            await run_in_threadpool(self.web_sessions.sign_out, _token(request))
        response = redirect(LOGIN_URL)
        response.delete_cookie(COOKIE, path="/", secure=request.url.scheme == "https", httponly=True, samesite="lax")
        return response
