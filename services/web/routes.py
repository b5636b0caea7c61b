"""The web interface's routes. Paths match in any case, as they do under IIS (/login.aspx, /LOGIN.ASPX)."""
from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from mailsrv.mta.list_addresses import UNSUBSCRIBE_PATH
from mailsrv.mta.list_commands import OneClickUnsubscribe
from mailsrv.webmail.service import Webmail
from services.routing import ignore_case
from services.web.admin.routes import AdminEngine, admin_routes
from services.web.list_pages import ListPages
from services.web.mail_pages import MailPages
from services.web.render import redirect
from services.web.signin import ADMIN_URL, INBOX_URL, LOGIN_URL, SignInPages, signed_in


def page_route(path: str, endpoint: Callable[[Request], Awaitable[Response]], methods: list[str]) -> Route:
    return ignore_case(Route(path, endpoint, methods=methods))


def web_routes(engine: AdminEngine, webmail: Webmail, one_click: OneClickUnsubscribe) -> list[BaseRoute]:
    web_sessions, config = engine.web_sessions, engine.config
    form_limit, message_kb = config.web.max_request_bytes, config.smtp.max_message_kb
    signin, mail = SignInPages(web_sessions, form_limit), MailPages(web_sessions, webmail)
    lists = ListPages(one_click)
    # A message being sent may be as large as SMTP accepts (0: no cap), plus the rest of the form.
    send_limit = message_kb * 1024 + form_limit if message_kb else None

    async def home(request: Request) -> Response:
        return redirect(INBOX_URL if await signed_in(web_sessions, request) else LOGIN_URL)

    return [
        Route("/", home, methods=["GET"]),
        page_route(LOGIN_URL, signin.login, ["GET", "POST"]),
        page_route("/Logout.aspx", signin.logout, ["POST"]),
        page_route("/Mail", mail.signed(mail.folder), ["GET"]),
        page_route("/Mail/Message", mail.signed(mail.message), ["GET"]),
        page_route("/Mail/Attachment", mail.signed(mail.attachment), ["GET"]),
        page_route("/Mail/Compose", mail.signed(mail.compose), ["GET"]),
        page_route("/Mail/Send", mail.signed(mail.send, send_limit), ["POST"]),
        page_route("/Mail/Action", mail.signed(mail.action, form_limit), ["POST"]),
        page_route(UNSUBSCRIBE_PATH, lists.unsubscribe, ["GET", "POST"]),
        Route("/admin", lambda request: redirect(ADMIN_URL), methods=["GET"]),
        *admin_routes(engine, signin),
    ]
