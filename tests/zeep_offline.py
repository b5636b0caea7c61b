"""A zeep transport for machines without internet access.

ASP.NET's WSDLs import the SOAP encoding namespace (for the HTTP bindings' StringArray type), and
zeep fetches that schema from schemas.xmlsoap.org. Online clients do exactly that; the test
machines cannot, so this transport answers that one URL with the part of the schema the WSDLs use.
"""
from __future__ import annotations

import zeep

SOAP_ENCODING = "http://schemas.xmlsoap.org/soap/encoding/"

# soapenc:Array as the W3C note defines it, reduced to what a restriction of it needs.
SOAP_ENCODING_SCHEMA = b"""<?xml version="1.0" encoding="utf-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:tns="http://schemas.xmlsoap.org/soap/encoding/"
           targetNamespace="http://schemas.xmlsoap.org/soap/encoding/">
  <xs:attribute name="arrayType" type="xs:string"/>
  <xs:attribute name="offset" type="xs:string"/>
  <xs:complexType name="Array">
    <xs:sequence>
      <xs:any namespace="##any" minOccurs="0" maxOccurs="unbounded" processContents="lax"/>
    </xs:sequence>
    <xs:attribute ref="tns:arrayType"/>
    <xs:attribute ref="tns:offset"/>
  </xs:complexType>
</xs:schema>
"""


class OfflineTransport(zeep.Transport):
    def load(self, url: str) -> bytes:
        if url == SOAP_ENCODING:
            return SOAP_ENCODING_SCHEMA
        return super().load(url)
