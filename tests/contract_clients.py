"""Clients a control panel would use, behind one `call(service, operation, **params)` shape.

Results come back as plain values (dicts, lists, bools, ints, strings) so that one provisioning
sequence can be asserted identically over zeep SOAP 1.1, zeep SOAP 1.2, HTTP GET and HTTP POST."""
from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

import httpx
import zeep
import zeep.helpers
from lxml import etree

from zeep_offline import OfflineTransport

TNS = "{http://tempuri.org/}"
# Item element names of the arrays the contract uses: an element whose children all carry one of
# these names is a list.
ARRAY_ITEMS = {"string", "dateTime", "AliasInfo", "DomainStatInfo", "UserInfo", "DomainAliasInfo",
               "SystemAdminResult", "UserQuota", "DomainForwardBlockInfo", "UserGroupInfo", "RSSFeed",
               "UserLoginInfo", "StatusResult", "FolderAutoCleanRuleResult", "HostnameResult", "ServerPortResult",
               "WhitelistResult", "BlacklistResult", "SMTPAuthBypassResult", "SMTPBlockedSenderResult", "SpoolMessageInfo"}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(next(iter(value.values())), list):
            return [_plain(v) for v in next(iter(value.values()))]
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class ZeepClient:
    def __init__(self, base_url: str, soap12: bool = False) -> None:
        self.base_url = base_url
        self.soap12 = soap12
        self._services: dict[str, Any] = {}

    def call(self, service: str, operation: str, /, **params: Any) -> Any:  # /: a parameter may be named service
        if service not in self._services:
            client = zeep.Client(f"{self.base_url}/Services/{service}.asmx?WSDL", transport=OfflineTransport())
            port = f"{service}Soap12" if self.soap12 else f"{service}Soap"
            self._services[service] = client.bind(service, port)
        # zeep takes an ArrayOfString as its wrapper object; a bare list would send only one item.
        params = {k: {"string": v} if isinstance(v, list) else v for k, v in params.items()}
        result = getattr(self._services[service], operation)(**params)
        return _plain(zeep.helpers.serialize_object(result, dict))


def _text_value(text: str | None) -> Any:
    if text is None:
        return None
    if text in ("true", "false"):
        return text == "true"
    if text.lstrip("-").isdigit() and len(text) < 20:
        return int(text)
    return text


def xml_to_plain(element: etree._Element) -> Any:
    children = list(element)
    if element.get("{http://www.w3.org/2001/XMLSchema-instance}nil") == "true":
        return None
    if not children:
        return _text_value(element.text) if element.text is not None else ""
    names = {etree.QName(c).localname for c in children}
    if len(names) == 1 and names <= ARRAY_ITEMS:
        return [xml_to_plain(c) for c in children]
    return {etree.QName(c).localname: xml_to_plain(c) for c in children}


class HttpClient:
    """The plain HTTP GET / form POST bindings, as old scripts call them."""

    def __init__(self, base_url: str, method: str) -> None:
        self.base_url = base_url
        self.method = method
        self.http = httpx.Client(timeout=30)

    @staticmethod
    def _pairs(params: dict[str, Any]) -> list[tuple[str, str]]:
        pairs = []
        for key, value in params.items():
            values = value if isinstance(value, list) else [value]
            for item in values:
                if isinstance(item, bool):
                    item = "true" if item else "false"
                elif isinstance(item, dt.datetime):
                    item = item.isoformat()
                pairs.append((key, "" if item is None else str(item)))
        return pairs

    def call(self, service: str, operation: str, /, **params: Any) -> Any:  # /: a parameter may be named service
        url = f"{self.base_url}/Services/{service}.asmx/{operation}"
        if self.method == "GET":
            response = self.http.get(url, params=self._pairs(params))
        else:
            response = self.http.post(url, content=urlencode(self._pairs(params)),
                                      headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/xml")
        return xml_to_plain(etree.fromstring(response.content))


def make_client(kind: str, base_url: str) -> ZeepClient | HttpClient:
    return {"soap11": lambda: ZeepClient(base_url),
            "soap12": lambda: ZeepClient(base_url, soap12=True),
            "get": lambda: HttpClient(base_url, "GET"),
            "post": lambda: HttpClient(base_url, "POST")}[kind]()


def ok(result: dict) -> dict:
    """A result that succeeded (Result true, ResultCode 0), returned for reading its fields."""
    assert result["Result"] is True and result["ResultCode"] == 0, result
    return result


def refused(result: dict) -> tuple[int, str]:
    """A result that failed: its ResultCode and Message."""
    assert result["Result"] is False, result
    return result["ResultCode"], result["Message"]
