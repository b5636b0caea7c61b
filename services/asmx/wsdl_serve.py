"""The WSDL document as published at ?WSDL: the file in wsdl/, byte for byte, except that every
port address names the URL the client used (as ASP.NET does), so generated proxies call back the
host, port and path they fetched the description from."""
from __future__ import annotations

import re
from xml.sax.saxutils import escape

from services.asmx.contract import ContractError
from services.asmx.xmlutil import WSDL, parse_xml


class PublishedWsdl:
    def __init__(self, data: bytes) -> None:
        root = parse_xml(data)
        addresses = [node.get("location") for node in root.iterfind(f"{{{WSDL}}}service/{{{WSDL}}}port/*")
                     if node.get("location") is not None]
        if not addresses:
            raise ContractError("the WSDL service declares no port address")
        # Split the original bytes around the address attributes instead of re-serialising the
        # tree, so that everything else is served exactly as written in the file.
        pattern = b"|".join(re.escape(b'location="' + escape(a, {'"': "&quot;"}).encode() + b'"')
                            for a in set(addresses))
        self._pieces = re.split(pattern, data)
        if len(self._pieces) != len(addresses) + 1:
            raise ContractError("the port addresses are not written as plain location=\"...\" attributes")

    def render(self, address: str) -> bytes:
        attribute = b'location="' + escape(address, {'"': "&quot;"}).encode() + b'"'
        return attribute.join(self._pieces)
