"""Cut a contract WSDL down to the named operations and everything they reference, plus the
operations we define ourselves.

    python -m services.asmx.wsdl_subset [--add DEFINED.wsdl] REFERENCE.wsdl OP [OP ...] > wsdl/svcX.wsdl

Used for services we implement part of (svcServerAdmin): the WSDL we publish must promise only what
we dispatch. Kept: the operations in every port type and binding, the messages those operations
name, and the schema components those messages reach (transitively through type=, base=, ref= and
element=). Everything else — other operations, their messages, types only they used, schemas left
empty — is removed. The documentation, service and ports stay as they were.

`--add` names a WSDL of operations the contract names without a signature, which we define
(wsdl/defined/svcX.wsdl, written in the reference generator's style): every one of its operations is
added — its schema components, messages, port type and binding entries — beside the subset's, a
component the subset already has being kept as it is. An operation the reference already defines
is refused: the contract's signature wins.
"""
from __future__ import annotations

import copy
import sys
from collections.abc import Iterable

from lxml import etree

from services.asmx.xmlutil import WSDL, XML_DECLARATION, XSD, parse_xml, resolve_qname

W = f"{{{WSDL}}}"
S = f"{{{XSD}}}"
# Attributes whose value is a QName naming another component.
_REFERENCE_ATTRIBUTES = ("type", "base", "ref", "element", "message")
# A schema component is identified by (kind, namespace, name): elements and types live apart.
Component = tuple[str, str, str]


class SubsetError(ValueError):
    """The reference does not define an operation that was asked for."""


def _references(node: etree._Element) -> Iterable[tuple[str, str]]:
    for child in node.iter():
        for attribute in _REFERENCE_ATTRIBUTES:
            value = child.get(attribute)
            if value:
                yield attribute, value


def _schema_components(root: etree._Element) -> dict[Component, etree._Element]:
    components = {}
    for schema in root.iter(f"{S}schema"):
        namespace = schema.get("targetNamespace", "")
        for child in schema:
            if child.tag in (f"{S}element", f"{S}complexType", f"{S}simpleType"):
                kind = "element" if child.tag == f"{S}element" else "type"
                components[(kind, namespace, child.get("name"))] = child
    return components


def _reachable(starts: Iterable[Component], components: dict[Component, etree._Element]) -> set[Component]:
    seen: set[Component] = set()
    pending = [c for c in starts if c in components]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        for attribute, value in _references(components[current]):
            kind = "element" if attribute in ("ref", "element") else "type"
            target = (kind, *resolve_qname(components[current], value))
            # XSD built-ins and soapenc:Array are not defined here and need nothing kept.
            if target in components:
                pending.append(target)
    return seen


def subset(reference: bytes, operations: list[str], additions: bytes | None = None) -> bytes:
    root = parse_xml(reference)
    wanted = set(operations)
    declared = {op.get("name") for op in root.iterfind(f"{W}portType/{W}operation")}
    if missing := wanted - declared:
        raise SubsetError(f"the reference defines no operation {', '.join(sorted(missing))}")

    for parent in (*root.iterfind(f"{W}portType"), *root.iterfind(f"{W}binding")):
        for op in parent.findall(f"{W}operation"):
            if op.get("name") not in wanted:
                parent.remove(op)

    used_messages = {resolve_qname(io, io.get("message"))[1]
                     for io in root.iterfind(f"{W}portType/{W}operation/*") if io.get("message")}
    for message in root.findall(f"{W}message"):
        if message.get("name") not in used_messages:
            root.remove(message)

    components = _schema_components(root)
    starts = []
    for part in root.iterfind(f"{W}message/{W}part"):
        for attribute, value in _references(part):
            starts.append(("element" if attribute == "element" else "type", *resolve_qname(part, value)))
    keep = _reachable(starts, components)
    for key, node in components.items():
        if key not in keep:
            node.getparent().remove(node)
    for schema in root.findall(f"{W}types/{S}schema"):
        if not any(child.tag != f"{S}import" for child in schema):
            schema.getparent().remove(schema)

    if additions is not None:
        _add(root, parse_xml(additions), declared)
    etree.indent(root, space="  ")
    return XML_DECLARATION + b"\n" + etree.tostring(root, encoding="utf-8") + b"\n"


def _add(root: etree._Element, defined: etree._Element, declared: set[str]) -> None:
    """Append `defined`'s operations and what they use to the subset `root`."""
    names = {op.get("name") for op in defined.iterfind(f"{W}portType/{W}operation")}
    if clash := names & declared:
        raise SubsetError(f"the reference already defines {', '.join(sorted(clash))}")
    types = root.find(f"{W}types")
    if types is None:
        types = etree.Element(f"{W}types")
        root.insert(1, types)
    schemas = {schema.get("targetNamespace", ""): schema for schema in types.iterfind(f"{S}schema")}
    for schema in defined.iterfind(f"{W}types/{S}schema"):
        target = schemas.get(schema.get("targetNamespace", ""))
        if target is None:
            types.append(copy.deepcopy(schema))
            continue
        have = {(child.tag, child.get("name")) for child in target}
        for child in schema:
            if (child.tag, child.get("name")) not in have:
                target.append(copy.deepcopy(child))
    messages = root.findall(f"{W}message")
    at = root.index(messages[-1]) + 1 if messages else root.index(types) + 1
    for offset, message in enumerate(defined.iterfind(f"{W}message")):
        root.insert(at + offset, copy.deepcopy(message))
    for kind in ("portType", "binding"):
        containers = {node.get("name"): node for node in root.iterfind(f"{W}{kind}")}
        for node in defined.iterfind(f"{W}{kind}"):
            if node.get("name") not in containers:
                raise SubsetError(f"the reference has no {kind} {node.get('name')}")
            for op in node.iterfind(f"{W}operation"):
                containers[node.get("name")].append(copy.deepcopy(op))


def main(argv: list[str]) -> int:
    additions = None
    if argv[:1] == ["--add"] and len(argv) > 1:
        with open(argv[1], "rb") as defined:
            additions = defined.read()
        argv = argv[2:]
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0], "rb") as reference:
        try:
            sys.stdout.buffer.write(subset(reference.read(), argv[1:], additions))
        except SubsetError as exc:
            print(f"wsdl_subset: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
