"""A small client for another server's SmarterMail-style web services (ASMX, SOAP 1.1): what the
server roles ask of a peer (a gateway's spool length). Blocking, with a timeout on every call; the
reply is parsed without entities or network access, as the peer is not trusted."""
from __future__ import annotations

import urllib.error
import urllib.request
from xml.sax.saxutils import escape

from lxml import etree

NAMESPACE = "http://tempuri.org/"
_ENVELOPE = "http://schemas.xmlsoap.org/soap/envelope/"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
MAX_REPLY = 1 << 20


class SoapError(Exception):
    """The peer could not be asked, or its answer was a fault, unreadable or Result=false."""


def service_url(base: str, service: str) -> str:
    """`base` as given when it names an .asmx, else `base`/Services/<service>.asmx."""
    if base.lower().endswith(".asmx"):
        return base
    return f"{base.rstrip('/')}/Services/{service}.asmx"


def call(base: str, service: str, operation: str, params: dict[str, str], timeout: float) -> dict[str, str]:
    """The result's simple fields (local name -> text) of `operation` on the server at `base`."""
    body = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in params.items())
    envelope = (f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{_ENVELOPE}"><soap:Body>'
                f'<{operation} xmlns="{NAMESPACE}">{body}</{operation}></soap:Body></soap:Envelope>')
    request = urllib.request.Request(service_url(base, service), envelope.encode("utf-8"), method="POST", headers={
        "Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{NAMESPACE}{operation}"'})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310 (http(s) checked when stored)
            raw = reply.read(MAX_REPLY + 1)
    except urllib.error.HTTPError as exc:
        raise SoapError(f"{operation} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise SoapError(f"{operation} could not be asked: {exc}") from None
    if len(raw) > MAX_REPLY:
        raise SoapError(f"{operation} answered more than {MAX_REPLY} bytes")
    try:
        root = etree.fromstring(raw, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise SoapError(f"{operation} answered no XML: {exc}") from None
    result = root.find(f".//{{{NAMESPACE}}}{operation}Result")
    if result is None:
        raise SoapError(f"{operation} answered no {operation}Result")
    fields = {etree.QName(child).localname: child.text or "" for child in result if len(child) == 0}
    if fields.get("Result", "").lower() != "true":
        raise SoapError(f"{operation} failed: {fields.get('Message', '')}")
    return fields
