"""Sample requests and responses with type placeholders, as ASP.NET's ?op= pages show them.

Every value is replaced by its XSD type name (`string`, `boolean`, `int`, ...), arrays show two
items, and lengths read `length`. The samples are built from the same operation table that drives
dispatch, so they always describe what the server actually accepts.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from lxml import etree

from services.asmx.contract import ComplexType, Field, Operation, Service
from services.asmx.xmlutil import SOAP11_ENV, SOAP12_ENV, TNS, XML_CONTENT_TYPE, XSD, XSI

_DECLARATION = '<?xml version="1.0" encoding="utf-8"?>\n'


@dataclass(frozen=True)
class Sample:
    protocol: str  # "SOAP 1.1", "SOAP 1.2", "HTTP GET", "HTTP POST"
    request: str
    response: str


def _placeholders(service: Service, parent: etree._Element, field: Field, seen: frozenset[str]) -> None:
    for _ in range(2 if field.repeated else 1):
        element = etree.SubElement(parent, f"{{{TNS}}}{field.name}")
        if field.simple:
            element.text = field.type
        elif field.type not in seen:  # a type containing itself is shown once, like ASP.NET does
            _members(service, element, service.types[field.type], seen | {field.type})


def _members(service: Service, element: etree._Element, complex_type: ComplexType, seen: frozenset[str]) -> None:
    for field in complex_type.fields:
        _placeholders(service, element, field, seen)


def _text(root: etree._Element) -> str:
    etree.indent(root, space="  ")
    return _DECLARATION + etree.tostring(root, encoding="unicode")


def _soap_message(service: Service, prefix: str, envelope_ns: str, element_name: str,
                  fields: tuple[Field, ...]) -> str:
    root = etree.Element(f"{{{envelope_ns}}}Envelope", nsmap={"xsi": XSI, "xsd": XSD, prefix: envelope_ns})
    body = etree.SubElement(root, f"{{{envelope_ns}}}Body")
    wrapper = etree.SubElement(body, f"{{{TNS}}}{element_name}", nsmap={None: TNS})
    for field in fields:
        _placeholders(service, wrapper, field, frozenset())
    return _text(root)


def _bare_result(service: Service, op: Operation) -> str:
    root = etree.Element(f"{{{TNS}}}{op.http_result_element}", nsmap={None: TNS})
    if op.result is not None and op.result.simple:
        root.text = op.result.type
    elif op.result is not None:
        _members(service, root, service.types[op.result.type], frozenset({op.result.type}))
    return _text(root)


def _form_pairs(service: Service, op: Operation) -> str:
    pairs = []
    for field in op.params:
        item = None if field.simple else service.types[field.type].item
        pairs += [f"{quote(field.name)}={(item or field).type}"] * (2 if item else 1)
    return "&".join(pairs)


def _http_head(first_line: str, host: str, *headers: str) -> str:
    return "\n".join((first_line, f"Host: {host}", *headers)) + "\n\n"


def _ok(content_type: str) -> str:
    return f"HTTP/1.1 200 OK\nContent-Type: {content_type}\nContent-Length: length\n\n"


def samples(service: Service, op: Operation, path: str, host: str) -> list[Sample]:
    """The samples for an operation served at `path` (e.g. /Services/svcX.asmx) on `host`."""
    result = (op.result,) if op.result else ()
    found = []
    for protocol, prefix, envelope_ns, media_type in (("SOAP 1.1", "soap", SOAP11_ENV, "text/xml"),
                                                      ("SOAP 1.2", "soap12", SOAP12_ENV, "application/soap+xml")):
        content_type = f"{media_type}; charset=utf-8"
        action = (f'SOAPAction: "{op.soap_action}"',) if protocol == "SOAP 1.1" else ()
        request = _http_head(f"POST {path} HTTP/1.1", host, f"Content-Type: {content_type}",
                             "Content-Length: length", *action)
        found.append(Sample(protocol,
                            request + _soap_message(service, prefix, envelope_ns, op.request_element, op.params),
                            _ok(content_type) + _soap_message(service, prefix, envelope_ns, op.response_element,
                                                              result)))
    pairs = _form_pairs(service, op)
    if "GET" in op.http_verbs:
        query = f"?{pairs}" if pairs else ""
        found.append(Sample("HTTP GET", _http_head(f"GET {path}/{op.name}{query} HTTP/1.1", host).rstrip() + "\n",
                            _ok(XML_CONTENT_TYPE) + _bare_result(service, op)))
    if "POST" in op.http_verbs:
        found.append(Sample("HTTP POST",
                            _http_head(f"POST {path}/{op.name} HTTP/1.1", host,
                                       "Content-Type: application/x-www-form-urlencoded",
                                       "Content-Length: length") + pairs,
                            _ok(XML_CONTENT_TYPE) + _bare_result(service, op)))
    return found
