"""The DNS check's comparisons (mailsrv.mta.dns_check) without DNS: what passes, fails or is missing."""
from __future__ import annotations

import pytest

from mailsrv.core.config import ConfigError, parse_config
from mailsrv.mta.dns_check import (
    ERROR,
    FAIL,
    MISSING,
    PASS,
    DnsReport,
    RecordCheck,
    address_mark,
    dkim_mark,
    dmarc_mark,
    first_of,
    mx_mark,
    ptr_mark,
    spf_expected,
    spf_mark,
    spf_records,
    tags,
    txt_data,
)
from services.web.admin_api import basic_credentials
from services.web.render import TEMPLATES

US = ["192.0.2.25"]


@pytest.mark.parametrize("exchanges, status", [
    ({}, MISSING),
    ({"mail.a.test": ["198.51.100.1"]}, PASS),                     # the seed's name, wherever it points
    ({"MX.Host.Test.": []}, PASS),                                  # the server's own name
    ({"mx1.provider.test": ["192.0.2.25"]}, PASS),                 # another name for this server
    ({"mx.elsewhere.test": ["198.51.100.1"]}, FAIL),
    ({"": []}, FAIL),                                               # null MX: takes no mail
])
def test_mx(exchanges, status):
    assert mx_mark(exchanges, ["mail.a.test", "mx.host.test"], US)[0] == status


@pytest.mark.parametrize("found, expected, status", [
    ([], US, MISSING),
    (["192.0.2.25", "2001:db8::25"], US, PASS),
    (["198.51.100.1"], US, FAIL),
    (["127.0.0.1"], [], PASS),     # no address known: one of this machine's is ours
    (["198.51.100.1"], [], FAIL),
])
def test_mail_host_address(found, expected, status):
    assert address_mark(found, expected, lambda a: a == "127.0.0.1")[0] == status


@pytest.mark.parametrize("targets, status", [
    ({}, MISSING),
    ({"mx.host.test": ["192.0.2.25"]}, PASS),
    ({"mx.host.test": ["198.51.100.1"]}, FAIL),    # not forward-confirmed
    ({"generic.isp.test": [], "mx.host.test": ["192.0.2.25"]}, PASS),
])
def test_ptr(targets, status):
    assert ptr_mark("192.0.2.25", targets)[0] == status


def test_spf_records_are_the_txt_values_starting_with_the_version():
    assert spf_records(["v=spf1 -all", "V=SPF1 mx", "v=spf10 mx", "google-site-verification=x", "v=spf1"]) == [
        "v=spf1 -all", "V=SPF1 mx", "v=spf1"]


@pytest.mark.parametrize("records, results, status", [
    ([], {"192.0.2.25": "none"}, MISSING),
    (["v=spf1 mx", "v=spf1 a"], {}, FAIL),
    (["v=spf1 ip4:192.0.2.25 -all"], {"192.0.2.25": "pass"}, PASS),
    (["v=spf1 -all"], {"192.0.2.25": "fail"}, FAIL),
    (["v=spf1 ~all"], {"192.0.2.25": "softfail"}, FAIL),
    (["v=spf1 include:x ~all"], {"192.0.2.25": "permerror"}, FAIL),
    (["v=spf1 include:x ~all"], {"192.0.2.25": "temperror"}, ERROR),
    (["v=spf1 ip4:192.0.2.25"], {"192.0.2.25": "pass", "192.0.2.26": "neutral"}, FAIL),
    (["v=spf1 mx"], {}, ERROR),    # no sending address known
])
def test_spf(records, results, status):
    assert spf_mark(records, results)[0] == status


def test_the_spf_record_to_create_names_the_sending_addresses_or_the_host():
    assert spf_expected(["192.0.2.25", "2001:db8::25"], "mx.host.test") == \
        "v=spf1 mx ip4:192.0.2.25 ip6:2001:db8::25 ~all"
    assert spf_expected([], "mx.host.test") == "v=spf1 mx a:mx.host.test ~all"


def test_tags_drop_whitespace_and_lower_case_the_names():
    assert tags(" v=DKIM1 ; K=rsa; p=MIIB\n  AQAB ;") == {"v": "DKIM1", "k": "rsa", "p": "MIIBAQAB"}


@pytest.mark.parametrize("texts, status", [
    ([], MISSING),
    (["some other text"], MISSING),
    (["v=DKIM1; k=rsa; p=KEY"], PASS),
    (["p=KE Y"], PASS),                  # v= and k= are optional; whitespace in p= is not significant
    (["v=DKIM1; k=rsa; p=OTHER"], FAIL),
    (["v=DKIM1; k=ed25519; p=KEY"], FAIL),
    (["v=DKIM1; p="], FAIL),             # a revoked key
])
def test_dkim(texts, status):
    assert dkim_mark(texts, "KEY")[0] == status


@pytest.mark.parametrize("texts, status", [
    ([], MISSING),
    (["v=spf1 -all"], MISSING),
    (["v=DMARC1; p=reject"], PASS),
    (["v=DMARC1; p=none; rua=mailto:x@a.test"], PASS),
    (["v=DMARC1; rua=mailto:x@a.test"], FAIL),
    (["v=DMARC1; p=bounce"], FAIL),
    (["v=DMARC1; p=reject", "v=DMARC1; p=none"], FAIL),
])
def test_dmarc(texts, status):
    assert dmarc_mark(texts)[0] == status


def test_long_txt_values_are_split_in_strings_of_255():
    assert txt_data("a" * 300) == f'"{"a" * 255}" "{"a" * 45}"'
    assert txt_data("v=DMARC1; p=none") == '"v=DMARC1; p=none"'


def test_the_first_address_list_given_wins():
    assert first_of([], ["192.0.2.1"], ["192.0.2.2"]) == ["192.0.2.1"]
    assert first_of([], []) == []


def test_public_addresses_must_be_ip_addresses():
    assert parse_config('[dns]\npublic_addresses = ["192.0.2.25", "2001:db8::25"]\n').dns.public_addresses == [
        "192.0.2.25", "2001:db8::25"]
    with pytest.raises(ConfigError, match="'dns.public_addresses': 'mail.a.test' is not an IP address"):
        parse_config('[dns]\npublic_addresses = ["mail.a.test"]\n')


@pytest.mark.parametrize("header, credentials", [
    ("Basic cm9vdDpzM2NyZXQ6eA==", ("root", "s3cret:x")),     # the password may hold colons
    ("basic cm9vdDo=", ("root", "")),
    ("Basic cm9vdA==", None),                                  # no colon
    ("Basic !!!", None),
    ("Bearer abc", None),
    ("", None),
])
def test_basic_credentials(header, credentials):
    assert basic_credentials(header) == credentials


def test_the_report_renders_for_an_admin_page():
    report = DnsReport("a.test", [
        RecordCheck("MX", "Mail pointer (MX)", "a.test", ["a.test. IN MX 10 mail.a.test."], [], MISSING,
                    "The domain has no MX record."),
        RecordCheck("DMARC", "DMARC policy", "_dmarc.a.test", ['_dmarc.a.test. IN TXT "v=DMARC1; p=reject"'],
                    ['_dmarc.a.test. IN TXT "v=DMARC1; p=reject"'], PASS, "The DMARC policy is reject.")])
    html = TEMPLATES.get_template("dns_report.html").render(report=report.as_dict())
    assert "DNS records of a.test: 1 of 2 pass" in html
    assert '<tr class="dns-missing">' in html and "<code>a.test. IN MX 10 mail.a.test.</code>" in html
    assert "&#34;v=DMARC1; p=reject&#34;" in html  # escaped
