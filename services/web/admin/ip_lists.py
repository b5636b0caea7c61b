"""The IP whitelist and blacklist (per protocol) and the SMTP-authentication bypass list: the
calls of svcServerAdmin's SetWhitelistEntry, SetBlacklistEntry and AddSmtpAuthenticationBypass."""
from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from mailsrv.core.errors import MailsrvError
from mailsrv.directory.address_lists import BLACKLIST, PROTOCOLS, SMTP_BYPASS, WHITELIST, AddressLists
from mailsrv.directory.web_sessions import SignedIn
from services.web.admin.site import AdminSite, call, text
from services.web.render import redirect

LISTS = [(WHITELIST, "IP whitelist", "Per protocol: an SMTP-whitelisted client may relay without signing in and is exempt from the blacklist and the blocked senders."),
         (BLACKLIST, "IP blacklist", "Per protocol: refused at connect, before the greeting."),
         (SMTP_BYPASS, "SMTP authentication bypass", "May relay without SMTP authentication (e.g. a server using this one as its gateway).")]


class IpListPages:
    def __init__(self, site: AdminSite, address_lists: AddressLists) -> None:
        self.site = site
        self.address_lists = address_lists

    async def listing(self, request: Request, session: SignedIn, errors: dict[str, str] | None = None) -> Response:
        entries = {kind: await call(self.address_lists.ip_entries, session.actor, kind) for kind, _, _ in LISTS}
        return self.site.render(request, session, "admin/ip_lists.html", {
            "lists": LISTS, "entries": entries, "protocols": PROTOCOLS, "errors": errors or {},
            "notice": request.query_params.get("notice", "")}, 400 if errors else 200)

    async def change(self, request: Request, session: SignedIn) -> Response:
        form = await request.form()
        kind, action = text(form, "list"), text(form, "action")
        span = (text(form, "ip"), text(form, "start"), text(form, "end"))
        actor, lists = session.actor, self.address_lists
        try:
            if kind == SMTP_BYPASS:
                if action == "remove":
                    await call(lists.delete_bypass, actor, *span)
                else:
                    await call(lists.add_bypass, actor, *span, text(form, "description"))
            elif kind in (WHITELIST, BLACKLIST):
                # Every protocol off removes the entry (as SetWhitelistEntry does).
                protocols = {p: action != "remove" and form.get(p) == "on" for p in PROTOCOLS}
                await call(lists.set_ip_entry, actor, kind, *span, protocols, text(form, "description"))
        except MailsrvError as exc:
            return await self.listing(request, session, {kind: exc.message})
        return redirect("/admin/ip-lists?" + urlencode({"notice": "Saved."}))
