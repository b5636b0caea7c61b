"""The administration pages' routes under /admin/."""
from __future__ import annotations

from typing import Protocol

from starlette.routing import BaseRoute, Route

from mailsrv.core.clock import Clock
from mailsrv.core.config import Config
from mailsrv.directory.incoming_gateways import IncomingGateways
from mailsrv.directory.web_sessions import WebSessions
from mailsrv.mta.dns_check import DnsCheck
from services.asmx.call import Engine
from services.web.admin.administrators import AdministratorPages
from services.web.admin.domains import DomainPages
from services.web.admin.gateways import GatewayPages
from services.web.admin.ip_lists import IpListPages
from services.web.admin.propagation import PropagationPages
from services.web.admin.settings_pages import SettingsPages
from services.web.admin.setup import SetupPages
from services.web.admin.site import ADMIN_LOGIN_URL, SETUP_URL, AdminSite
from services.web.admin.spool import SpoolPages
from services.web.admin.traffic import TrafficPages
from services.web.signin import SignInPages, admin_landing


class AdminEngine(Engine, Protocol):
    """What the administration pages call: the engine objects the SOAP operations call, and these."""
    config: Config
    clock: Clock
    web_sessions: WebSessions
    incoming_gateways: IncomingGateways
    dns_check: DnsCheck


def admin_routes(engine: AdminEngine, signin: SignInPages) -> list[BaseRoute]:
    site = AdminSite(engine.web_sessions, engine.config.web.max_request_bytes)
    setup = SetupPages(site, engine.admins, engine.system_settings, engine.web_sessions, engine.status, engine.config)
    domains = DomainPages(site, engine.domains, engine.users, engine.aliases, engine.domain_aliases, engine.mailing_lists,
                          engine.dns_check)
    settings = SettingsPages(site, engine.system_settings, engine.domains)
    administrators = AdministratorPages(site, engine.admins, engine.auth, engine.web_sessions)
    spool = SpoolPages(site, engine.spool_control)
    propagation = PropagationPages(site, engine.global_update, engine.domains)
    gateways = GatewayPages(site, engine.gateways, engine.incoming_gateways, engine.config)
    ip_lists = IpListPages(site, engine.address_lists)
    traffic = TrafficPages(site, engine.stats, engine.user_activity, engine.domains, engine.clock)

    async def login(request):  # type: ignore[no-untyped-def]
        return await signin.sign_in(request, "admin/login.html", admin_landing)

    get, both = ["GET"], ["GET", "POST"]
    return [
        Route(ADMIN_LOGIN_URL, login, methods=both),
        Route(SETUP_URL, site.page(setup.wizard, during_setup=True), methods=both),
        Route("/admin/", site.page(setup.dashboard, system_only=False), methods=get),
        Route("/admin/domains", site.page(domains.listing, system_only=False), methods=get),
        Route("/admin/domains/new", site.page(domains.new), methods=both),
        Route("/admin/domains/{name}", site.page(domains.edit, system_only=False), methods=both),
        Route("/admin/domains/{name}/members", site.page(domains.members, system_only=False), methods=["POST"]),
        Route("/admin/domains/{name}/state", site.page(domains.state), methods=["POST"]),
        Route("/admin/domains/{name}/delete", site.page(domains.delete), methods=both),
        Route("/admin/settings", site.page(settings.general), methods=both),
        Route("/admin/defaults", site.page(settings.defaults), methods=both),
        Route("/admin/propagation", site.page(propagation.page), methods=get),
        Route("/admin/propagation", site.page(propagation.start), methods=["POST"]),
        Route("/admin/gateways", site.page(gateways.listing), methods=get),
        Route("/admin/gateways", site.page(gateways.change), methods=["POST"]),
        Route("/admin/ip-lists", site.page(ip_lists.listing), methods=get),
        Route("/admin/ip-lists", site.page(ip_lists.change), methods=["POST"]),
        Route("/admin/administrators", site.page(administrators.listing), methods=get),
        Route("/admin/administrators/own", site.page(administrators.own), methods=["POST"]),
        Route("/admin/administrators/add", site.page(administrators.add), methods=["POST"]),
        Route("/admin/administrators/change", site.page(administrators.change), methods=["POST"]),
        Route("/admin/spool", site.page(spool.listing), methods=get),
        Route("/admin/spool", site.page(spool.action), methods=["POST"]),
        Route("/admin/traffic", site.page(traffic.page, system_only=False), methods=get),
        Route("/admin/traffic.csv", site.page(traffic.csv, system_only=False), methods=get),
    ]
