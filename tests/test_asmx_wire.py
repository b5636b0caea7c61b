"""The ASMX bindings over a real socket: SOAP 1.1, SOAP 1.2, HTTP GET and HTTP POST round trips, and
every way a request is refused, with its exact HTTP status and fault code."""
from __future__ import annotations

import datetime as dt
import logging

import httpx
import pytest
import zeep
from lxml import etree
from zeep_offline import OfflineTransport

ADMIN, PASSWORD = "chief", "Sturdy-pass-123"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
PRODUCT = "/Services/svcProductInfo.asmx"
TNS = "{http://tempuri.org/}"


@pytest.fixture
def live(live_server):
    live_server.server.admins.reset_primary(ADMIN, PASSWORD)
    return live_server


def envelope(op: str, params: str = "", ns: str = SOAP11, prolog: str = "") -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?>{prolog}<soap:Envelope xmlns:soap="{ns}"><soap:Body>'
            f'<{op} xmlns="http://tempuri.org/">{params}</{op}></soap:Body></soap:Envelope>').encode()


def login(user: str = ADMIN, password: str = PASSWORD) -> str:
    return f"<AuthUserName>{user}</AuthUserName><AuthPassword>{password}</AuthPassword>"


def post11(live, body: bytes, action: str | None, path: str = PRODUCT) -> httpx.Response:
    headers = {"Content-Type": "text/xml; charset=utf-8"}
    if action is not None:
        headers["SOAPAction"] = action
    return httpx.post(live.url + path, content=body, headers=headers)


def post12(live, body: bytes, action: str | None = None, path: str = PRODUCT) -> httpx.Response:
    content_type = "application/soap+xml; charset=utf-8" + (f'; action="{action}"' if action else "")
    return httpx.post(live.url + path, content=body, headers={"Content-Type": content_type})


def fault_of(response: httpx.Response, ns: str = SOAP11) -> tuple[str, str]:
    root = etree.fromstring(response.content)
    fault = root.find(f"{{{ns}}}Body/{{{ns}}}Fault")
    if ns == SOAP11:
        return fault.findtext("faultcode"), fault.findtext("faultstring")
    return (fault.findtext(f"{{{ns}}}Code/{{{ns}}}Value"), fault.findtext(f"{{{ns}}}Reason/{{{ns}}}Text"))


def test_soap11_round_trip_in_aspnet_form(live):
    for action in ('"http://tempuri.org/GetProductInfo"', "http://tempuri.org/GetProductInfo"):
        response = post11(live, envelope("GetProductInfo", login()), action)
        assert response.status_code == 200 and response.headers["content-type"] == "text/xml; charset=utf-8"
        assert response.text.startswith(
            '<?xml version="1.0" encoding="utf-8"?>'
            '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
            '<soap:Body><GetProductInfoResponse xmlns="http://tempuri.org/"><GetProductInfoResult>'
            "<Result>true</Result><ResultCode>0</ResultCode><ProductName>")


def test_soap12_round_trip_with_and_without_action(live):
    for action in ("http://tempuri.org/GetProductInfo", None):
        response = post12(live, envelope("GetProductInfo", login(), ns=SOAP12), action)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/soap+xml; charset=utf-8"
        assert response.text.startswith(f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP12}"')
        result = etree.fromstring(response.content).find(f".//{TNS}GetProductInfoResult")
        assert result.findtext(f"{TNS}Result") == "true" and result.findtext(f"{TNS}ProductName")


def test_refusal_is_a_normal_result_not_a_fault(live):
    response = post11(live, envelope("GetProductInfo", login(password="wrong")), "http://tempuri.org/GetProductInfo")
    result = etree.fromstring(response.content).find(f".//{TNS}GetProductInfoResult")
    assert response.status_code == 200
    assert (result.findtext(f"{TNS}Result"), result.findtext(f"{TNS}ResultCode")) == ("false", "-1")
    assert result.findtext(f"{TNS}Message")


USERS = "/Services/svcUserAdmin.asmx"


def _soap11(live, path: str, op: str, params: str) -> httpx.Response:
    return post11(live, envelope(op, params), f"http://tempuri.org/{op}", path)


def _result(response: httpx.Response, op: str, status: str = "Result") -> tuple[int, str, str]:
    result = etree.fromstring(response.content).find(f".//{TNS}{op}Result")
    return response.status_code, result.findtext(f"{TNS}{status}"), result.findtext(f"{TNS}ResultCode")


def test_each_operation_logs_in_with_its_own_credential_parameters(live):
    # svcServerAdmin spells them authUsername/authPassword in most operations, AuthUserName in others.
    admins = "/Services/svcServerAdmin.asmx"
    lower = f"<authUsername>{ADMIN}</authUsername><authPassword>{PASSWORD}</authPassword>"
    assert _result(_soap11(live, admins, "ListSystemAdmins", lower), "ListSystemAdmins") == (200, "true", "0")
    assert _result(_soap11(live, admins, "ListSystemAdmins", login()), "ListSystemAdmins") == (200, "false", "-1")
    assert _result(_soap11(live, admins, "GetEdition", login()), "GetEdition") == (200, "true", "0")
    assert _result(_soap11(live, admins, "GetEdition", lower), "GetEdition") == (200, "false", "-1")


def test_refused_login_is_answered_in_each_result_shape(live):
    bad = login(password="wrong")
    assert _result(_soap11(live, USERS, "GetUsers", bad + "<DomainName>x.example</DomainName>"),
                   "GetUsers") == (200, "false", "-1")
    # No Result field to say false in (an array, a void operation): a client fault with the message.
    item = "<itemID>00000000-0000-0000-0000-000000000001</itemID>"
    for op, params in (("GetMigrationStatus", bad), ("RemoveFromMigrationQueue", bad + item)):
        response = _soap11(live, USERS, op, params)
        assert response.status_code == 500
        assert fault_of(response) == ("soap:Client", "Failed to log in: the user name or password is incorrect.")
    # The operations that check credentials themselves, anonymously.
    own = "<Username>nobody@x.example</Username><Password>wrong</Password>"
    assert _result(_soap11(live, USERS, "LoginValidated", own), "LoginValidated",
                   "LoginValidated") == (200, "false", "-1")
    own = "<UserName>nobody</UserName><DomainName>x.example</DomainName><Password>wrong</Password>"
    assert _result(_soap11(live, USERS, "AuthenticateUser", own), "AuthenticateUser") == (200, "false", "-1")


@pytest.mark.parametrize("port", ["svcServerAdminSoap", "svcServerAdminSoap12"])
def test_zeep_proxies_from_our_wsdl(live, port):
    wsdl = f"{live.url}/Services/svcServerAdmin.asmx?WSDL"
    client = zeep.Client(wsdl, transport=OfflineTransport()).bind("svcServerAdmin", port)
    result = client.ListSystemAdmins(authUsername=ADMIN, authPassword=PASSWORD)
    assert result.Result is True and result.ResultCode == 0
    (admin,) = result.Admins.SystemAdminResult
    assert admin.Username == ADMIN and admin.IsPrimaryAdmin is True and isinstance(admin.DateCreated, dt.datetime)
    assert client.GetEdition(AuthUserName=ADMIN, AuthPassword="wrong").ResultCode == -1


def test_http_get_and_post_answer_the_bare_result(live):
    url = f"{live.url}{PRODUCT}/GetProductInfo"
    for response in (httpx.get(url, params={"AuthUserName": ADMIN, "AuthPassword": PASSWORD}),
                     httpx.post(url, data={"authusername": ADMIN, "AUTHPASSWORD": PASSWORD})):
        assert response.status_code == 200 and response.headers["content-type"] == "text/xml; charset=utf-8"
        assert response.text.startswith(
            '<?xml version="1.0" encoding="utf-8"?>\n<ProductInfoResult xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
            ' xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns="http://tempuri.org/">\n  <Result>true</Result>\n'
            "  <ResultCode>0</ResultCode>\n")


def test_arrays_over_every_binding(live):
    server = live.server
    actor = server.login(ADMIN, PASSWORD, "127.0.0.1")
    server.domains.add(actor, "arrays.example", "", "postmaster", "Domain-pass-1", "", "", {})
    base = f"{live.url}/Services/svcAliasAdmin.asmx"
    common = {"AuthUserName": ADMIN, "AuthPassword": PASSWORD, "DomainName": "arrays.example"}
    got = httpx.get(f"{base}/AddAlias", params=[*common.items(), ("AliasName", "team"),
                                                ("Addresses", "a@arrays.example"), ("Addresses", "b@arrays.example")])
    assert "<Result>true</Result>" in got.text, got.text
    body = envelope("AddAlias", login() + "<DomainName>arrays.example</DomainName><AliasName>crew</AliasName>"
                    "<Addresses><string>c@arrays.example</string></Addresses>")
    added = post11(live, body, "http://tempuri.org/AddAlias", "/Services/svcAliasAdmin.asmx")
    assert "<Result>true</Result>" in added.text
    proxy = zeep.Client(f"{base}?WSDL", transport=OfflineTransport()).bind("svcAliasAdmin", "svcAliasAdminSoap12")
    assert proxy.AddAlias(**common, AliasName="desk", Addresses={"string": ["d@arrays.example"]}).Result is True
    listed = etree.fromstring(httpx.post(f"{base}/GetAliases", data=common).content)
    aliases = {a.findtext(f"{TNS}Name"): [s.text for s in a.iter(f"{TNS}string")]
               for a in listed.iter(f"{TNS}AliasInfo")}
    assert aliases == {"team": ["a@arrays.example", "b@arrays.example"], "crew": ["c@arrays.example"],
                       "desk": ["d@arrays.example"]}
    via_zeep = {a.Name: a.Addresses.string for a in proxy.GetAliases(**common).AliasInfos.AliasInfo}
    assert via_zeep == aliases


def test_http_binding_refusals_are_plain_text_500(live):
    base = f"{live.url}/Services/svcDomainAdmin.asmx/DeleteDomain"
    missing = httpx.get(base, params={"AuthUserName": ADMIN, "AuthPassword": PASSWORD, "DomainName": "x.example"})
    assert (missing.status_code, missing.text) == (500, "Missing parameter: DeleteFiles.")
    assert missing.headers["content-type"].startswith("text/plain")
    bad = httpx.post(base, data={"DomainName": "x.example", "DeleteFiles": "perhaps"})
    assert bad.status_code == 500 and "DeleteFiles: 'perhaps' is not a boolean" in bad.text
    large = httpx.get(f"{live.url}/Services/svcDomainAdmin.asmx/UpdateDomain", params={"ImapPort": "99999999999"})
    assert large.status_code == 500 and "outside the range" in large.text


def test_soap_bad_value_is_a_client_fault(live):
    body = envelope("DeleteDomain", login() + "<DomainName>x.example</DomainName><DeleteFiles>perhaps</DeleteFiles>")
    response = post11(live, body, "http://tempuri.org/DeleteDomain", "/Services/svcDomainAdmin.asmx")
    assert response.status_code == 500 and fault_of(response)[0] == "soap:Client"
    assert "DeleteFiles" in fault_of(response)[1]


@pytest.mark.parametrize("date", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:00:00-14:00"])
def test_date_outside_what_a_datetime_holds_is_a_client_fault(live, date):
    body = envelope("GetAllDomainStatistics", login() + f"<StartDate>{date}</StartDate>"
                    "<EndDate>2026-01-01T00:00:00</EndDate>")
    response = post11(live, body, "http://tempuri.org/GetAllDomainStatistics", "/Services/svcDomainAdmin.asmx")
    assert response.status_code == 500
    code, message = fault_of(response)
    assert code == "soap:Client" and "StartDate" in message and "outside" in message


ACTION = "http://tempuri.org/GetProductInfo"


@pytest.mark.parametrize("body, action, fragment", [
    (b"<soap:Envelope", ACTION, "not well-formed"),
    (b"<nope/>", ACTION, "not a SOAP envelope"),
    (f'<soap:Envelope xmlns:soap="{SOAP11}"/>'.encode(), ACTION, "no Body"),
    (envelope("GetProductInfo"), None, "SOAPAction HTTP header is required"),
    (envelope("GetProductInfo"), '"http://tempuri.org/NoSuchOperation"', "did not recognize the value of HTTP Header"),
    (envelope("GetProductInfo"), '"http://tempuri.org/GetLicenseInfo"', "does not match the request element"),
    (envelope("NoSuchOperation"), ACTION, "does not match"),
    (envelope("GetProductInfo", "<AuthUserName>a</AuthUserName><AuthUserName>b</AuthUserName>"), ACTION,
     "more than once"),
])
def test_soap11_client_faults(live, body, action, fragment):
    response = post11(live, body, action)
    assert response.status_code == 500 and response.headers["content-type"] == "text/xml; charset=utf-8"
    code, message = fault_of(response)
    assert code == "soap:Client" and fragment in message


@pytest.mark.parametrize("body, action, fragment", [
    (envelope("NoSuchOperation", ns=SOAP12), None, "did not recognize the request element"),
    (envelope("GetProductInfo", ns=SOAP12), "http://tempuri.org/SetLicenseKey", "does not match"),
    (b"not xml", None, "not well-formed"),
])
def test_soap12_sender_faults(live, body, action, fragment):
    response = post12(live, body, action)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/soap+xml; charset=utf-8"
    code, message = fault_of(response, SOAP12)
    assert code == "soap:Sender" and fragment in message


def test_envelope_of_the_other_version_is_a_version_mismatch(live):
    response = post12(live, envelope("GetProductInfo", login()))
    assert response.status_code == 500 and fault_of(response, SOAP12)[0] == "soap:VersionMismatch"


@pytest.mark.parametrize("soap12", [False, True])
def test_unexpected_handler_error_is_a_generic_server_fault(live, monkeypatch, caplog, soap12):
    def broken(*_args):
        raise RuntimeError("database at /var/secret/mailsrv.db is on fire")

    monkeypatch.setattr(live.server.auth, "login", broken)
    with caplog.at_level(logging.ERROR):
        if soap12:
            response = post12(live, envelope("GetProductInfo", login(), ns=SOAP12), ACTION)
        else:
            response = post11(live, envelope("GetProductInfo", login()), ACTION)
    assert response.status_code == 500
    code, message = fault_of(response, SOAP12 if soap12 else SOAP11)
    assert code == ("soap:Receiver" if soap12 else "soap:Server")
    assert message == "Server was unable to process request." and "secret" not in response.text
    assert "on fire" in caplog.text and "Traceback" in caplog.text
    plain = httpx.get(f"{live.url}{PRODUCT}/GetProductInfo", params={"AuthUserName": ADMIN, "AuthPassword": PASSWORD})
    assert (plain.status_code, plain.text) == (500, "Server was unable to process request.")


XXE = '<!DOCTYPE soap:Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
LAUGHS = '<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'


@pytest.mark.parametrize("prolog, value", [(XXE, "&xxe;"), (LAUGHS, "&lol2;")])
def test_dtds_and_entities_are_refused(live, prolog, value):
    body = envelope("GetProductInfo", f"<AuthUserName>{value}</AuthUserName>", prolog=prolog)
    response = post11(live, body, ACTION)
    assert response.status_code == 500 and fault_of(response) == ("soap:Client", "DTDs are not allowed")
    assert "root:" not in response.text


def test_oversized_bodies_are_refused_before_parsing(live):
    limit = live.server.config.web.max_request_bytes
    huge = b"<" + b"x" * limit
    declared = post11(live, huge, ACTION)
    assert declared.status_code == 413

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536

    streamed = httpx.post(live.url + PRODUCT, content=chunks(),
                          headers={"Content-Type": "text/xml", "SOAPAction": ACTION})
    assert streamed.status_code == 413
    form = httpx.post(f"{live.url}{PRODUCT}/GetProductInfo", content=huge,
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 413


def test_routing_statuses(live):
    assert httpx.get(f"{live.url}/Services/svcNothing.asmx").status_code == 404
    assert "text/html" in httpx.get(f"{live.url}/Services/svcNothing.asmx").headers["content-type"]
    assert httpx.put(live.url + PRODUCT, content=b"").status_code == 405
    assert httpx.delete(f"{live.url}{PRODUCT}/GetProductInfo").status_code == 405
    assert httpx.get(f"{live.url}{PRODUCT}/NoSuchOperation").status_code == 404
    # SOAP-only operations have no HTTP GET/POST binding.
    assert httpx.get(f"{live.url}/Services/svcUserAdmin.asmx/RemoveFromMigrationQueue").status_code == 404
    json = httpx.post(live.url + PRODUCT, content=b"{}", headers={"Content-Type": "application/json"})
    assert json.status_code == 415


def test_paths_and_keys_ignore_case(live):
    response = httpx.get(f"{live.url}/SERVICES/svcproductinfo.ASMX/getproductinfo",
                         params={"AUTHUSERNAME": ADMIN, "authpassword": PASSWORD})
    assert response.status_code == 200 and "<Result>true</Result>" in response.text
    soap = post11(live, envelope("GetProductInfo", login()), ACTION, path="/services/SVCPRODUCTINFO.asmx")
    assert soap.status_code == 200 and "<Result>true</Result>" in soap.text
