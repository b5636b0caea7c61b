"""The operation table of one ASMX service, read from its WSDL document.

The WSDL in wsdl/ is the single source of truth: request parsing, type conversion, response
serialisation, help pages and samples all read this model, so what we publish and what we dispatch
cannot disagree. Only what ASP.NET's WSDL generator emits for document/literal services is
understood; anything else (attributes, xsd:choice, an unknown simple type) raises ContractError at
load time instead of being half-served.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

from lxml import etree

from services.asmx.values import SIMPLE_TYPES
from services.asmx.xmlutil import (
    MS_TYPES,
    TNS,
    WSDL,
    WSDL_HTTP,
    WSDL_SOAP11,
    WSDL_SOAP12,
    XSD,
    parse_xml,
    resolve_qname,
)

W = f"{{{WSDL}}}"
S = f"{{{XSD}}}"


class ContractError(ValueError):
    """The WSDL uses a construct this layer does not implement, or is inconsistent."""


@dataclass(frozen=True)
class Field:
    """A parameter, a result, or a member of a complex type."""
    name: str
    # An XSD simple type name from values.SIMPLE_TYPES when `simple`, else a complex type's name.
    type: str
    simple: bool
    min_occurs: int
    repeated: bool  # maxOccurs="unbounded"
    nillable: bool


@dataclass(frozen=True)
class ComplexType:
    name: str
    fields: tuple[Field, ...]

    @cached_property
    def field_names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields)

    @cached_property
    def outcome_status(self) -> str | None:
        """The field saying whether the call succeeded (Result, or LoginValidated for LoginResult)
        when this type reports an outcome (it also has ResultCode), else None."""
        if "ResultCode" not in self.field_names:
            return None
        return next((name for name in ("Result", "LoginValidated") if name in self.field_names), None)

    @cached_property
    def item(self) -> Field | None:
        """The item field when this is an ArrayOfX type: ASP.NET repeats elements only there
        (asked for every complex value written or read: worked out once)."""
        if len(self.fields) == 1 and self.fields[0].repeated:
            return self.fields[0]
        return None


@dataclass(frozen=True)
class Operation:
    name: str
    documentation: str
    soap_action: str
    request_element: str
    response_element: str
    params: tuple[Field, ...]
    result: Field | None  # None: a void operation, answered with an empty response element
    http_verbs: frozenset[str]  # the HTTP GET/POST bindings that list this operation
    http_result_element: str | None  # the bare element those bindings answer with


@dataclass(frozen=True)
class Service:
    name: str
    documentation: str
    operations: Mapping[str, Operation]
    types: Mapping[str, ComplexType]

    def lookup(self, name: str) -> Operation | None:
        """Find an operation ignoring case, as IIS paths and ?op= do."""
        return self._by_lower_name.get(name.lower())

    def by_request_tag(self, tag: str) -> Operation | None:
        """The operation whose request element has this Clark name ({namespace}local)."""
        return self._by_request_tag.get(tag)

    def by_soap_action(self, action: str) -> Operation | None:
        return self._by_soap_action.get(action)

    # Indexes built on first use: every call looks its operation up, and svcUserAdmin has ~100.
    @cached_property
    def _by_lower_name(self) -> dict[str, Operation]:
        return _first_by(self.operations.values(), lambda op: op.name.lower())

    @cached_property
    def _by_request_tag(self) -> dict[str, Operation]:
        return _first_by(self.operations.values(), lambda op: f"{{{TNS}}}{op.request_element}")

    @cached_property
    def _by_soap_action(self) -> dict[str, Operation]:
        return _first_by(self.operations.values(), lambda op: op.soap_action)


def _first_by(operations: Iterable[Operation], key: Callable[[Operation], str]) -> dict[str, Operation]:
    index: dict[str, Operation] = {}
    for op in operations:
        index.setdefault(key(op), op)
    return index


def _documentation(node: etree._Element | None) -> str:
    doc = node.find(f"{W}documentation") if node is not None else None
    return (doc.text or "").strip() if doc is not None else ""


class _Reader:
    def __init__(self, root: etree._Element) -> None:
        self.root = root
        self.elements: dict[str, etree._Element] = {}
        self.complex_nodes: dict[str, etree._Element] = {}
        for schema in root.iterfind(f"{W}types/{S}schema"):
            if schema.get("targetNamespace") != TNS:
                # ASP.NET's helper schemas: microsoft types (guid) and AbstractTypes (StringArray,
                # which only types HTTP message parts; we read parameters from the SOAP elements).
                continue
            for child in schema:
                if child.tag == f"{S}element":
                    self.elements[child.get("name")] = child
                elif child.tag == f"{S}complexType":
                    self.complex_nodes[child.get("name")] = child
                elif child.tag != f"{S}import":
                    raise ContractError(f"unsupported schema component {etree.QName(child).localname}")
        self.messages = {m.get("name"): m for m in root.iterfind(f"{W}message")}
        self.port_types = {p.get("name"): p for p in root.iterfind(f"{W}portType")}

    def field(self, node: etree._Element) -> Field:
        name = node.get("name")
        namespace, local = resolve_qname(node, node.get("type") or "")
        if namespace == XSD and local in SIMPLE_TYPES or namespace == MS_TYPES and local == "guid":
            simple = True
        elif namespace == TNS and local in self.complex_nodes:
            simple = False
        else:
            raise ContractError(f"element {name} has unsupported type {{{namespace}}}{local}")
        max_occurs = node.get("maxOccurs", "1")
        if max_occurs not in ("1", "unbounded"):
            raise ContractError(f"element {name} has unsupported maxOccurs={max_occurs}")
        return Field(name=name, type=local, simple=simple, min_occurs=int(node.get("minOccurs", "1")),
                     repeated=max_occurs == "unbounded", nillable=node.get("nillable") == "true")

    def sequence(self, complex_type: etree._Element, owner: str) -> tuple[Field, ...]:
        children = list(complex_type)
        if not children:
            return ()
        if len(children) != 1 or children[0].tag != f"{S}sequence" or set(complex_type.attrib) - {"name"}:
            raise ContractError(f"{owner}: only xsd:sequence content is supported")
        nodes = list(children[0])
        if any(n.tag != f"{S}element" or n.get("ref") for n in nodes):
            raise ContractError(f"{owner}: only named xsd:element particles are supported")
        return tuple(self.field(n) for n in nodes)

    def wrapper(self, message_ref: str, context: etree._Element) -> tuple[str, tuple[Field, ...]]:
        """The element a SOAP message's single part names, and its sequence."""
        parts = self.messages[resolve_qname(context, message_ref)[1]].findall(f"{W}part")
        if len(parts) != 1 or not parts[0].get("element"):
            raise ContractError(f"message {message_ref} is not document/literal wrapped")
        name = resolve_qname(parts[0], parts[0].get("element"))[1]
        inline = self.elements[name].find(f"{S}complexType")
        return name, self.sequence(inline, name) if inline is not None else ()

    def bindings(self) -> dict[str, etree._Element]:
        """Bindings keyed by kind: SOAP11, SOAP12, GET, POST."""
        found = {}
        for binding in self.root.iterfind(f"{W}binding"):
            for marker, kind in ((f"{{{WSDL_SOAP11}}}binding", "SOAP11"), (f"{{{WSDL_SOAP12}}}binding", "SOAP12"),
                                 (f"{{{WSDL_HTTP}}}binding", None)):
                node = binding.find(marker)
                if node is not None:
                    found[kind or node.get("verb")] = binding
        return found

    def port_type_of(self, binding: etree._Element) -> etree._Element:
        return self.port_types[resolve_qname(binding, binding.get("type"))[1]]


def load_service(wsdl: bytes) -> Service:
    reader = _Reader(parse_xml(wsdl))
    service_node = reader.root.find(f"{W}service")
    if service_node is None:
        raise ContractError("the WSDL defines no wsdl:service")
    types = {name: ComplexType(name, reader.sequence(node, name)) for name, node in reader.complex_nodes.items()}

    bindings = reader.bindings()
    if "SOAP11" not in bindings:
        raise ContractError("the WSDL has no SOAP 1.1 binding")
    port_type = reader.port_type_of(bindings["SOAP11"])
    http_ops: dict[str, set[str]] = {}
    http_results: dict[str, str] = {}
    for verb in ("GET", "POST"):
        if verb not in bindings:
            continue
        http_port_type = reader.port_type_of(bindings[verb])
        for op in bindings[verb].iterfind(f"{W}operation"):
            http_ops.setdefault(op.get("name"), set()).add(verb)
            output = http_port_type.find(f"{W}operation[@name='{op.get('name')}']/{W}output")
            part = reader.messages[resolve_qname(output, output.get("message"))[1]].find(f"{W}part")
            http_results[op.get("name")] = resolve_qname(part, part.get("element"))[1]

    operations = {}
    for op in bindings["SOAP11"].iterfind(f"{W}operation"):
        name = op.get("name")
        abstract = port_type.find(f"{W}operation[@name='{name}']")
        request_element, params = reader.wrapper(abstract.find(f"{W}input").get("message"), abstract)
        response_element, results = reader.wrapper(abstract.find(f"{W}output").get("message"), abstract)
        if len(results) > 1:
            raise ContractError(f"{name}: more than one result element")
        operations[name] = Operation(
            name=name, documentation=_documentation(abstract),
            soap_action=op.find(f"{{{WSDL_SOAP11}}}operation").get("soapAction"),
            request_element=request_element, response_element=response_element, params=params,
            result=results[0] if results else None, http_verbs=frozenset(http_ops.get(name, ())),
            http_result_element=http_results.get(name))
    return Service(name=service_node.get("name"), documentation=_documentation(service_node),
                   operations=operations, types=types)
