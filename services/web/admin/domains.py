"""Domains: the list (search, paging), add, edit by tabs, disable, delete, and a domain's members."""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import Response

from mailsrv.core import settings
from mailsrv.core.errors import MailsrvError
from mailsrv.directory.aliases import Aliases, DomainAliases
from mailsrv.directory.domains import Domains
from mailsrv.directory.mailing_lists import MailingLists
from mailsrv.directory.users import Users
from mailsrv.directory.web_sessions import SignedIn
from mailsrv.mta.dns_check import DnsCheck
from services.web.admin.site import AdminSite, call, field_errors, text
from services.web.render import redirect

PAGE_SIZE = 50
BOOL = [("True", "Yes"), ("False", "No")]


@dataclass(frozen=True)
class Setting:
    key: str
    label: str
    choices: list[tuple[str, str]] | None = None  # None: a text or number field
    hint: str = ""


# The edit page's tabs: SetRequestedDomainSettings keys, as the seed's domain settings group them.
TABS: dict[str, tuple[str, list[Setting]]] = {
    "general": ("General", [
        Setting("catchall", "Catch-all alias", hint="(an existing alias of the domain; empty: none)"),
        Setting("listcommandaddress", "List command address"),
        Setting("domainurl", "Webmail URL"),
        Setting("serverip", "Server IP address")]),
    "limits": ("Limits", [
        Setting("maxusers", "Maximum users", hint="(0: unlimited)"),
        Setting("maxaliases", "Maximum aliases", hint="(0: unlimited)"),
        Setting("maxdomainaliases", "Maximum domain aliases", hint="(0: unlimited)"),
        Setting("maxlists", "Maximum mailing lists", hint="(0: unlimited)"),
        Setting("maxmailboxsize", "Default mailbox size (MB)", hint="(0: unlimited)"),
        Setting("maxmessagesize", "Maximum message size (KB)"),
        Setting("maxrecipients", "Maximum recipients per message")]),
    "technical": ("Technical", [
        Setting("requiresmtpauthentication", "Require SMTP Authentication", BOOL),
        Setting("enablecatchalls", "Catch-alls", [("Enabled", "Enabled"), ("Disabled", "Disabled")]),
        Setting("smtpport", "SMTP port"), Setting("popport", "POP3 port"), Setting("imapport", "IMAP port"),
        Setting("altsmtpportenabled", "Alternate SMTP port enabled", BOOL),
        Setting("altsmtpport", "Alternate SMTP port")]),
}
# The seed's "Add Domain" fields beside the name and the primary administrator.
NEW_DOMAIN_SETTINGS = [Setting("maxusers", "Maximum users", hint="(0: unlimited)"),
                       Setting("maxmailboxsize", "Default mailbox size (MB)", hint="(0: unlimited)")]


def domain_url(name: str, tab: str = "") -> str:
    return f"/admin/domains/{quote(name)}" + (f"?tab={tab}" if tab else "")


class DomainPages:
    def __init__(self, site: AdminSite, domains: Domains, users: Users, aliases: Aliases,
                 domain_aliases: DomainAliases, mailing_lists: MailingLists, dns_check: DnsCheck) -> None:
        self.site = site
        self.dns_check = dns_check
        self.domains = domains
        self.users = users
        self.aliases = aliases
        self.domain_aliases = domain_aliases
        self.mailing_lists = mailing_lists

    async def listing(self, request: Request, session: SignedIn) -> Response:
        search = request.query_params.get("q", "")
        try:
            number = max(int(request.query_params.get("page", "1")), 1)
        except ValueError:
            number = 1
        found = await call(self.domains.search, session.actor, search, (number - 1) * PAGE_SIZE, PAGE_SIZE)
        pages = max((found.total + PAGE_SIZE - 1) // PAGE_SIZE, 1)

        def page_url(n: int) -> str:
            return "/admin/domains?" + urlencode({"q": search, "page": n})
        return self.site.render(request, session, "admin/domains.html", {
            "found": found, "search": search, "number": number, "pages": pages,
            "previous": page_url(number - 1) if number > 1 else "", "next": page_url(number + 1) if number < pages else "",
            "domain_url": domain_url, "notice": request.query_params.get("notice", "")})

    async def new(self, request: Request, session: SignedIn) -> Response:
        values = {"name": "", "path": "", "admin": "postmaster", "first": "", "last": "",
                  **{s.key: str(settings.DOMAIN[s.key].default) for s in NEW_DOMAIN_SETTINGS}}
        if request.method == "GET":
            return self._new(request, session, values, {})
        form = await request.form()
        values = {key: text(form, key) for key in values}
        try:
            overrides = settings.parse_assignments(settings.DOMAIN, [f"{s.key}={values[s.key]}" for s in NEW_DOMAIN_SETTINGS])
            await call(self.domains.add, session.actor, values["name"], values["path"], values["admin"],
                       str(form.get("password") or ""), values["first"], values["last"], overrides)
        except MailsrvError as exc:
            return self._new(request, session, values, _new_domain_error(exc))
        return redirect("/admin/domains?" + urlencode({"q": values["name"], "notice": f"Domain {values['name']} added."}))

    def _new(self, request: Request, session: SignedIn, values: dict[str, str], errors: dict[str, str]) -> Response:
        return self.site.render(request, session, "admin/domain_new.html",
                                {"values": values, "errors": errors, "extra": NEW_DOMAIN_SETTINGS},
                                400 if errors else 200)

    async def edit(self, request: Request, session: SignedIn, errors: dict[str, str] | None = None) -> Response:
        name = request.path_params["name"]
        tab = request.query_params.get("tab", "general")
        if tab not in TABS and tab not in ("members", "dns"):
            tab = "general"
        errors = dict(errors or {})
        notice = request.query_params.get("notice", "")
        if request.method == "POST" and tab in TABS and not errors:
            form = await request.form()
            keys = [s.key for s in TABS[tab][1]]
            try:
                await call(self.domains.set_requested_settings, session.actor, name,
                           [f"{key}={text(form, key)}" for key in keys])
                return redirect(domain_url(name, tab) + "&notice=Saved.")
            except MailsrvError as exc:
                errors = field_errors(exc, keys)
        view = await call(self.domains.get, session.actor, name)
        context: dict[str, object] = {"domain": view, "tab": tab, "tabs": TABS, "errors": errors, "notice": notice,
                                      "domain_url": domain_url, "enabled": bool(view.settings.get("isenabled", True))}
        if request.method == "POST" and errors and tab in TABS:
            context["values"] = {key: text(await request.form(), key) for key in [s.key for s in TABS[tab][1]]}
        else:
            context["values"] = {key: str(value) for key, value in view.settings.items()}
        if tab == "dns":  # the live DNS check (mailsrv.mta.dns_check): lookups, so in a worker thread
            context["report"] = (await call(self.dns_check.check, session.actor, name)).as_dict()
        if tab == "members":
            context["members"] = await call(self.domains.members, session.actor, name)
            context["aliases"] = await call(self.aliases.list, session.actor, name)
            context["lists"] = await call(self.mailing_lists.names, session.actor, name)
        return self.site.render(request, session, "admin/domain.html", context, 400 if errors else 200)

    async def members(self, request: Request, session: SignedIn) -> Response:
        """Add or delete a user or an alias of the domain (AddUser, DeleteUser, AddAlias, DeleteAlias)."""
        name, form = request.path_params["name"], await request.form()
        action, actor = text(form, "action"), session.actor
        try:
            if action == "add-user":
                await call(self.users.add, actor, text(form, "user"), str(form.get("password") or ""), name,
                           text(form, "first"), text(form, "last"), form.get("domain_admin") == "on")
            elif action == "delete-user":
                await call(self.users.delete, actor, text(form, "user"), name)
            elif action == "add-alias":
                await call(self.aliases.add, actor, name, text(form, "alias"),
                           text(form, "addresses").replace(",", " ").split())
            elif action == "delete-alias":
                await call(self.aliases.delete, actor, name, text(form, "alias"))
        except MailsrvError as exc:
            return await self.edit(request, session, {action: exc.message})
        return redirect(domain_url(name, "members") + "&" + urlencode({"notice": "Saved."}))

    async def state(self, request: Request, session: SignedIn) -> Response:
        name = request.path_params["name"]
        enable = (await request.form()).get("enabled") == "True"
        await call(self.domains.set_enabled, session.actor, name, enable)
        return redirect(domain_url(name, "general") + "&" + urlencode(
            {"notice": f"Domain {'enabled' if enable else 'disabled'}."}))

    async def delete(self, request: Request, session: SignedIn) -> Response:
        name = request.path_params["name"]
        if request.method == "GET":
            view = await call(self.domains.get, session.actor, name)
            return self.site.render(request, session, "admin/domain_delete.html", {"domain": view})
        form = await request.form()
        await call(self.domains.delete, session.actor, name, form.get("delete_files") == "True")
        return redirect("/admin/domains?" + urlencode({"notice": f"Domain {name} deleted."}))


def _new_domain_error(exc: MailsrvError) -> dict[str, str]:
    """The add form's field a refusal of domains.add belongs to, read from what its message names."""
    message = exc.message.lower()
    for field, words in (("password", ("password",)), ("admin", ("administrator user name", "user name")),
                         ("path", ("path", "directory")), ("name", ("domain",))):
        if any(word in message for word in words):
            return {field: exc.message}
    return field_errors(exc, [s.key for s in NEW_DOMAIN_SETTINGS])
