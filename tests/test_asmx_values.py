"""Value conversion and the XML codec, driven by the real operation tables."""
from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from lxml import etree

from mailsrv.core.errors import MailsrvError, ResultCode
from services.app import WSDL_DIR
from services.asmx import httpbind, soap
from services.asmx.access import Access
from services.asmx.codec import decode_request
from services.asmx.contract import load_service
from services.asmx.dispatch import invoke
from services.asmx.endpoint import _soap_headers
from services.asmx.faults import RequestError, ResultShapeError
from services.asmx.helppages import LOCAL_ONLY, is_local_client, operation_page
from services.asmx.registry import BoundService
from services.asmx.values import BadValue, format_value, parse_value
from services.asmx.wsdl_serve import PublishedWsdl

UTC = dt.timezone.utc
USERS = load_service((WSDL_DIR / "svcUserAdmin.wsdl").read_bytes())
ALIASES = load_service((WSDL_DIR / "svcAliasAdmin.wsdl").read_bytes())
ADMINS = load_service((WSDL_DIR / "svcServerAdmin.wsdl").read_bytes())
NS = 'xmlns="http://tempuri.org/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'


@pytest.mark.parametrize("type_name, text, value", [
    ("boolean", "true", True), ("boolean", "0", False), ("boolean", "True", True), ("boolean", " FALSE ", False),
    ("int", "-2147483648", -2147483648), ("int", "+7", 7), ("long", "9223372036854775807", 2 ** 63 - 1),
    ("string", " kept as sent ", " kept as sent "),
    ("guid", "6F9619FF-8B86-D011-B42D-00CF4FC964FF", "6f9619ff-8b86-d011-b42d-00cf4fc964ff"),
    ("dateTime", "2026-01-02", dt.datetime(2026, 1, 2, tzinfo=UTC)),
    ("dateTime", "2026-01-02T03:04:05", dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ("dateTime", "2026-01-02T03:04:05Z", dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ("dateTime", "2026-01-02T03:04:05.1234567-05:00", dt.datetime(2026, 1, 2, 8, 4, 5, 123456, tzinfo=UTC)),
])
def test_values_read(type_name, text, value):
    parsed = parse_value(type_name, text)
    assert parsed == value and type(parsed) is type(value)
    if type_name == "dateTime":
        assert parsed.tzinfo is UTC


@pytest.mark.parametrize("type_name, text", [
    ("boolean", "yes"), ("int", "2147483648"), ("int", "1_000"), ("int", "١٢"), ("int", ""),
    ("long", "9223372036854775808"),
    ("guid", "not-a-guid"), ("dateTime", "2026-02-30"), ("dateTime", "20260102"), ("dateTime", "2026-01-02 03:04"),
])
def test_values_refused(type_name, text):
    with pytest.raises(BadValue):
        parse_value(type_name, text)


def test_values_written():
    assert format_value("boolean", True) == "true" and format_value("int", 5) == "5"
    assert format_value("dateTime", dt.datetime(1, 1, 1)) == "0001-01-01T00:00:00"
    berlin = dt.timezone(dt.timedelta(hours=2))
    assert format_value("dateTime", dt.datetime(2026, 6, 1, 12, 0, 0, 999, tzinfo=berlin)) == "2026-06-01T10:00:00"


def _request(xml: str, service=USERS) -> tuple:
    element = etree.fromstring(xml)
    op = service.operations[etree.QName(element).localname]
    return op, decode_request(service, op, element)


def test_soap_parameters_follow_xmlserializer_defaults():
    op, params = _request(f'<GetLastLoginTimes {NS}><EmailAddress>a@b.example</EmailAddress>'
                          f'<DateStart xsi:nil="true"/><DateEnd>2026-01-31</DateEnd></GetLastLoginTimes>')
    assert params == {"AuthUserName": None, "AuthPassword": None, "EmailAddress": "a@b.example",
                      "DateStart": None, "DateEnd": dt.datetime(2026, 1, 31, tzinfo=UTC)}
    # Absent value types take .NET's defaults; absent arrays are empty; unqualified children count.
    _, params = _request('<ns:GetUserGroupsByUser xmlns:ns="http://tempuri.org/"><UserName>bob</UserName>'
                         '<Unknown>ignored</Unknown></ns:GetUserGroupsByUser>')
    assert params["UserName"] == "bob" and params["IncludeUserNames"] is False and params["AuthUserName"] is None
    _, params = _request(f'<AddAlias {NS}><AliasName></AliasName><Addresses><string>a@x.example</string>'
                         f'<string xsi:nil="true"/><string/></Addresses></AddAlias>', ALIASES)
    assert params["AliasName"] == "" and params["Addresses"] == ["a@x.example", None, ""]
    assert _request(f'<AddAlias {NS}/>', ALIASES)[1]["Addresses"] == []


@pytest.mark.parametrize("xml, fragment", [
    (f'<GetUserGroupsByUser {NS}><IncludeUserNames>maybe</IncludeUserNames></GetUserGroupsByUser>',
     "IncludeUserNames: 'maybe' is not a boolean"),
    (f'<GetUserGroupsByUser {NS}><IncludeUserNames xsi:nil="true"/></GetUserGroupsByUser>', "cannot be nil"),
    (f'<GetUserGroupsByUser {NS}><UserName>a</UserName><UserName>b</UserName></GetUserGroupsByUser>',
     "given more than once"),
])
def test_soap_parameters_refused(xml, fragment):
    with pytest.raises(RequestError, match=fragment):
        _request(xml)


def test_complex_parameters_decode_into_mappings(contract):
    full = load_service(contract.wsdls["svcServerAdmin"].read_bytes())
    _, params = _request(f'<AddIncomingGateway {NS}><newIncomingGateway><IPAddress>192.0.2.7</IPAddress>'
                         f'<domainsToForward><string>a.example</string></domainsToForward>'
                         f'</newIncomingGateway></AddIncomingGateway>', full)
    gateway = params["newIncomingGateway"]
    assert set(gateway) == {f.name for f in full.types["IncomingGatewayAttributes"].fields}
    assert (gateway["IPAddress"], gateway["domainsToForward"], gateway["enableSpamActions"], gateway["guid"]) == (
        "192.0.2.7", ["a.example"], False, None)


def test_results_follow_the_wsdl():
    op = ADMINS.operations["ListSystemAdmins"]
    created = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    body = soap.response(ADMINS, soap.SOAP11, op, {"Result": True, "ResultCode": 0, "Admins": [
        {"ID": "x", "Username": "chief", "IsPrimaryAdmin": True, "DateCreated": created}, None]})
    text = body.decode()
    assert ("<SystemAdminResult><ID>x</ID><Username>chief</Username><IsPrimaryAdmin>true</IsPrimaryAdmin>"
            "<RestrictedByIp>false</RestrictedByIp><DateCreated>2026-03-04T05:06:07</DateCreated></SystemAdminResult>"
            '<SystemAdminResult xsi:nil="true"/>') in text
    assert "<Message>" not in text and "<Description>" not in text  # null minOccurs=0 fields are omitted
    void = USERS.operations["RemoveFromMigrationQueue"]
    assert soap.response(USERS, soap.SOAP12, void, None).endswith(
        b'<soap:Body><RemoveFromMigrationQueueResponse xmlns="http://tempuri.org/"/></soap:Body></soap:Envelope>')
    with pytest.raises(ResultShapeError, match="no field Usrname"):
        soap.response(ADMINS, soap.SOAP11, op, {"Admins": [{"Usrname": "typo"}]})


def test_request_headers_read_in_one_pass_take_the_first_of_each():
    scope = {"headers": [(b"soapaction", b'"http://tempuri.org/A"'), (b"content-type", b"text/xml"),
                         (b"soapaction", b'"http://tempuri.org/B"')]}
    assert _soap_headers(scope) == ("text/xml", '"http://tempuri.org/A"', "")
    scope["headers"] += [(b"content-length", b"5"), (b"content-type", b"application/soap+xml"), (b"content-length", b"9")]
    assert _soap_headers(scope) == ("text/xml", '"http://tempuri.org/A"', "5")


def test_result_fields_written_unindented_and_indented_alike():
    """A SOAP result's simple fields are written by write_members itself (no indent); the HTTP
    bindings' indented ones by the general path: the same text, escapes and refusals either way."""
    op = ALIASES.operations["GetAlias"]
    value = {"Result": True, "ResultCode": 7, "Message": "a<b & c\r", "AliasInfo": {"Name": "t>", "Addresses": []}}
    soap_text = soap.response(ALIASES, soap.SOAP11, op, value).decode()
    bare = httpbind.result_document(ALIASES, op, value).decode()
    for fragment in ("<Result>true</Result>", "<ResultCode>7</ResultCode>", "<Message>a&lt;b &amp; c&#13;</Message>",
                     "<Name>t&gt;</Name>"):
        assert fragment in soap_text and fragment in bare
    for write in (lambda v: soap.response(ALIASES, soap.SOAP11, op, v), lambda v: httpbind.result_document(ALIASES, op, v)):
        with pytest.raises(ValueError, match="XML compatible"):
            write({**value, "Message": "bell\x07"})


def test_bare_result_document_is_indented_like_xmlserializer():
    op = ALIASES.operations["GetAlias"]
    doc = httpbind.result_document(ALIASES, op, {"Result": True, "ResultCode": 0,
                                                 "AliasInfo": {"Name": "team", "Addresses": ["a@x.example"]}})
    assert doc.decode() == (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<AliasInfoResult xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns="http://tempuri.org/">\n'
        "  <Result>true</Result>\n  <ResultCode>0</ResultCode>\n  <AliasInfo>\n    <Name>team</Name>\n"
        "    <Addresses>\n      <string>a@x.example</string>\n    </Addresses>\n  </AliasInfo>\n</AliasInfoResult>")


def test_http_parameters():
    op = ALIASES.operations["AddAlias"]
    params = httpbind.decode_pairs(ALIASES, op, [("domainname", "x.example"), ("ADDRESSES", "a@x.example"),
                                                 ("Addresses", "b@x.example"), ("extra", "ignored")])
    assert params == {"AuthUserName": None, "AuthPassword": None, "DomainName": "x.example", "AliasName": None,
                      "Addresses": ["a@x.example", "b@x.example"]}
    flag = USERS.operations["GetUserGroupsByUser"]
    with pytest.raises(RequestError, match=r"^Missing parameter: IncludeUserNames\.$"):
        httpbind.decode_pairs(USERS, flag, [])
    with pytest.raises(RequestError, match="IncludeUserNames: 'sure' is not a boolean"):
        httpbind.decode_pairs(USERS, flag, [("IncludeUserNames", "sure")])


async def _outcome(service, op_name, handler):
    bound = BoundService(service, {op_name: handler}, {op_name: Access(None)},
                         PublishedWsdl((WSDL_DIR / f"{service.name}.wsdl").read_bytes()))
    return await invoke(bound, service.operations[op_name], {}, None)


def _refuse(*_):
    raise MailsrvError(ResultCode.PERMISSION_DENIED, "Not yours.")


@pytest.mark.parametrize("returned, expected", [
    (None, {"Result": True, "ResultCode": 0}),
    ({"AliasInfo": {"Name": "t"}}, {"Result": True, "ResultCode": 0, "Message": None, "AliasInfo": {"Name": "t"}}),
])
def test_success_is_filled_in(returned, expected):
    assert asyncio.run(_outcome(ALIASES, "GetAlias", lambda call: returned)) == expected


def test_refusals_become_results_or_faults():
    assert asyncio.run(_outcome(ALIASES, "GetAlias", _refuse)) == {"Result": False, "ResultCode": -5,
                                                                    "Message": "Not yours."}
    assert asyncio.run(_outcome(USERS, "LoginValidated", _refuse)) == {"LoginValidated": False, "ResultCode": -5,
                                                                       "Message": "Not yours."}
    # An array result (GetMigrationStatus) or a void operation cannot say Result=false: a client fault.
    for name in ("GetMigrationStatus", "RemoveFromMigrationQueue"):
        with pytest.raises(RequestError, match="Not yours"):
            asyncio.run(_outcome(USERS, name, _refuse))


@pytest.mark.parametrize("host, local", [
    ("127.0.0.1", True), ("127.10.0.3", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("192.168.1.20", False), ("10.0.0.1", False), ("2001:db8::1", False), ("::ffff:192.0.2.1", False),
    ("testclient", False), ("", False), (None, False),
])
def test_local_client_decision(host, local):
    assert is_local_client(host) is local


def test_remote_callers_get_no_test_form():
    op = ALIASES.operations["AddAlias"]
    remote = operation_page(ALIASES, op, "/Services/svcAliasAdmin.asmx", "mail.example:9998", local=False)
    assert LOCAL_ONLY in remote and "<form" not in remote
    local = operation_page(ALIASES, op, "/Services/svcAliasAdmin.asmx", "mail.example:9998", local=True)
    assert LOCAL_ONLY not in local and 'action="svcAliasAdmin.asmx/AddAlias" method="POST"' in local
    soap_only = operation_page(USERS, USERS.operations["GetLastLoginTimes"], "/S/svcUserAdmin.asmx", "h", local=True)
    assert "<form" not in soap_only and "HTTP GET" not in soap_only and "SOAP 1.2" in soap_only
