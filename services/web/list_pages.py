"""RFC 8058 one-click unsubscribe from a mailing list: `/List/Unsubscribe?token=…`, no login, no cookie.

The token (each copy of a post carries its subscriber's: mailsrv.mta.list_server) names the list and
the address. POST with the form field `List-Unsubscribe=One-Click` (what a mail client sends, and what
the page's button sends) unsubscribes, idempotently, without asking again; GET only shows the page
with that button, so a link scanner fetching the URL changes nothing. A bad or expired token is a 400
page, a list that does not allow unsubscribing a 403 one.
"""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from mailsrv.mta.list_commands import OneClickUnsubscribe
from services.bodies import BodyTooLarge, counted
from services.web.render import page

FORM_LIMIT = 4096  # the one field and some slack


class ListPages:
    def __init__(self, one_click: OneClickUnsubscribe) -> None:
        self.one_click = one_click

    async def unsubscribe(self, request: Request) -> Response:
        token = request.query_params.get("token", "")
        post = request.method == "POST"
        if post:
            try:
                form = await counted(request, FORM_LIMIT).form()
            except BodyTooLarge:
                return self._error(request, "The request is too large.", 413)
            if form.get("List-Unsubscribe") != "One-Click":
                return self._error(request, "This request is not a one-click unsubscribe.", 400)
        found = await run_in_threadpool(self.one_click.check, token, post)
        if found is None:
            return self._error(request, "This unsubscribe link is invalid or has expired.", 400)
        if not found.allowed:
            return self._error(request, f"{found.list_address} does not allow unsubscribing: ask its moderator.", 403)
        return page(request, "unsubscribe.html", {"token": token, "address": found.address,
                                                  "list_address": found.list_address, "done": post, "error": ""})

    @staticmethod
    def _error(request: Request, message: str, status: int) -> Response:
        return page(request, "unsubscribe.html", {"error": message}, status)
