"""SOAP 1.1 / 1.2 envelopes: reading a request into (operation, request element), writing responses
and faults exactly as ASP.NET does.

ASP.NET writes both versions with the prefix `soap` (only its help-page samples say `soap12`), the
declarations in the order soap, xsi, xsd, and no whitespace. Faults are HTTP 500; SOAP 1.1 codes
are Client/Server/VersionMismatch, which SOAP 1.2 spells Sender/Receiver/VersionMismatch.

Dispatch: SOAP 1.1 requires the SOAPAction header; SOAP 1.2 takes the optional `action` parameter
of the Content-Type. When an action is given it must name an operation and agree with the body's
request element; without one (SOAP 1.2 only) the request element alone decides.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from types import MappingProxyType

from lxml import etree

from services.asmx.codec import write
from services.asmx.contract import Operation, Service
from services.asmx.faults import RequestError, VersionMismatch
from services.asmx.xmlutil import SOAP11_ENV, SOAP12_ENV, TNS, XML_DECLARATION, XSD, XSI, XmlRefused, parse_xml


@dataclass(frozen=True)
class SoapVersion:
    label: str
    envelope_ns: str
    media_type: str
    fault_codes: dict[str, str]  # SOAP 1.1 code -> this version's code

    @property
    def content_type(self) -> str:
        return f"{self.media_type}; charset=utf-8"

    @functools.cached_property
    def content_type_header(self) -> bytes:
        return self.content_type.encode("latin-1")

    @functools.cached_property
    def body_tag(self) -> str:
        return f"{{{self.envelope_ns}}}Body"


SOAP11 = SoapVersion("SOAP 1.1", SOAP11_ENV, "text/xml",
                     {"Client": "Client", "Server": "Server", "VersionMismatch": "VersionMismatch"})
SOAP12 = SoapVersion("SOAP 1.2", SOAP12_ENV, "application/soap+xml",
                     {"Client": "Sender", "Server": "Receiver", "VersionMismatch": "VersionMismatch"})


@functools.lru_cache(maxsize=256)
def parse_content_type(header: str) -> tuple[str, Mapping[str, str]]:
    """(media type in lower case, parameters) of a Content-Type header. Remembered: clients send
    the same few headers with every call, and the email package's parser costs more than a login."""
    message = Message()
    message["content-type"] = header
    params = {key.lower(): value for key, value in message.get_params(failobj=[])[1:]}
    return message.get_content_type(), MappingProxyType(params)


def version_for(media_type: str) -> SoapVersion | None:
    return next((v for v in (SOAP11, SOAP12) if v.media_type == media_type), None)


def _unquote(action: str) -> str:
    action = action.strip()
    return action[1:-1] if len(action) >= 2 and action[0] == action[-1] == '"' else action


def action_operation(service: Service, action: str | None) -> Operation | None:
    """The operation a SOAPAction (or SOAP 1.2 action parameter) names, before the body is read; None
    when absent or unknown (`read_request` then checks the body agrees with it)."""
    return None if action is None else service.by_soap_action(_unquote(action))


def read_request(service: Service, version: SoapVersion, body: bytes,
                 action: str | None) -> tuple[Operation, etree._Element]:
    """The operation a request calls and its request element; raises RequestError.

    `action` is the SOAPAction header (SOAP 1.1) or the Content-Type action parameter (SOAP 1.2),
    None when absent."""
    if version is SOAP11 and action is None:
        raise RequestError("The SOAPAction HTTP header is required for SOAP 1.1 requests.")
    try:
        envelope = parse_xml(body)
    except XmlRefused as exc:
        raise RequestError(str(exc)) from None
    if envelope.tag != f"{{{version.envelope_ns}}}Envelope":
        if envelope.tag in (f"{{{SOAP11_ENV}}}Envelope", f"{{{SOAP12_ENV}}}Envelope"):
            raise VersionMismatch(f"A {version.label} request needs an Envelope in the "
                                  f"{version.envelope_ns} namespace.")
        raise RequestError("The request is not a SOAP envelope.")
    # The children walked rather than find(): its path machinery cost ~3 times the walk.
    body_tag = version.body_tag
    for soap_body in envelope:
        if soap_body.tag == body_tag:
            break
    else:
        raise RequestError("The SOAP envelope has no Body.")
    payload = [child for child in soap_body if isinstance(child.tag, str)]
    if len(payload) != 1:
        raise RequestError("The SOAP Body must contain exactly one request element.")
    request = payload[0]
    by_body = service.by_request_tag(request.tag)

    if action is not None:
        action = _unquote(action)
        by_action = service.by_soap_action(action)
        if by_action is None:
            raise RequestError(f"Server did not recognize the value of HTTP Header SOAPAction: {action}.")
        if by_action is not by_body:
            raise RequestError(f"The SOAPAction {action} does not match the request element {request.tag}.")
    if by_body is None:
        raise RequestError(f"Server did not recognize the request element {request.tag}.")
    return by_body, request


def _envelope(version: SoapVersion) -> tuple[etree._Element, etree._Element]:
    """A new (Envelope, Body) pair."""
    env = version.envelope_ns
    root = etree.Element(f"{{{env}}}Envelope", nsmap={"soap": env, "xsi": XSI, "xsd": XSD})
    return root, etree.SubElement(root, f"{{{env}}}Body")


def _serialise(root: etree._Element) -> bytes:
    return XML_DECLARATION + etree.tostring(root, encoding="utf-8")


@functools.cache
def _response_frame(envelope_ns: str, response_element: str) -> tuple[str, str, str]:
    """(start, end, empty form) of an operation's response up to its result, as lxml would write them."""
    start = (f'<soap:Envelope xmlns:soap="{envelope_ns}" xmlns:xsi="{XSI}" xmlns:xsd="{XSD}"><soap:Body>'
             f'<{response_element} xmlns="{TNS}">')
    end = f"</{response_element}></soap:Body></soap:Envelope>"
    return start, end, f'{start[:-1]}/>{end[len(response_element) + 3:]}'


def response(service: Service, version: SoapVersion, op: Operation, value: object) -> bytes:
    start, end, empty = _response_frame(version.envelope_ns, op.response_element)
    out = [start]
    if op.result is not None:
        write(service, out, op.result, value)
    if len(out) == 1:
        return XML_DECLARATION + empty.encode()
    out.append(end)
    return XML_DECLARATION + "".join(out).encode()


def fault(version: SoapVersion, code: str, message: str) -> bytes:
    root, body = _envelope(version)
    env = version.envelope_ns
    # The fault code is a QName: written with the envelope's own prefix, declared on the root.
    value = f"soap:{version.fault_codes[code]}"
    fault_element = etree.SubElement(body, f"{{{env}}}Fault")
    if version is SOAP11:
        etree.SubElement(fault_element, "faultcode").text = value
        etree.SubElement(fault_element, "faultstring").text = message
        etree.SubElement(fault_element, "detail")
    else:
        etree.SubElement(etree.SubElement(fault_element, f"{{{env}}}Code"), f"{{{env}}}Value").text = value
        text = etree.SubElement(etree.SubElement(fault_element, f"{{{env}}}Reason"), f"{{{env}}}Text")
        text.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
        text.text = message
        etree.SubElement(fault_element, f"{{{env}}}Detail")
    return _serialise(root)
