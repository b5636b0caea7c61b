"""The server's address lists over svcServerAdmin, and what they do on real sockets: IP whitelist and
blacklist per protocol, SMTP authentication bypass, SMTP blocked senders, global trusted senders, the
forwarding blacklist and reserved domain names (mailsrv.directory.address_lists).

The listeners bind 127.0.0.1; a client varies its address by binding its socket to another loopback
address (127.0.0.2, 127.0.0.3, …) before connecting."""
from __future__ import annotations

import smtplib
from collections.abc import Iterator

import pytest
from conftest import web_listener
from contract_clients import HttpClient, ok, ZeepClient
from mailbox_support import MailboxHarness
from smtp_support import ADMIN, DOMAIN, MailHarness, first_line, make_harness, send

from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.directory.address_lists import IpSet, Snapshot, client_address, parse_span, sender_entry
from mailsrv.mta.policy import Policy, SenderCheck

SA = "svcServerAdmin"
AUTH = {"authUsername": ADMIN[0], "authPassword": ADMIN[1]}
BODY = b"Subject: hi\r\n\r\nHello.\r\n"
NO_IP = {"ipAddress": "", "ipRangeStart": "", "ipRangeEnd": ""}


class Harness(MailboxHarness):
    """The mailbox harness (SMTP, POP3, IMAP) with its web listener: the lists change over SOAP."""

    def soap(self, operation: str, service: str = SA, auth: dict[str, str] | None = None, **params):  # type: ignore[no-untyped-def]
        return self.zeep.call(service, operation, **(AUTH if auth is None else auth), **params)

    def whitelist(self, smtp: bool = False, pop: bool = False, imap: bool = False, description: str = "",
                  **where: str) -> dict:
        return self.soap("SetWhitelistEntry", **{**NO_IP, **where}, whitelistSMTP=smtp, whitelistPOP=pop,
                         whitelistIMAP=imap, description=description)

    def blacklist(self, smtp: bool = False, pop: bool = False, imap: bool = False, description: str = "",
                  **where: str) -> dict:
        return self.soap("SetBlacklistEntry", **{**NO_IP, **where}, blacklistSMTP=smtp, blacklistPOP=pop,
                         blacklistIMAP=imap, description=description)

    def smtp_from(self, source: str) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.smtp_port, local_hostname="client.test", timeout=60,
                            source_address=(source, 0))


@pytest.fixture
def lists(tmp_path) -> Iterator[Harness]:
    for harness in make_harness(tmp_path, kind=Harness):
        with web_listener(harness.server) as url:
            harness.zeep = ZeepClient(url)  # type: ignore[attr-defined]
            harness.url = url  # type: ignore[attr-defined]
            yield harness


def texts(entries: list[dict]) -> list[dict]:
    """Entries with empty strings as "" (an empty element reads back as None in zeep and our HTTP client)."""
    return [{k: "" if v is None else v for k, v in entry.items()} for entry in entries]


def refused(result: dict, code: ResultCode, *words: str) -> None:
    assert (result["Result"], result["ResultCode"]) == (False, int(code)), result
    assert all(word in result["Message"] for word in words), result["Message"]


# -- pure rules --------------------------------------------------------------------------------


def test_spans_single_cidr_range_and_their_refusals():
    assert str(parse_span("10.1.2.3", "", "")) == "10.1.2.3"
    cidr = parse_span("10.1.2.77/24", None, None)
    assert (cidr.ip_address, str(cidr.first), str(cidr.last)) == ("10.1.2.0/24", "10.1.2.0", "10.1.2.255")
    six = parse_span("", "2001:db8::1", "2001:DB8::ff")
    assert (six.range_start, six.range_end) == ("2001:db8::1", "2001:db8::ff")
    for bad, words in [(("10.1.2.300", "", ""), "10.1.2.300"), (("", "10.0.0.9", "10.0.0.1"), "ends before"),
                       (("", "10.0.0.1", "::1"), "mixes"), (("", "", ""), "required"),
                       (("10.0.0.1", "10.0.0.1", "10.0.0.2"), "not both"), (("10.0.0.0/33", "", ""), "10.0.0.0/33"),
                       (("", "10.0.0.1", ""), "required")]:
        with pytest.raises(MailsrvError) as caught:
            parse_span(*bad)
        assert caught.value.code == ResultCode.INVALID_ARGUMENT and words in caught.value.message


def test_matching_is_by_bisection_per_family_and_maps_ipv4_in_ipv6():
    spans = IpSet([(parse_span(*s).first, parse_span(*s).last) for s in
                   [("10.0.0.0/8", "", ""), ("", "192.0.2.10", "192.0.2.20"), ("2001:db8::/32", "", "")]])
    for ip, inside in [("10.255.0.1", True), ("11.0.0.0", False), ("192.0.2.20", True), ("192.0.2.21", False),
                       ("9.255.255.255", False), ("2001:db8:1::5", True), ("2001:db9::", False),
                       ("::ffff:10.1.1.1", True), ("fe80::1%eth0", False), ("nonsense", False)]:
        assert (client_address(ip) in spans) is inside, ip
    assert Snapshot().refused("smtp", "10.0.0.1") is False


def test_sender_entries_are_an_address_or_a_domain():
    assert sender_entry(" Spam@Bad.Test ") == "spam@bad.test"
    assert sender_entry("@Bad.Test") == sender_entry("bad.test") == "bad.test"
    with pytest.raises(MailsrvError):
        sender_entry("not an address@")


def test_policy_trusts_whitelist_and_bypass_and_refuses_blocked_senders_unless_trusted():
    def spans(*specs: str) -> IpSet:
        return IpSet([(parse_span(spec, "", "").first, parse_span(spec, "", "").last) for spec in specs])
    lists = Snapshot({("whitelist", "smtp"): spans("192.0.2.1"), ("smtpbypass", "smtp"): spans("198.51.100.0/24"),
                      ("blacklist", "smtp"): spans("192.0.2.0/24")},
                     {"blockedsender": frozenset({"spam@bad.test", "worse.test"}),
                      "trustedsender": frozenset({"boss@worse.test"})})
    policy = Policy(["203.0.113.9"])
    assert [policy.client(ip, None, lists).trusted for ip in ("192.0.2.1", "198.51.100.7", "203.0.113.9", "192.0.2.2")] \
        == [True, True, True, False]
    assert lists.refused("smtp", "192.0.2.2") and not lists.refused("smtp", "192.0.2.1")
    assert not lists.refused("pop", "192.0.2.2")
    outsider, whitelisted = policy.client("192.0.2.2", None, lists), policy.client("192.0.2.1", None, lists)
    for sender, blocked in [("SPAM@bad.test", True), ("x@worse.test", True), ("boss@worse.test", False),
                            ("x@sub.worse.test", False), ("", False)]:
        assert lists.sender_blocked(sender) is blocked, sender
        refusal = policy.check_sender(SenderCheck(outsider, sender, None, lists.sender_blocked(sender)))
        assert (refusal is not None and str(refusal).startswith("550 5.7.1")) is blocked
        assert policy.check_sender(SenderCheck(whitelisted, sender, None, lists.sender_blocked(sender))) is None


# -- the operations ----------------------------------------------------------------------------


def test_whitelist_and_blacklist_round_trip_edit_and_remove(lists):
    ok(lists.whitelist(smtp=True, description="office", ipAddress="192.0.2.7"))
    ok(lists.whitelist(pop=True, imap=True, ipRangeStart="198.51.100.1", ipRangeEnd="198.51.100.50"))
    ok(lists.soap("SetWhitelistEntry2", **{**NO_IP, "ipAddress": "2001:db8::/48"}, whitelistSMTP=True,
                  whitelistPOP=False, whitelistIMAP=False, whitelistXMPP=True, disableGreylisting=True,
                  description="v6"))
    entries = texts(lists.soap("GetWhitelistEntries")["Entries"])
    assert entries == [
        {"IPAddress": "192.0.2.7", "IPRangeStart": "", "IPRangeEnd": "", "Description": "office",
         "POPWhitelisted": False, "IMAPWhitelisted": False, "SMTPWhitelisted": True},
        {"IPAddress": "", "IPRangeStart": "198.51.100.1", "IPRangeEnd": "198.51.100.50", "Description": "",
         "POPWhitelisted": True, "IMAPWhitelisted": True, "SMTPWhitelisted": False},
        {"IPAddress": "2001:db8::/48", "IPRangeStart": "", "IPRangeEnd": "", "Description": "v6",
         "POPWhitelisted": False, "IMAPWhitelisted": False, "SMTPWhitelisted": True}]
    # The same span again edits the entry; all protocols off removes it.
    ok(lists.whitelist(pop=True, description="office 2", ipAddress="192.0.2.7"))
    assert lists.soap("GetWhitelistEntries")["Entries"][0]["Description"] == "office 2"
    ok(lists.whitelist(ipAddress="192.0.2.7"))
    assert [e["IPAddress"] for e in texts(lists.soap("GetWhitelistEntries")["Entries"])] == ["", "2001:db8::/48"]
    refused(lists.whitelist(ipAddress="192.0.2.7"), ResultCode.ITEM_NOT_FOUND, "192.0.2.7")

    ok(lists.blacklist(smtp=True, pop=True, imap=True, ipAddress="203.0.113.0/24", description="bad net"))
    # Over HTTP GET too: the same result type, item by item.
    listed = texts(HttpClient(lists.url, "GET").call(SA, "GetBlacklistEntries", **AUTH)["Entries"])
    assert listed == [{"IPAddress": "203.0.113.0/24", "IPRangeStart": "", "IPRangeEnd": "",
                       "Description": "bad net", "POPBlacklisted": True, "IMAPBlacklisted": True,
                       "SMTPBlacklisted": True}]
    # The same span written as a range is the same entry.
    ok(lists.blacklist(smtp=True, ipRangeStart="203.0.113.0", ipRangeEnd="203.0.113.255"))
    assert len(lists.soap("GetBlacklistEntries")["Entries"]) == 1


def test_bad_and_overlapping_ip_entries_are_refused_and_change_nothing(lists):
    ok(lists.blacklist(smtp=True, ipAddress="203.0.113.0/24"))
    refused(lists.blacklist(smtp=True, ipAddress="203.0.113.999"), ResultCode.INVALID_ARGUMENT, "203.0.113.999")
    refused(lists.blacklist(smtp=True, ipRangeStart="10.0.0.9", ipRangeEnd="10.0.0.1"), ResultCode.INVALID_ARGUMENT,
            "10.0.0.9-10.0.0.1")
    refused(lists.blacklist(smtp=True, ipRangeStart="10.0.0.1", ipRangeEnd="2001:db8::1"),
            ResultCode.INVALID_ARGUMENT, "IPv4 and IPv6")
    refused(lists.blacklist(smtp=True, ipRangeStart="203.0.113.200", ipRangeEnd="203.0.114.5"),
            ResultCode.ADDRESS_LIST_OVERLAP, "203.0.113.0/24")
    refused(lists.blacklist(smtp=True, ipAddress="203.0.113.9", description="x" * 1001), ResultCode.INVALID_ARGUMENT)
    # Another list may cover the same addresses (the whitelist exempts from the blacklist).
    ok(lists.whitelist(smtp=True, ipAddress="203.0.113.9"))
    assert [e["IPAddress"] for e in lists.soap("GetBlacklistEntries")["Entries"]] == ["203.0.113.0/24"]


def test_smtp_authentication_bypass_add_list_delete(lists):
    ok(lists.soap("AddSmtpAuthenticationBypass", **{**NO_IP, "ipAddress": "192.0.2.1"}, description="gateway"))
    ok(lists.soap("AddSmtpAuthenticationBypass", ipAddress="", ipRangeStart="2001:db8::1", ipRangeEnd="2001:db8::9",
                  description=""))
    refused(lists.soap("AddSmtpAuthenticationBypass", **{**NO_IP, "ipAddress": "192.0.2.0/30"}, description=""),
            ResultCode.ADDRESS_LIST_OVERLAP, "192.0.2.1")
    assert texts(lists.soap("GetSmtpAuthenticationBypasses")["Entries"]) == [
        {"IPAddress": "192.0.2.1", "IPRangeStart": "", "IPRangeEnd": "", "Description": "gateway"},
        {"IPAddress": "", "IPRangeStart": "2001:db8::1", "IPRangeEnd": "2001:db8::9", "Description": ""}]
    ok(lists.soap("DeleteSmtpAuthenticationBypass", **{**NO_IP, "ipAddress": "192.0.2.1"}))
    refused(lists.soap("DeleteSmtpAuthenticationBypass", **{**NO_IP, "ipAddress": "192.0.2.1"}),
            ResultCode.ITEM_NOT_FOUND)
    assert len(lists.soap("GetSmtpAuthenticationBypasses")["Entries"]) == 1


def test_name_lists_round_trip_and_refuse_bad_names(lists):
    ok(lists.soap("AddSMTPBlockedSender", blockedSender="Spam@Bad.test", description="known"))
    ok(lists.soap("AddSMTPBlockedSender", blockedSender="@worse.test", description=""))
    refused(lists.soap("AddSMTPBlockedSender", blockedSender="spam@bad.test", description=""), ResultCode.NAME_IN_USE)
    refused(lists.soap("AddSMTPBlockedSender", blockedSender="bad..test", description=""),
            ResultCode.INVALID_DOMAIN_NAME)
    assert texts(lists.soap("GetSMTPBlockedSenders")["SMTPBlockedSenders"]) == [
        {"BlockedSender": "spam@bad.test", "Description": "known"}, {"BlockedSender": "worse.test", "Description": ""}]

    ok(lists.soap("AddGlobalTrustedSender", addressOrDomain="boss@worse.test"))
    ok(lists.soap("AddGlobalTrustedSender", addressOrDomain="friends.test"))
    # The contract has no way to remove a blocked sender; mailsrv defines DeleteSMTPBlockedSender.
    ok(lists.soap("DeleteSMTPBlockedSender", blockedSender="@Worse.test"))
    refused(lists.soap("DeleteSMTPBlockedSender", blockedSender="worse.test"), ResultCode.ITEM_NOT_FOUND)
    assert [e["BlockedSender"] for e in lists.soap("GetSMTPBlockedSenders")["SMTPBlockedSenders"]] == ["spam@bad.test"]

    assert lists.soap("GetGlobalTrustedSenders")["TrustedSenders"] == ["boss@worse.test", "friends.test"]
    ok(lists.soap("DeleteGlobalTrustedSender", addressOrDomain="FRIENDS.test"))
    refused(lists.soap("DeleteGlobalTrustedSender", addressOrDomain="friends.test"), ResultCode.ITEM_NOT_FOUND)

    ok(lists.soap("AddForwardingBlacklistEntry", domainName="Blocked.test"))
    refused(lists.soap("AddForwardingBlacklistEntry", domainName="blocked.test"), ResultCode.NAME_IN_USE)
    refused(lists.soap("AddForwardingBlacklistEntry", domainName="x@y.test"), ResultCode.INVALID_DOMAIN_NAME)
    assert lists.soap("ListForwardingBlacklistEntries")["BlacklistedDomains"] == ["blocked.test"]
    ok(lists.soap("DeleteForwardingBlacklistEntry", domainName="blocked.test"))
    assert not lists.soap("ListForwardingBlacklistEntries")["BlacklistedDomains"]  # empty (zeep: None)


def test_only_system_admins_use_the_lists(lists):
    domain_admin = {"authUsername": f"postmaster@{DOMAIN}", "authPassword": "Domain-pass-1"}
    user = {"authUsername": f"alice@{DOMAIN}", "authPassword": "User-pass-123"}
    for auth in (domain_admin, user):
        refused(lists.soap("SetBlacklistEntry", auth=auth, **{**NO_IP, "ipAddress": "127.0.0.2"}, blacklistSMTP=True,
                           blacklistPOP=False, blacklistIMAP=False, description=""), ResultCode.PERMISSION_DENIED)
        refused(lists.soap("GetWhitelistEntries", auth=auth), ResultCode.PERMISSION_DENIED)
        refused(lists.soap("AddForwardingBlacklistEntry", auth=auth, domainName="x.test"),
                ResultCode.PERMISSION_DENIED)
    refused(lists.soap("GetBlacklistEntries", auth={**AUTH, "authPassword": "wrong"}), ResultCode.LOGIN_FAILED)
    assert not lists.soap("GetBlacklistEntries")["Entries"]


# -- enforcement on real sockets ---------------------------------------------------------------


def test_blacklisted_clients_are_refused_at_connect_per_protocol(lists):
    ok(lists.blacklist(smtp=True, ipAddress="127.0.0.2"))
    ok(lists.blacklist(pop=True, imap=True, ipRangeStart="127.0.0.3", ipRangeEnd="127.0.0.4"))
    line, closed = first_line(lists.smtp_port, "127.0.0.2")
    assert line.startswith(b"554 5.7.1 ") and b"blacklist" in line and closed
    assert first_line(lists.submission_port, "127.0.0.2")[0].startswith(b"554 5.7.1 ")
    assert first_line(lists.smtp_port, "127.0.0.3")[0].startswith(b"220 ")  # blacklisted for POP/IMAP only
    for source in ("127.0.0.3", "127.0.0.4"):
        line, closed = first_line(lists.ports["pop3"], source)
        assert line.startswith(b"-ERR ") and b"blacklist" in line and closed
        line, closed = first_line(lists.ports["imap"], source)
        assert line.startswith(b"* BYE ") and b"blacklist" in line and closed
    assert first_line(lists.ports["pop3"], "127.0.0.2")[0].startswith(b"+OK ")
    assert first_line(lists.ports["imap"], "127.0.0.5")[0].startswith(b"* OK")
    # A whitelist entry for the protocol exempts; removing the blacklist entry opens the door.
    ok(lists.whitelist(pop=True, ipAddress="127.0.0.4"))
    assert first_line(lists.ports["pop3"], "127.0.0.4")[0].startswith(b"+OK ")
    assert first_line(lists.ports["imap"], "127.0.0.4")[0].startswith(b"* BYE ")
    ok(lists.blacklist(ipAddress="127.0.0.2"))
    assert first_line(lists.smtp_port, "127.0.0.2")[0].startswith(b"220 ")


def test_smtp_whitelist_and_bypass_relay_others_do_not(lists):
    def relay(source: str) -> int:
        with lists.smtp_from(source) as smtp:
            smtp.ehlo()
            assert smtp.mail("someone@elsewhere.test")[0] == 250
            return smtp.rcpt("friend@far.test")[0]

    assert relay("127.0.0.6") == 550
    ok(lists.whitelist(smtp=True, ipAddress="127.0.0.6"))
    ok(lists.soap("AddSmtpAuthenticationBypass", **{**NO_IP, "ipAddress": "127.0.0.0/30"}, description="gateway"))
    assert relay("127.0.0.6") == 250
    assert relay("127.0.0.2") == 250  # in the bypass block
    assert relay("127.0.0.7") == 550
    with lists.smtp_from("127.0.0.6") as smtp:  # accepted and queued for the remote recipient
        send(smtp, "someone@elsewhere.test", ["friend@far.test"], BODY)
    assert [row[0] for row in lists.spool_rows()] == ["friend@far.test"]
    ok(lists.whitelist(ipAddress="127.0.0.6"))
    assert relay("127.0.0.6") == 550


def test_blocked_senders_are_refused_at_mail_unless_trusted_or_whitelisted(lists):
    ok(lists.soap("AddSMTPBlockedSender", blockedSender="spam@bad.test", description=""))
    ok(lists.soap("AddSMTPBlockedSender", blockedSender="@worse.test", description=""))
    ok(lists.soap("AddGlobalTrustedSender", addressOrDomain="boss@worse.test"))

    def mail_from(sender: str, source: str = "127.0.0.8") -> tuple[int, bytes]:
        with lists.smtp_from(source) as smtp:
            smtp.ehlo()
            return smtp.mail(sender)

    code, text = mail_from("Spam@Bad.test")
    assert code == 550 and text.startswith(b"5.7.1") and b"spam@bad.test".lower() in text.lower()
    assert mail_from("anyone@worse.test")[0] == 550
    assert mail_from("anyone@sub.worse.test")[0] == 250  # a domain entry is that domain only
    assert mail_from("other@bad.test")[0] == 250
    assert mail_from("boss@worse.test")[0] == 250  # trusted
    ok(lists.whitelist(smtp=True, ipAddress="127.0.0.9"))
    assert mail_from("spam@bad.test", "127.0.0.9")[0] == 250
    with lists.smtp_from("127.0.0.8") as smtp:
        send(smtp, "boss@worse.test", [f"alice@{DOMAIN}"], BODY)
    assert len(lists.messages(f"alice@{DOMAIN}")) == 1


def test_forwarding_blacklist_refuses_setting_and_drops_at_delivery_unless_the_domain_bypasses(lists):
    user_auth = {"AuthUserName": ADMIN[0], "AuthPassword": ADMIN[1]}

    def forward(target: str) -> dict:
        return lists.soap("UpdateUserForwardingInfo", "svcUserAdmin", auth=user_auth, EmailAddress=f"alice@{DOMAIN}",
                          DeleteOnForward=True, ForwardingAddress=target)

    ok(forward("alice@sub.blocked.test, friend@fine.test"))  # before the blacklist: stored
    ok(lists.soap("AddForwardingBlacklistEntry", domainName="blocked.test"))
    refused(forward("x@blocked.test"), ResultCode.FORWARDING_BLACKLISTED, "x@blocked.test")
    refused(forward("y@fine.test; x@deep.sub.blocked.test"), ResultCode.FORWARDING_BLACKLISTED)
    with lists.client() as smtp:
        send(smtp, "carol@remote.test", [f"alice@{DOMAIN}"], BODY)
    remote = [row[0] for row in lists.spool_rows()]
    assert remote == ["friend@fine.test"]  # the blacklisted target is dropped, the other forwarded
    # The domain may bypass the list: then both are set and forwarded.
    lists.server.domains.update(lists.admin(), DOMAIN, {"bypassforwardblacklist": True}, system_only=True)
    ok(forward("x@blocked.test"))
    with lists.client() as smtp:
        send(smtp, "carol@remote.test", [f"alice@{DOMAIN}"], BODY)
    assert "x@blocked.test" in [row[0] for row in lists.spool_rows()]


def test_reserved_domain_names_cannot_be_created_or_renamed_to(lists):
    admin = {"AuthUserName": ADMIN[0], "AuthPassword": ADMIN[1]}
    ok(lists.soap("AddReservedDomainNames", domainNames=["Reserved.test", "other.test", "reserved.test"]))
    ok(lists.soap("AddReservedDomainNames", domainNames=["other.test"]))  # appending a known name is harmless
    refused(lists.soap("AddReservedDomainNames", domainNames=["fine.test", "bad..test"]), ResultCode.INVALID_DOMAIN_NAME)
    refused(lists.soap("AddReservedDomainNames", domainNames=[]), ResultCode.INVALID_ARGUMENT)
    assert lists.soap("GetReservedDomainNames")["DomainNames"] == ["other.test", "reserved.test"]  # fine.test not added
    refused(lists.soap("GetReservedDomainNames", auth={"authUsername": f"postmaster@{DOMAIN}",
                                                      "authPassword": "Domain-pass-1"}), ResultCode.PERMISSION_DENIED)

    def add(name: str) -> dict:
        return lists.soap("AddDomain", "svcDomainAdmin", auth=admin, DomainName=name, Path="",
                          PrimaryDomainAdminUserName="postmaster", PrimaryDomainAdminPassword="Domain-pass-1",
                          PrimaryDomainAdminFirstName="", PrimaryDomainAdminLastName="", IP="", ImapPort=143, PopPort=110, SmtpPort=25, MaxAliases=0, MaxDomainSizeInMB=0,
                          MaxDomainUsers=0, MaxMailboxSizeInMB=0, MaxMessageSize=0, MaxRecipients=0,
                          MaxDomainAliases=0, MaxLists=0, ShowDomainAliasMenu=True, ShowContentFilteringMenu=True,
                          ShowSpamMenu=True, ShowStatsMenu=True, RequireSmtpAuthentication=False,
                          ShowListMenu=True, ListCommandAddress="")

    refused(add("reserved.test"), ResultCode.DOMAIN_NAME_RESERVED, "reserved.test")
    ok(add("free.test"))
    refused(lists.soap("RenameDomain", "svcDomainAdmin", auth=admin, OldDomainName="free.test",
                       NewDomainName="OTHER.test"), ResultCode.DOMAIN_NAME_RESERVED)
    refused(lists.soap("AddDomainAliasWithoutMxCheck", "svcDomainAliasAdmin", auth=admin, DomainName=DOMAIN,
                       DomainAliasName="other.test"), ResultCode.DOMAIN_NAME_RESERVED)
    # Removing names: all or none.
    refused(lists.soap("DeleteReservedDomainNames", domainNames=["reserved.test", "never.test"]),
            ResultCode.ITEM_NOT_FOUND, "never.test")
    ok(lists.soap("DeleteReservedDomainNames", domainNames=["reserved.test"]))
    assert lists.soap("GetReservedDomainNames")["DomainNames"] == ["other.test"]
    ok(add("reserved.test"))
    # Over HTTP GET, the array parameter is the key repeated.
    ok(HttpClient(lists.url, "GET").call(SA, "AddReservedDomainNames", **AUTH, domainNames=["x1.test", "x2.test"]))
    assert lists.soap("GetReservedDomainNames")["DomainNames"] == ["other.test", "x1.test", "x2.test"]


def test_a_change_through_one_node_applies_to_the_next_connection_on_another(lists):
    second = MailHarness(lists.data_dir, lists.clock)
    try:
        assert first_line(second.smtp_port, "127.0.0.2")[0].startswith(b"220 ")
        ok(lists.blacklist(smtp=True, ipAddress="127.0.0.2"))  # through the first node's SOAP
        assert first_line(second.smtp_port, "127.0.0.2")[0].startswith(b"554 5.7.1")
        with smtplib.SMTP("127.0.0.1", second.smtp_port, timeout=60, source_address=("127.0.0.3", 0)) as smtp:
            smtp.ehlo()
            assert smtp.mail("x@elsewhere.test")[0] == 250
            assert smtp.rcpt("friend@far.test")[0] == 550
            ok(lists.whitelist(smtp=True, ipAddress="127.0.0.3"))
            smtp.rset()  # the next transaction reads the lists again
            assert smtp.mail("x@elsewhere.test")[0] == 250
            assert smtp.rcpt("friend@far.test")[0] == 250
    finally:
        second.close()
