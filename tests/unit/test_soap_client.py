"""Reading a peer's SOAP reply (`mailsrv.core.soap_client`): the result's fields, faults, replies
that are not what was asked, and a hostile peer's entities, which are never expanded."""
from __future__ import annotations

import pytest

from mailsrv.core.soap_client import SoapError, _envelope, _read_reply, service_url

ENV = '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>{}</soap:Body></soap:Envelope>'


def reply(body: str, prolog: str = "") -> bytes:
    return (prolog + ENV.format(body)).encode()


def test_a_result_and_its_fields():
    got = _read_reply("GetProductInfo", reply(
        '<GetProductInfoResponse xmlns="http://tempuri.org/"><GetProductInfoResult><Result>true</Result>'
        '<ResultCode>0</ResultCode><Message /><ProductName>SmarterMail</ProductName>'
        '<ProductVersion>16.3</ProductVersion></GetProductInfoResult></GetProductInfoResponse>'))
    assert (got.result, got.code, got.message) == (True, 0, "")
    assert got.fields == {"ProductName": "SmarterMail", "ProductVersion": "16.3"}


def test_a_refusal_is_a_result_not_an_error():
    got = _read_reply("GetSpoolMessageCount", reply(
        '<GetSpoolMessageCountResponse xmlns="http://tempuri.org/"><GetSpoolMessageCountResult>'
        '<Result>false</Result><ResultCode>-3</ResultCode><Message>Permission denied</Message>'
        '<messageCount>0</messageCount></GetSpoolMessageCountResult></GetSpoolMessageCountResponse>'))
    assert (got.result, got.code, got.message) == (False, -3, "Permission denied")


@pytest.mark.parametrize("data, words", [
    (reply('<soap:Fault><faultcode>soap:Client</faultcode><faultstring>Server did not recognize'
           '</faultstring></soap:Fault>'), "SOAP fault: Server did not recognize"),
    (reply('<OtherResponse xmlns="http://tempuri.org/"><OtherResult /></OtherResponse>'), "has no GetProductInfoResult"),
    (b"<html>It works!", "not XML"),
    (reply('<GetProductInfoResponse xmlns="http://tempuri.org/"><GetProductInfoResult><Result>true</Result>'
           '<ResultCode>x</ResultCode></GetProductInfoResult></GetProductInfoResponse>'), "ResultCode is not a number"),
])
def test_replies_that_give_no_result(data, words):
    with pytest.raises(SoapError, match=words):
        _read_reply("GetProductInfo", data)


def test_entities_of_a_hostile_peer_are_not_expanded(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("do-not-read")
    prolog = f'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file://{secret}">]>'
    try:
        got = _read_reply("GetProductInfo", reply(
            '<GetProductInfoResponse xmlns="http://tempuri.org/"><GetProductInfoResult><Result>true</Result>'
            '<ProductName>&x;</ProductName></GetProductInfoResult></GetProductInfoResponse>', prolog))
    except SoapError:
        return  # refused outright: as good
    assert "do-not-read" not in got.fields.get("ProductName", "")


def test_parameters_are_escaped_and_urls_name_the_service():
    assert b"<AuthPassword>a&lt;b&amp;c</AuthPassword>" in _envelope("GetProductInfo", {"AuthPassword": "a<b&c"})
    assert service_url("http://gw:9998/", "svcServerAdmin") == "http://gw:9998/Services/svcServerAdmin.asmx"
    assert (service_url("https://gw/Services/svcProductInfo.asmx", "svcServerAdmin")
            == "https://gw/Services/svcServerAdmin.asmx")
