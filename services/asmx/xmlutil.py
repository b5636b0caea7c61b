"""XML primitives shared by the ASMX layer: namespaces, the one hardened parser, QName resolution.

Every document we read — a client's SOAP envelope or our own WSDL — goes through `parse_xml`, so
there is exactly one place that decides what libxml2 may do: no DTDs, no entity expansion, no
network, no huge trees. A document that carries a DOCTYPE at all is refused, because a SOAP message
never needs one and an internal subset is how entity attacks start.
"""
from __future__ import annotations

import threading

from lxml import etree

TNS = "http://tempuri.org/"
WSDL = "http://schemas.xmlsoap.org/wsdl/"
XSD = "http://www.w3.org/2001/XMLSchema"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
WSDL_SOAP11 = "http://schemas.xmlsoap.org/wsdl/soap/"
WSDL_SOAP12 = "http://schemas.xmlsoap.org/wsdl/soap12/"
WSDL_HTTP = "http://schemas.xmlsoap.org/wsdl/http/"
# The schema where ASP.NET declares `guid` as a restricted string.
MS_TYPES = "http://microsoft.com/wsdl/types/"

XSI_NIL = f"{{{XSI}}}nil"

# Written by hand rather than by lxml so that it reads exactly like ASP.NET's (double quotes).
XML_DECLARATION = b'<?xml version="1.0" encoding="utf-8"?>'
XML_CONTENT_TYPE = "text/xml; charset=utf-8"


class XmlRefused(ValueError):
    """The bytes are not a well-formed XML document we are willing to read."""


_parsers = threading.local()


def _parser() -> etree.XMLParser:
    # One parser per thread: lxml parsers keep state and are not safe to share across threads, and
    # building one costs more than parsing a SOAP request (it is reset by every parse).
    parser = getattr(_parsers, "parser", None)
    if parser is None:
        parser = _parsers.parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, dtd_validation=False,
            remove_comments=True, remove_pis=True)
    return parser


def parse_xml(data: bytes) -> etree._Element:
    """Parse untrusted bytes into an element tree, refusing DTDs and malformed documents."""
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise XmlRefused(f"The request is not well-formed XML: {exc.msg}") from None
    info = root.getroottree().docinfo
    if info.doctype or info.internalDTD is not None:
        raise XmlRefused("DTDs are not allowed")
    return root


def resolve_qname(node: etree._Element, value: str) -> tuple[str, str]:
    """(namespace, local name) of a QName-valued attribute such as type="tns:GenericResult"."""
    prefix, _, local = value.rpartition(":")
    namespace = node.nsmap.get(prefix or None)
    if namespace is None:
        raise ValueError(f"undeclared namespace prefix in {value!r}")
    return namespace, local

