"""A small client for another server's SmarterMail-contract API (mailsrv or SmarterMail itself): one
SOAP 1.1 call, document/literal wrapped, and the flat result it answers.

Used where mailsrv asks a peer: testing a gateway or primary (its version and spool count), a
gateway's spool length (SmartGateway's LeastQueued), a primary's domains and recipients (backup MX). Replies
are read with lxml with entities, DTDs and the network off, and capped in size: the peer is not
trusted."""
from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from lxml import etree

NAMESPACE = "http://tempuri.org/"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
MAX_REPLY_BYTES = 1024 * 1024
# The peer is called directly: no proxy from the environment stands between two mail servers.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_PARSER = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True, huge_tree=False)


class SoapError(Exception):
    """The call did not produce a result: unreachable, an HTTP error, a fault or an unreadable reply."""


@dataclass(frozen=True)
class SoapReply:
    """An operation's result: the GenericResult fields, the other simple fields' texts by name, and
    the arrays' item texts by name (`<DomainNames><string>a</string>…`)."""
    result: bool
    code: int
    message: str
    fields: dict[str, str] = field(default_factory=dict)
    lists: dict[str, list[str]] = field(default_factory=dict)


def service_url(base_url: str, service: str) -> str:
    """`http://host:port/Services/<service>.asmx` from the server's base URL (the gateway's smUrl), or
    from the URL of any of its services."""
    base = base_url.strip().rstrip("/")
    cut = base.lower().find("/services/")
    if cut >= 0:
        base = base[:cut]
    return f"{base}/Services/{service}.asmx"


def _value(value: str | Sequence[str]) -> str:
    """A parameter's content: the text, or an ArrayOfString's items."""
    if isinstance(value, str):
        return escape(value)
    return "".join(f"<string>{escape(item)}</string>" for item in value)


def _envelope(operation: str, params: Mapping[str, str | Sequence[str]]) -> bytes:
    body = "".join(f"<{name}>{_value(value)}</{name}>" for name, value in params.items())
    return (f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body>'
            f'<{operation} xmlns="{NAMESPACE}">{body}</{operation}></soap:Body></soap:Envelope>').encode()


def _read_reply(operation: str, data: bytes) -> SoapReply:
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise SoapError(f"{operation}: the reply is not XML ({exc})") from None
    fault = root.find(f".//{{{SOAP_ENV}}}Fault")
    if fault is not None:
        raise SoapError(f"{operation}: SOAP fault: {(fault.findtext('faultstring') or '').strip()}")
    result = root.find(f".//{{{NAMESPACE}}}{operation}Result")
    if result is None:
        raise SoapError(f"{operation}: the reply has no {operation}Result")
    fields: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    for child in result:
        if not isinstance(child.tag, str):
            continue
        items = [item for item in child if isinstance(item.tag, str)]
        if items:
            lists[etree.QName(child).localname] = [(item.text or "").strip() for item in items]
        else:
            fields[etree.QName(child).localname] = (child.text or "").strip()
    try:
        code = int(fields.pop("ResultCode", "0") or 0)
    except ValueError:
        raise SoapError(f"{operation}: ResultCode is not a number") from None
    return SoapReply(fields.pop("Result", "") == "true", code, fields.pop("Message", ""), fields, lists)


def call(base_url: str, service: str, operation: str, params: Mapping[str, str | Sequence[str]],
         timeout: float = 10) -> SoapReply:
    """POST one operation to the peer; `timeout` bounds the connect and each read."""
    url = service_url(base_url, service)
    if not url.lower().startswith(("http://", "https://")):
        raise SoapError(f"not an http(s) URL: {base_url!r}")
    request = urllib.request.Request(url, data=_envelope(operation, params), method="POST", headers={
        "Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{NAMESPACE}{operation}"'})
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            data = response.read(MAX_REPLY_BYTES + 1)
    except urllib.error.HTTPError as exc:
        # ASMX answers a fault with HTTP 500 and the fault in the body.
        data = exc.read(MAX_REPLY_BYTES + 1)
        if not data.lstrip().startswith(b"<"):
            raise SoapError(f"{operation}: HTTP {exc.code} from {url}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise SoapError(f"{operation}: cannot reach {url}: {reason}") from None
    if len(data) > MAX_REPLY_BYTES:
        raise SoapError(f"{operation}: the reply is larger than {MAX_REPLY_BYTES} bytes")
    return _read_reply(operation, data)
