"""What a browser and a proxy generator see: ?WSDL, the help page and the ?op= pages."""
from __future__ import annotations

import re
import subprocess
import sys

import httpx
import pytest

from services.app import WSDL_DIR
from services.asmx.contract import load_service

FULL_SERVICES = ["svcUserAdmin", "svcAliasAdmin", "svcDomainAliasAdmin", "svcProductInfo",
                 "svcGlobalUpdate", "svcSpoolAdmin", "svcMailListAdmin", "svcSpamAdmin", "svcVirusAdmin"]
EXAMPLE_ADDRESS = b"http://localhost:9998/Services/%s.asmx"


@pytest.mark.parametrize("name", FULL_SERVICES)
def test_served_wsdl_has_zero_differences_from_the_contract(live_server, contract, name):
    reference, served = contract.wsdls[name], f"{live_server.url}/Services/{name}.asmx?WSDL"
    done = subprocess.run([sys.executable, str(contract.compare), str(reference), served],
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines()[-1] == "0 differences", done.stdout[-3000:]
    assert done.returncode == 0


def test_served_domain_admin_wsdl_differs_from_the_contract_by_the_defined_operations_only(live_server, contract):
    reference, served = contract.wsdls["svcDomainAdmin"], f"{live_server.url}/Services/svcDomainAdmin.asmx?WSDL"
    done = subprocess.run([sys.executable, str(contract.compare), str(reference), served],
                          capture_output=True, text=True, timeout=60)
    lines = done.stdout.splitlines()
    assert lines[-1] == "32 differences" and all(line.startswith("extra ") and "DKIMCert" in line
                                                  for line in lines[:-1]), done.stdout[-3000:]


@pytest.mark.parametrize("path, query", [("/Services/svcAliasAdmin.asmx", "WSDL"),
                                         ("/services/SVCALIASADMIN.ASMX", "wsdl"),
                                         ("/SERVICES/svcAliasAdmin.asmx", "Wsdl")])
def test_served_wsdl_is_the_file_with_the_callers_address(live_server, path, query):
    response = httpx.get(f"{live_server.url}{path}?{query}")
    assert response.status_code == 200 and response.headers["content-type"] == "text/xml; charset=utf-8"
    original = (WSDL_DIR / "svcAliasAdmin.wsdl").read_bytes()
    expected = original.replace(EXAMPLE_ADDRESS % b"svcAliasAdmin", f"{live_server.url}{path}".encode())
    assert response.content == expected
    assert response.content.count(f'location="{live_server.url}{path}"'.encode()) == 4


def test_wsdl_address_follows_the_host_header(live_server):
    response = httpx.get(f"{live_server.url}/Services/svcProductInfo.asmx?wsdl",
                         headers={"Host": "mail.example.net:8080"})
    expected = b'<soap12:address location="http://mail.example.net:8080/Services/svcProductInfo.asmx" />'
    assert expected in response.content


def test_help_page_lists_operations_alphabetically(live_server):
    response = httpx.get(f"{live_server.url}/services/svcdomainaliasadmin.asmx")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    contract = load_service((WSDL_DIR / "svcDomainAliasAdmin.wsdl").read_bytes())
    assert "<title>svcDomainAliasAdmin</title>" in page and contract.documentation in page
    assert ("The following operations are supported. For a formal definition, please review the "
            '<a href="svcDomainAliasAdmin.asmx?WSDL">Service Description</a>.') in page
    links = re.findall(r'<a href="svcDomainAliasAdmin\.asmx\?op=(\w+)">(\w+)</a>', page)
    assert [a for a, b in links] == [b for a, b in links] == sorted(contract.operations, key=str.lower)
    for op in contract.operations.values():
        assert op.documentation in page


def test_operation_page_from_the_local_machine(live_server):
    response = httpx.get(f"{live_server.url}/Services/svcAliasAdmin.asmx?OP=addalias")
    assert response.status_code == 200
    page = response.text
    assert "<h2>AddAlias</h2>" in page and "Create an alias in a domain" in page
    assert "The test form is only available" not in page
    assert '<form target="_blank" action="svcAliasAdmin.asmx/AddAlias" method="POST">' in page
    for name in ("AuthUserName", "AuthPassword", "DomainName", "AliasName", "Addresses"):
        assert f'<input type="text" size="50" name="{name}">' in page
    for protocol in ("SOAP 1.1", "SOAP 1.2", "HTTP GET", "HTTP POST"):
        assert f"<h3>{protocol}</h3>" in page
    host = live_server.url.removeprefix("http://")
    assert f"POST /Services/svcAliasAdmin.asmx HTTP/1.1\nHost: {host}\n" in page
    assert "SOAPAction: &quot;http://tempuri.org/AddAlias&quot;" in page
    assert "&lt;AliasName&gt;string&lt;/AliasName&gt;" in page and "&lt;Result&gt;boolean&lt;/Result&gt;" in page
    assert ("GET /Services/svcAliasAdmin.asmx/AddAlias?AuthUserName=string&amp;AuthPassword=string&amp;"
            "DomainName=string&amp;AliasName=string&amp;Addresses=string&amp;Addresses=string HTTP/1.1") in page
    assert "&lt;soap12:Envelope" in page


def test_test_form_submits_to_the_http_post_binding(live_server):
    live_server.server.admins.reset_primary("chief", "Sturdy-pass-123")
    response = httpx.post(f"{live_server.url}/Services/svcProductInfo.asmx/GetProductInfo",
                          data={"AuthUserName": "chief", "AuthPassword": "Sturdy-pass-123"})
    assert "<Result>true</Result>" in response.text


def test_unknown_operation_page(live_server):
    response = httpx.get(f"{live_server.url}/Services/svcAliasAdmin.asmx?op=Nope<script>")
    assert response.status_code == 404 and response.headers["content-type"].startswith("text/html")
    assert "no operation named <b>Nope&lt;script&gt;</b>" in response.text
