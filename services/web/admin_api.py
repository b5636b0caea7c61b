"""JSON for administrators' scripts, independent of SOAP: `GET /admin/api/dns/<domain>`, the
domain's DNS check (mailsrv.mta.dns_check).

HTTP Basic (RFC 7617, UTF-8) carries the login, checked by the same engine call as a SOAP
operation's (`Authenticator.login`: the same brute-force limits); who may see which domain is the
engine's rule. Answers: 200 the report; 401 with WWW-Authenticate without a valid login; 429 while
the client is held back; 403 a domain (or anything) the login may not manage; 404 an unknown
domain; 400 a malformed domain name. A refusal's body is {"error": message, "code": result code}.
"""
from __future__ import annotations

import base64
import binascii

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from mailsrv.core.actor import Actor
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.directory.auth import Authenticator
from mailsrv.mta.dns_check import DnsCheck
from services.routing import ignore_case
from services.web.render import security_headers
from services.web.signin import client_ip

DNS_PATH = "/admin/api/dns/{domain}"
_CHALLENGE = {"WWW-Authenticate": 'Basic realm="mailsrv administration", charset="UTF-8"'}
_STATUS = {ResultCode.LOGIN_FAILED: 401, ResultCode.LOGIN_LOCKED: 429, ResultCode.PERMISSION_DENIED: 403,
           ResultCode.SETUP_REQUIRED: 403, ResultCode.DOMAIN_NOT_FOUND: 404, ResultCode.INVALID_DOMAIN_NAME: 400}


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(name, password) from an `Authorization: Basic …` header; None when absent or malformed."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        name, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (name, password) if sep else None


def _json(body: object, status: int = 200, challenge: bool = False) -> Response:
    return JSONResponse(body, status, headers={**security_headers(), **(_CHALLENGE if challenge else {})})


def refusal(exc: MailsrvError) -> Response:
    status = _STATUS.get(exc.code, 400)
    return _json({"error": exc.message, "code": int(exc.code)}, status, challenge=status == 401)


class AdminApi:
    def __init__(self, auth: Authenticator, dns_check: DnsCheck) -> None:
        self.auth = auth
        self.dns_check = dns_check

    async def _caller(self, request: Request) -> Actor:
        credentials = basic_credentials(request.headers.get("authorization", ""))
        if credentials is None:
            raise MailsrvError(ResultCode.LOGIN_FAILED, "Log in with HTTP Basic authentication as an administrator.")
        return await run_in_threadpool(self.auth.login, *credentials, client_ip(request))

    async def dns(self, request: Request) -> Response:
        try:
            actor = await self._caller(request)
            report = await run_in_threadpool(self.dns_check.check, actor, request.path_params["domain"])
        except MailsrvError as exc:
            return refusal(exc)
        return _json(report.as_dict())


def admin_api_routes(auth: Authenticator, dns_check: DnsCheck) -> list[BaseRoute]:
    api = AdminApi(auth, dns_check)
    return [ignore_case(Route(DNS_PATH, api.dns, methods=["GET"]))]
