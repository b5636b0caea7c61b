"""Contract values <-> XML elements, for request parameters and results alike.

Decoding follows XmlSerializer, which is what SmarterMail's clients were tested against: an absent
element leaves its parameter at the .NET default (None for strings and complex values, 0/false/
0001-01-01 for value types, an empty list for arrays), unknown elements are ignored, and
`xsi:nil="true"` means None. Children are matched by local name in the tempuri namespace or in no
namespace, because hand-written clients often leave the parameters unqualified.

Encoding follows the WSDL: fields in sequence order, a None reference-type field with minOccurs=0
omitted, a None nillable field written as xsi:nil, a None value-type field written as its .NET
default, and array items named by the ArrayOfX type's item element.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from lxml import etree

from services.asmx.contract import ComplexType, Field, Operation, Service
from services.asmx.faults import RequestError, ResultShapeError
from services.asmx.values import VALUE_TYPE_DEFAULTS, BadValue, format_value, is_value_type, parse_value
from services.asmx.xmlutil import TNS, XSI_NIL


def missing_value(service: Service, field: Field) -> Any:
    """What a parameter or member absent from the request is, as XmlSerializer would leave it."""
    if field.simple:
        return VALUE_TYPE_DEFAULTS[field.type] if is_value_type(field.type) and not field.nillable else None
    return [] if service.types[field.type].item else None


def _is_nil(element: etree._Element) -> bool:
    return element.get(XSI_NIL) in ("true", "1")


def _named_children(element: etree._Element) -> Iterable[tuple[str, etree._Element]]:
    for child in element:
        if isinstance(child.tag, str):
            qname = etree.QName(child)
            if qname.namespace in (TNS, None):
                yield qname.localname, child


def convert(type_name: str, path: str, text: str) -> Any:
    """A simple value from request text; `path` names the parameter in the refusal."""
    try:
        return parse_value(type_name, text)
    except BadValue as exc:
        raise RequestError(f"{path}: '{text[:80]}' {exc}.") from None


def _decode(service: Service, field: Field, element: etree._Element, path: str) -> Any:
    if _is_nil(element):
        if field.simple and is_value_type(field.type) and not field.nillable:
            raise RequestError(f"{path} cannot be nil: it is a {field.type}.")
        return None
    if field.simple:
        return convert(field.type, path, element.text or "")
    return _decode_complex(service, service.types[field.type], element, path)


def _decode_complex(service: Service, complex_type: ComplexType, element: etree._Element, path: str) -> Any:
    if item := complex_type.item:
        return [_decode(service, item, child, f"{path}/{name}")
                for name, child in _named_children(element) if name == item.name]
    found = {name: child for name, child in _named_children(element)}
    return {f.name: _decode(service, f, found[f.name], f"{path}/{f.name}") if f.name in found
            else missing_value(service, f) for f in complex_type.fields}


def decode_request(service: Service, op: Operation, wrapper: etree._Element) -> dict[str, Any]:
    """The handler keyword arguments carried by an operation's request element."""
    given: dict[str, etree._Element] = {}
    for name, child in _named_children(wrapper):
        if name in given:
            raise RequestError(f"Parameter {name} is given more than once.")
        given[name] = child
    return {p.name: _decode(service, p, given[p.name], p.name) if p.name in given else missing_value(service, p)
            for p in op.params}


def member(value: Any, name: str) -> Any:
    """A field of a handler's result object: a mapping key or an attribute."""
    return value.get(name) if isinstance(value, Mapping) else getattr(value, name, None)


def check_keys(complex_type: ComplexType, value: Any) -> None:
    """Refuse a mapping with a key the type does not have: a misspelt field would silently vanish."""
    if isinstance(value, Mapping) and (unknown := set(value) - {f.name for f in complex_type.fields}):
        raise ResultShapeError(f"{complex_type.name} has no field {', '.join(sorted(map(str, unknown)))}")


def encode(service: Service, parent: etree._Element, field: Field, value: Any) -> None:
    """Append the element(s) for `field` holding `value` to `parent`."""
    if field.repeated:
        if isinstance(value, (str, bytes, Mapping)):
            raise ResultShapeError(f"{field.name} must be a sequence of items")
        for item in value or ():
            _encode_one(service, parent, field, item)
    else:
        _encode_one(service, parent, field, value)


def _encode_one(service: Service, parent: etree._Element, field: Field, value: Any) -> None:
    if value is None:
        if field.simple and is_value_type(field.type) and not field.nillable:
            value = VALUE_TYPE_DEFAULTS[field.type]
        elif field.nillable:
            etree.SubElement(parent, f"{{{TNS}}}{field.name}").set(XSI_NIL, "true")
            return
        else:
            return
    element = etree.SubElement(parent, f"{{{TNS}}}{field.name}")
    if field.simple:
        element.text = format_value(field.type, value)
    else:
        encode_members(service, element, service.types[field.type], value)


def encode_members(service: Service, element: etree._Element, complex_type: ComplexType, value: Any) -> None:
    """Fill `element` with the children of a complex value (an array's items, or its fields)."""
    if item := complex_type.item:
        encode(service, element, item, value)
        return
    check_keys(complex_type, value)
    for f in complex_type.fields:
        encode(service, element, f, member(value, f.name))
