"""ASP.NET's HTTP GET and HTTP POST bindings: `svcX.asmx/Name?Param=value&...` (or the same pairs
form-encoded in a POST body) answered with the bare result element, indented, as text/xml.

Parameter names are case-insensitive (ASP.NET reads them from a case-insensitive collection); an
array parameter is the same key repeated; unknown keys are ignored. A missing string parameter is
None, a missing array is empty, and a missing value-type parameter (boolean, int, long, dateTime,
guid) is refused as ASP.NET refuses it: "Missing parameter: name." Refusals of the request itself are
HTTP 500 text/plain, like ASP.NET's.
"""
from __future__ import annotations

from typing import Any

from lxml import etree

from services.asmx.codec import convert, write_members
from services.asmx.contract import Field, Operation, Service
from services.asmx.faults import RequestError
from services.asmx.values import format_value, is_value_type
from services.asmx.xmlutil import TNS, XML_DECLARATION, XSD, XSI, XSI_NIL

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"


def _param(service: Service, field: Field, values: list[str]) -> Any:
    if not field.simple:
        item = service.types[field.type].item
        if item is None or not item.simple:
            # ASP.NET publishes only simple and simple-array parameters in these bindings.
            raise RequestError(f"Parameter {field.name} cannot be sent over HTTP GET or POST.")
        return [convert(item.type, field.name, text) for text in values]
    if not values:
        if is_value_type(field.type) and not field.nillable:
            raise RequestError(f"Missing parameter: {field.name}.")
        return None
    return convert(field.type, field.name, values[0])


def decode_pairs(service: Service, op: Operation, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Handler keyword arguments from query-string or form pairs."""
    by_key: dict[str, list[str]] = {}
    for key, value in pairs:
        by_key.setdefault(key.lower(), []).append(value)
    return {p.name: _param(service, p, by_key.get(p.name.lower(), [])) for p in op.params}


def result_document(service: Service, op: Operation, value: Any) -> bytes:
    assert op.result is not None, "void operations have no HTTP GET/POST binding"
    if value is None or op.result.simple:
        root = etree.Element(f"{{{TNS}}}{op.http_result_element}", nsmap={"xsi": XSI, "xsd": XSD, None: TNS})
        if value is None:
            root.set(XSI_NIL, "true")
        else:
            root.text = format_value(op.result.type, value)
        return XML_DECLARATION + b"\n" + etree.tostring(root, encoding="utf-8")
    # XmlSerializer, which ASP.NET uses here, indents by two spaces.
    start = f'<{op.http_result_element} xmlns:xsi="{XSI}" xmlns:xsd="{XSD}" xmlns="{TNS}">'
    out = [start]
    write_members(service, out, service.types[op.result.type], value, "\n  ")
    if len(out) == 1:
        return XML_DECLARATION + b"\n" + f"{start[:-1]}/>".encode()
    out.append(f"\n</{op.http_result_element}>")
    return XML_DECLARATION + b"\n" + "".join(out).encode()
