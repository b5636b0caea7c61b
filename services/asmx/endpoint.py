"""The ASGI application behind /Services: routes each request to its binding and answers it.

    GET  svcX.asmx                 help page          GET  svcX.asmx?WSDL      the WSDL
    GET  svcX.asmx?op=Name         operation page     POST svcX.asmx           SOAP 1.1 / 1.2
    GET  svcX.asmx/Name?a=..       HTTP GET binding   POST svcX.asmx/Name      HTTP POST binding

Service names, operation names in paths and query keys are matched ignoring case, as IIS does.
Request bodies over the configured limit are refused with 413 before any parsing: by Content-Length
when given, and by counting while reading otherwise; a SOAP request's refusal is a SOAP fault. The
limit is `[web] max_request_bytes`, or `max_list_request_bytes` for an operation declared to carry a
whole address list (services.asmx.access), known before the body by its SOAPAction (the SOAP 1.2
action parameter) or its HTTP POST path; the body must then call that operation. Every unexpected error is logged with its
traceback and answered with a generic message, never with internals.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from services.asmx import helppages, httpbind, soap
from services.asmx.call import Call, Engine
from services.asmx.codec import decode_request
from services.asmx.contract import Operation
from services.asmx.dispatch import invoke
from services.asmx.faults import SERVER_ERROR, RequestError
from services.asmx.registry import BoundService
from services.asmx.xmlutil import XML_CONTENT_TYPE
from services.bodies import BodyTooLarge, read_body

log = logging.getLogger(__name__)

# Where the services are (services.app sends every request whose path starts so to this app).
SERVICES_PREFIX = "/services/"
_PATH = re.compile(re.escape(SERVICES_PREFIX) + r"(?P<service>[^/]+)\.asmx(?:/(?P<operation>[^/]+))?", re.IGNORECASE)


def _client_host(scope: Scope) -> str:
    """The TCP peer's address (no proxy headers are trusted)."""
    client = scope.get("client")
    return client[0] if client else ""


def _media_type(header: str | None) -> tuple[str, Mapping[str, str]]:
    return soap.parse_content_type(header) if header else ("", {})


def _soap_headers(scope: Scope) -> tuple[str | None, str | None, str]:
    """(Content-Type, SOAPAction, Content-Length or ""), each header's first value, None when absent:
    one pass over the request's headers, where Starlette's Headers makes one a lookup."""
    content_type = soap_action = length = None
    for key, value in scope["headers"]:
        if key == b"content-type":
            if content_type is None:
                content_type = value.decode("latin-1")
        elif key == b"soapaction":
            if soap_action is None:
                soap_action = value.decode("latin-1")
        elif key == b"content-length" and length is None:
            length = value.decode("latin-1")
    return content_type, soap_action, length or ""


def _refusal(exc: Exception, label: str) -> tuple[str, str]:
    """(fault code, message) answering `exc`, raised by `label`: a request error's own; anything else
    is logged with its traceback and answered with a generic message (called in its except block)."""
    if isinstance(exc, RequestError):
        return exc.code, str(exc)
    log.exception("%s failed", label)
    return "Server", SERVER_ERROR


def _method_not_allowed(allowed: str) -> Response:
    return PlainTextResponse("Method not allowed.", 405, headers={"Allow": allowed})


class AsmxApp:
    """Serves every bound service over one engine, at /Services (services.app)."""

    def __init__(self, server: Engine, services: Mapping[str, BoundService], max_body: int,
                 max_list_body: int) -> None:
        self.engine = server
        self.services = {name.lower(): bound for name, bound in services.items()}
        self.max_body = max_body
        self.max_list_body = max_list_body
        # Each service's SOAP address in lower case: what _PATH matches without an operation.
        self._soap_paths = {f"{SERVICES_PREFIX}{name}.asmx": bound for name, bound in self.services.items()}

    def _limit(self, bound: BoundService, op: Operation | None) -> int:
        """The body limit of a request for `op` (None: not known before the body)."""
        access = bound.access.get(op.name) if op is not None else None
        return self.max_list_body if access is not None and access.address_list else self.max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A SOAP call, nearly every request, is read from the ASGI scope as it is and answered in one
        # coroutine: the Starlette Request, the route's regex, the closures and the response object
        # around it cost ~11 us of a quick call's ~80 (its CPU in process, without the HTTP server).
        bound = self._soap_paths.get(scope["path"].lower()) if scope["method"] == "POST" else None
        if bound is not None:
            await self._soap(scope, receive, send, bound)
            return
        request = Request(scope, receive)
        try:
            response = await self._route(request)
        except BodyTooLarge as exc:
            response = exc.response()
        await response(scope, receive, send)

    async def _route(self, request: Request) -> ASGIApp:
        match = _PATH.fullmatch(request.scope["path"])
        bound = self.services.get(match["service"].lower()) if match else None
        if match is None or bound is None:
            return HTMLResponse(helppages.not_found_page(request.url.path), 404)
        if match["operation"] is not None:
            return await self._http_binding(request, bound, match["operation"])
        if request.method == "GET":
            return self._describe(request, bound)
        # A POST to the service is a SOAP call, which __call__ answers.
        return _method_not_allowed("GET, POST")

    def _call(self, scope: Scope) -> Call:
        return Call(self.engine, _client_host(scope))

    def _describe(self, request: Request, bound: BoundService) -> Response:
        query = {key.lower(): value for key, value in request.query_params.multi_items()}
        contract = bound.contract
        if "wsdl" in query:
            address = str(request.url.replace(query="", fragment=""))
            return Response(bound.wsdl.render(address), media_type=XML_CONTENT_TYPE)
        if "op" in query:
            op = contract.lookup(query["op"])
            if op is None:
                return HTMLResponse(helppages.unknown_operation_page(contract, query["op"]), 404)
            # Starlette's netloc is the Host header when it is well-formed, else the server address.
            host = request.url.netloc
            local = helppages.is_local_client(_client_host(request.scope))
            return HTMLResponse(helppages.operation_page(contract, op, request.url.path, host, local))
        return HTMLResponse(helppages.service_page(contract))

    async def _soap(self, scope: Scope, receive: Receive, send: Send, bound: BoundService) -> None:
        content_type, soap_action, declared = _soap_headers(scope)
        media_type, params = _media_type(content_type)
        version = soap.version_for(media_type)
        if version is None:
            refused = PlainTextResponse("SOAP requests are text/xml (SOAP 1.1) or application/soap+xml (SOAP 1.2).", 415)
            await refused(scope, receive, send)
            return
        action = soap_action if version is soap.SOAP11 else params.get("action")
        contract = bound.contract
        named = soap.action_operation(contract, action)
        try:
            body = await read_body(receive, declared, self._limit(bound, named))
        except BodyTooLarge as exc:
            what = named.name if named is not None else "this request"
            answer, status = soap.fault(version, "Client", f"The request body is larger than {exc.limit} bytes, "
                                        f"the most {what} may carry."), 413
        else:
            try:
                op, element = soap.read_request(contract, version, body, action)
                value = await invoke(bound, op, decode_request(contract, op, element), self._call(scope))
                answer, status = soap.response(contract, version, op, value), 200
            except Exception as exc:
                code, message = _refusal(exc, f"{contract.name} SOAP call")
                answer, status = soap.fault(version, code, message), 500
        # Sent as is: Starlette's Response builds its headers anew for every call, looking its content type over.
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-length", str(len(answer)).encode()),
                                (b"content-type", version.content_type_header)]})
        await send({"type": "http.response.body", "body": answer})

    async def _http_binding(self, request: Request, bound: BoundService, name: str) -> ASGIApp:
        contract = bound.contract
        op = contract.lookup(name)
        if op is None or not op.http_verbs:
            return PlainTextResponse(f"{contract.name} has no operation {name} over HTTP GET or POST.", 404)
        if request.method not in op.http_verbs:
            return _method_not_allowed(", ".join(sorted(op.http_verbs)))
        if request.method == "GET":
            pairs = request.query_params.multi_items()
        else:
            media_type, _ = _media_type(request.headers.get("content-type"))
            if media_type not in ("", httpbind.FORM_MEDIA_TYPE):
                return PlainTextResponse(f"HTTP POST parameters are {httpbind.FORM_MEDIA_TYPE}.", 415)
            body = await read_body(request.receive, request.headers.get("content-length", ""), self._limit(bound, op))
            try:
                pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
            except UnicodeDecodeError:
                return PlainTextResponse("The form body is not UTF-8.", 500)

        try:
            value = await invoke(bound, op, httpbind.decode_pairs(contract, op, pairs), self._call(request.scope))
            return Response(httpbind.result_document(contract, op, value), media_type=XML_CONTENT_TYPE)
        except Exception as exc:
            return PlainTextResponse(_refusal(exc, f"{contract.name}.{op.name} over HTTP {request.method}")[1], 500)
