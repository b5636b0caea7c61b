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

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lxml import etree

from services.asmx.contract import ComplexType, Field, Operation, Service
from services.asmx.faults import RequestError, ResultShapeError
from services.asmx.values import VALUE_TYPE_DEFAULTS, BadValue, format_value, formatter, is_value_type, parse_value
from services.asmx.xmlutil import TNS, XSI_NIL


def missing_value(service: Service, field: Field) -> Any:
    """What a parameter or member absent from the request is, as XmlSerializer would leave it."""
    if field.simple:
        return VALUE_TYPE_DEFAULTS[field.type] if is_value_type(field.type) and not field.nillable else None
    return [] if service.types[field.type].item else None


def _is_nil(element: etree._Element) -> bool:
    return element.get(XSI_NIL) in ("true", "1")


_IN_TNS = f"{{{TNS}}}"


def _named_children(element: etree._Element) -> Iterable[tuple[str, etree._Element]]:
    # Read from the Clark name ({namespace}local) as it is: a QName object per child cost more
    # than the rest of decoding a login's parameters.
    for child in element:
        tag = child.tag
        if isinstance(tag, str):
            if not tag.startswith("{"):
                yield tag, child
            elif tag.startswith(_IN_TNS):
                yield tag[len(_IN_TNS):], child


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
    # A dict first: what nearly every handler returns, and an ABC check costs more than the lookup.
    if type(value) is dict or isinstance(value, Mapping):
        return value.get(name)
    return getattr(value, name, None)


def check_keys(complex_type: ComplexType, value: Any) -> None:
    """Refuse a mapping with a key the type does not have: a misspelt field would silently vanish."""
    # issuperset first: no set made for the answer nearly every call gives (no unknown key).
    if (type(value) is dict or isinstance(value, Mapping)) and not complex_type.field_names.issuperset(value):
        unknown = value.keys() - complex_type.field_names
        raise ResultShapeError(f"{complex_type.name} has no field {', '.join(sorted(map(str, unknown)))}")


# Element text as libxml2 writes it (a CR would otherwise be read back as a line feed).
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
# What XML 1.0 text cannot carry, and lxml refuses as element text: C0 controls but tab, LF and CR,
# surrogates, U+FFFE and U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True)
class _Tags:
    start: str
    end: str
    empty: str
    nil: str


@functools.cache
def _tags(name: str) -> _Tags:
    # Members are in the tempuri namespace, the default one of the response element: no prefix.
    return _Tags(f"<{name}>", f"</{name}>", f"<{name}/>", f'<{name} xsi:nil="true"/>')


def text(type_name: str, value: Any) -> str:
    """A simple value as escaped element text; ValueError for what XML cannot carry."""
    return _escaped(format_value(type_name, value))


def _escaped(formatted: str) -> str:
    """A formatted simple value as element text; ValueError for what XML cannot carry."""
    if _NOT_XML.search(formatted):
        raise ValueError("All strings must be XML compatible: Unicode or ASCII, no NULL bytes or control characters")
    return formatted.translate(_ESCAPES)


def write(service: Service, out: list[str], field: Field, value: Any, indent: str | None = None) -> None:
    """Append the XML text of the element(s) for `field` holding `value` to `out`: serialised as
    strings, not built as an lxml tree, because a response is written once per call and building
    the tree cost more than the rest of the call. The `xsi` prefix must be declared by an ancestor.

    `indent` (None: none) is the line break and spaces before each element, as lxml's indent writes
    them for the HTTP bindings."""
    if field.repeated:
        if isinstance(value, (str, bytes, Mapping)):
            raise ResultShapeError(f"{field.name} must be a sequence of items")
        for item in value or ():
            _write_one(service, out, field, item, indent)
    else:
        _write_one(service, out, field, value, indent)


def _write_one(service: Service, out: list[str], field: Field, value: Any, indent: str | None) -> None:
    tags = _tags(field.name)
    if value is None:
        if field.simple and is_value_type(field.type) and not field.nillable:
            value = VALUE_TYPE_DEFAULTS[field.type]
        elif field.nillable:
            if indent is not None:
                out.append(indent)
            out.append(tags.nil)
            return
        else:
            return
    if indent is not None:
        out.append(indent)
    if field.simple:
        out += (tags.start, text(field.type, value), tags.end)
        return
    start = len(out)
    out.append(tags.start)
    write_members(service, out, service.types[field.type], value, None if indent is None else indent + "  ")
    if len(out) == start + 1:  # no members written: lxml's self-closed element
        out[start] = tags.empty
        return
    if indent is not None:
        out.append(indent)
    out.append(tags.end)


@dataclass(frozen=True)
class _Member:
    """How a field of a complex type is written: `formatter` set for a single simple value with
    no indent (nearly every field of a SOAP result), which `write_members` writes itself."""
    field: Field
    tags: _Tags
    formatter: Callable[[Any], str] | None


# Each complex type's members, by the type's id (its hash would hash every field each call); the
# type is kept with them, alive, so that its id is never another's.
_MEMBERS: dict[int, tuple[ComplexType, tuple[_Member, ...]]] = {}


def _members(complex_type: ComplexType) -> tuple[_Member, ...]:
    known = _MEMBERS.get(id(complex_type))
    if known is None:
        members = tuple(_Member(f, _tags(f.name), formatter(f.type) if f.simple and not f.repeated else None)
                        for f in complex_type.fields)
        known = _MEMBERS[id(complex_type)] = (complex_type, members)
    return known[1]


def write_members(service: Service, out: list[str], complex_type: ComplexType, value: Any,
                  indent: str | None = None) -> None:
    """Append the children of a complex value (an array's items, or its fields) to `out`."""
    if item := complex_type.item:
        write(service, out, item, value, indent)
        return
    check_keys(complex_type, value)
    get = value.get if type(value) is dict else functools.partial(member, value)
    for m in _members(complex_type):
        field_value = get(m.field.name)
        # A simple value written here, as _write_one would write it, without its two calls a field.
        if m.formatter is not None and field_value is not None and indent is None:
            out += (m.tags.start, _escaped(m.formatter(field_value)), m.tags.end)
        else:
            write(service, out, m.field, field_value, indent)
