"""Greylisting (mailsrv.directory.greylisting, mailsrv.mta.filtering.greylisting) over real sockets:
a first message deferred with 451 4.7.1, its retry after the delay passing (on another node too),
a retry too late starting over, and what is never greylisted: authenticated and whitelisted
clients, the filters added over SOAP, domains with `bypassgreylisting`."""
from __future__ import annotations

import datetime as dt
import smtplib
from collections.abc import Iterator

import pytest
from conftest import web_listener
from contract_clients import ZeepClient, ok
from smtp_support import ADMIN, MailHarness, make_harness, send, two_nodes

from mailsrv.core.errors import ResultCode

SA = "svcServerAdmin"
AUTH = {"authUsername": ADMIN[0], "authPassword": ADMIN[1]}
BODY = b"From: x@remote.test\r\nSubject: hi\r\n\r\nHello.\r\n"
CONFIG = "[greylisting]\nenabled = true\ndelay_seconds = 300\nretry_window_seconds = 3600\n" \
         "pass_lifetime_seconds = 86400\n"


def smtp_from(harness: MailHarness, source: str) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", harness.smtp_port, local_hostname="client.test", timeout=60,
                        source_address=(source, 0))


def rcpt(harness: MailHarness, source: str, sender: str, recipient: str) -> tuple[int, bytes]:
    """The answer to RCPT in a new session from `source`."""
    with smtp_from(harness, source) as smtp:
        smtp.ehlo()
        assert smtp.mail(sender)[0] == 250
        return smtp.rcpt(recipient)


@pytest.fixture
def grey(tmp_path) -> Iterator[MailHarness]:
    for harness in make_harness(tmp_path, CONFIG):
        with web_listener(harness.server) as url:
            harness.zeep = ZeepClient(url)  # type: ignore[attr-defined]
            yield harness


def soap(harness, operation: str, service: str = SA, **params):  # type: ignore[no-untyped-def]
    return harness.zeep.call(service, operation, **AUTH, **params)


def test_a_first_message_is_deferred_and_its_retry_after_the_delay_passes(grey):
    code, text = rcpt(grey, "127.0.0.20", "x@remote.test", "alice@a.test")
    assert code == 451 and text.startswith(b"4.7.1 ") and b"greylisted" in text
    grey.clock.advance(dt.timedelta(seconds=299))
    assert rcpt(grey, "127.0.0.20", "x@remote.test", "alice@a.test")[0] == 451  # too early
    grey.clock.advance(dt.timedelta(seconds=2))
    with smtp_from(grey, "127.0.0.21") as smtp:  # the same /24
        send(smtp, "x@remote.test", ["alice@a.test"], BODY)
        send(smtp, "X@Remote.test", ["Alice@a.test"], BODY)  # passed: no delay any more
    assert len(grey.messages("alice@a.test")) == 2
    # Another triplet still waits: another recipient, another sender, another network.
    assert rcpt(grey, "127.0.0.20", "x@remote.test", "bob@a.test")[0] == 451
    assert rcpt(grey, "127.0.0.20", "y@remote.test", "alice@a.test")[0] == 451
    assert rcpt(grey, "127.0.1.20", "x@remote.test", "alice@a.test")[0] == 451
    # An unknown recipient gets its 550, not a deferral.
    assert rcpt(grey, "127.0.0.20", "x@remote.test", "nobody@a.test")[0] == 550
    # The pass runs out after its lifetime, and the triplet starts over.
    grey.clock.advance(dt.timedelta(days=1, seconds=1))
    assert rcpt(grey, "127.0.0.20", "x@remote.test", "alice@a.test")[0] == 451


def test_a_retry_after_the_retry_window_starts_over(grey):
    assert rcpt(grey, "127.0.0.20", "x@remote.test", "alice@a.test")[0] == 451
    grey.clock.advance(dt.timedelta(seconds=300 + 3600 + 1))
    assert rcpt(grey, "127.0.0.20", "x@remote.test", "alice@a.test")[0] == 451
    grey.clock.advance(dt.timedelta(seconds=300))
    assert rcpt(grey, "127.0.0.20", "x@remote.test", "alice@a.test")[0] == 250


def test_the_retry_passes_on_a_second_node(tmp_path):
    for first, second in two_nodes(tmp_path, CONFIG):
        assert rcpt(first, "127.0.0.30", "x@remote.test", "alice@a.test")[0] == 451
        assert rcpt(second, "127.0.0.30", "x@remote.test", "alice@a.test")[0] == 451  # the same triplet, shared
        first.clock.advance(dt.timedelta(seconds=301))
        with smtp_from(second, "127.0.0.30") as smtp:
            send(smtp, "x@remote.test", ["alice@a.test"], BODY)
        assert rcpt(first, "127.0.0.30", "x@remote.test", "alice@a.test")[0] == 250  # passed there, passes here


def test_authenticated_whitelisted_filtered_and_bypassing_domains_are_never_greylisted(grey):
    with grey.authenticated("bob@a.test") as smtp:
        send(smtp, "bob@a.test", ["alice@a.test"], BODY.replace(b"x@remote.test", b"bob@a.test"))
    ok(soap(grey, "SetWhitelistEntry", ipAddress="127.0.0.40", ipRangeStart="", ipRangeEnd="", whitelistSMTP=True,
            whitelistPOP=False, whitelistIMAP=False, description=""))
    assert rcpt(grey, "127.0.0.40", "x@remote.test", "alice@a.test")[0] == 250
    # A whitelist entry for no protocol but with disableGreylisting exempts from greylisting only.
    ok(soap(grey, "SetWhitelistEntry2", ipAddress="127.0.0.41", ipRangeStart="", ipRangeEnd="", whitelistSMTP=False,
            whitelistPOP=False, whitelistIMAP=False, whitelistXMPP=False, disableGreylisting=True, description=""))
    assert rcpt(grey, "127.0.0.41", "x@remote.test", "alice@a.test")[0] == 250
    ok(soap(grey, "AddGreylistingFilter", filterType="IP", ipRangeStart="", ipRangeEnd="", ipAddress="127.0.0.48/29",
            description="partner", countryCode=""))
    ok(soap(grey, "AddGreylistingFilter", filterType="Range", ipRangeStart="127.0.2.1", ipRangeEnd="127.0.2.9",
            ipAddress="", description="", countryCode=""))
    assert rcpt(grey, "127.0.0.50", "x@remote.test", "alice@a.test")[0] == 250
    assert rcpt(grey, "127.0.2.5", "x@remote.test", "alice@a.test")[0] == 250
    assert rcpt(grey, "127.0.2.10", "x@remote.test", "alice@a.test")[0] == 451
    filters = ok(soap(grey, "ListGreylistingFilters"))["Filters"]
    assert [(f["FilterType"], f["IPAddress"] or "", f["IPRangeStart"] or "", f["Description"] or "")
            for f in filters] == [("IP", "127.0.0.48/29", "", "partner"), ("Range", "", "127.0.2.1", "")]
    ok(soap(grey, "DeleteGreylistingFilter", filterType="IP", ipRangeStart="", ipRangeEnd="",
            ipAddress="127.0.0.48/29", countryCode=""))
    assert rcpt(grey, "127.0.0.50", "x@remote.test", "alice@a.test")[0] == 451
    # A domain that bypasses greylisting takes its mail at once.
    ok(grey.zeep.call("svcDomainAdmin", "SetRequestedDomainSettings", AuthUserName=ADMIN[0], AuthPassword=ADMIN[1],
                      DomainName="a.test", newSettings=["bypassgreylisting=true"]))
    assert rcpt(grey, "127.0.3.1", "x@remote.test", "alice@a.test")[0] == 250


def test_bad_filters_are_refused(grey):
    def add(**where: str) -> dict:
        return soap(grey, "AddGreylistingFilter", **{"filterType": "IP", "ipRangeStart": "", "ipRangeEnd": "",
                                                     "ipAddress": "", "description": "", "countryCode": "", **where})

    def refused(result: dict, code: ResultCode) -> None:
        assert (result["Result"], result["ResultCode"]) == (False, int(code)), result

    refused(add(filterType="Country", countryCode="FR"), ResultCode.GREYLIST_FILTER_UNSUPPORTED)
    refused(add(ipAddress="300.1.1.1"), ResultCode.INVALID_ARGUMENT)
    refused(add(), ResultCode.INVALID_ARGUMENT)
    ok(add(ipAddress="10.0.0.0/24"))
    refused(add(ipAddress="10.0.0.0/24"), ResultCode.NAME_IN_USE)
    refused(add(ipAddress="10.0.0.7"), ResultCode.ADDRESS_LIST_OVERLAP)
    refused(soap(grey, "DeleteGreylistingFilter", filterType="IP", ipRangeStart="", ipRangeEnd="",
                 ipAddress="10.9.9.9", countryCode=""), ResultCode.ITEM_NOT_FOUND)
