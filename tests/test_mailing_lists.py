"""svcMailListAdmin over SOAP (zeep, proxies from our ?WSDL): every operation's round trip, the
call sequence of SolidCP's SmarterMail provider, rights, the domain's list limit, bad input that
changes nothing, and GetDomainCounts / domain deletion and rename with lists."""
from __future__ import annotations

import httpx
import pytest
from contract_clients import ZeepClient, ok, refused
from lxml import etree
from sqlalchemy import func, select

from mailsrv.directory.mailing_lists import LIST
from mailsrv.store.models import ListMember, MailingList

ADMIN = {"AuthUserName": "root", "AuthPassword": "Gr8-secret-pw"}
DOM, OTHER = "lists-example.com", "other-example.com"
DA = {"AuthUserName": f"postmaster@{DOM}", "AuthPassword": "Domain-pass-1"}
OTHER_DA = {"AuthUserName": f"postmaster@{OTHER}", "AuthPassword": "Domain-pass-1"}
USER = {"AuthUserName": f"plain@{DOM}", "AuthPassword": "User-pass-12"}
ML = "svcMailListAdmin"
ALL_KEYS = ["description", "disabled", "moderator", "password", "requirepassword", "whocanpost",
            "prependsubject", "subject", "maxmessagesize", "maxrecipients", "replytolist", "listtoaddress",
            "listfromaddress", "listreplytoaddress", "digestmode", "sendsubscribe", "sendunsubscribe",
            "allowunsubscribe", "disablelistcommand", "disablesubscribecommand"]


def add_domain(c: ZeepClient, name: str, max_lists: int = 0) -> None:
    ok(c.call("svcDomainAdmin", "AddDomain", **ADMIN, DomainName=name, Path="", PrimaryDomainAdminUserName="postmaster",
              PrimaryDomainAdminPassword="Domain-pass-1", PrimaryDomainAdminFirstName="P",
              PrimaryDomainAdminLastName="M", IP="", ImapPort=143, PopPort=110, SmtpPort=25, MaxAliases=0,
              MaxDomainSizeInMB=0, MaxDomainUsers=0, MaxMailboxSizeInMB=0, MaxMessageSize=10240,
              MaxRecipients=50, MaxDomainAliases=0, MaxLists=max_lists, ShowDomainAliasMenu=True,
              ShowContentFilteringMenu=True, ShowSpamMenu=True, ShowStatsMenu=True,
              RequireSmtpAuthentication=True, ShowListMenu=True, ListCommandAddress="stserv"))


@pytest.fixture
def c(live_server) -> ZeepClient:
    live_server.server.admins.reset_primary("root", "Gr8-secret-pw")
    client = ZeepClient(live_server.url)
    add_domain(client, DOM, max_lists=3)
    add_domain(client, OTHER)
    ok(client.call("svcUserAdmin", "AddUser", **ADMIN, NewUsername="plain", NewPassword="User-pass-12",
                   DomainName=DOM, FirstName="", LastName="", IsDomainAdmin=False))
    return client


def ml(c: ZeepClient, op: str, auth: dict = ADMIN, **params):  # type: ignore[no-untyped-def]
    return c.call(ML, op, **auth, DomainName=DOM, **params)


def code(result: dict) -> int:
    return refused(result)[0]


def subscribers(c: ZeepClient, name: str = "team", op: str = "GetSubscriberList") -> list[str]:
    return ok(ml(c, op, ListName=name))["Subscribers"] or []


def test_solidcp_call_sequence(c):
    # AddList bare → settings with the full address, every key, empties included → read bare.
    ok(ml(c, "AddList", ListName="team", Moderator=f"postmaster@{DOM}", Description="The team"))
    assert ok(ml(c, "GetMailingListsByDomain"))["listNames"] == ["team"]
    sent = ["description=Team list", f"moderator=postmaster@{DOM}", "password=", "requirepassword=False",
            "whocanpost=moderatoronly", "prependsubject=True", "subject=[team]", "maxmessagesize=2048",
            "maxrecipients=100", "replytolist=True", "listtoaddress=LISTADDRESS", "listfromaddress=POSTERADDRESS",
            "listreplytoaddress=LISTADDRESS", "digestmode=False", "sendsubscribe=True", "sendunsubscribe=False",
            "allowunsubscribe=True", "disablelistcommand=True", "disablesubscribecommand=False", "disabled=False"]
    ok(ml(c, "SetRequestedListSettings", ListName=f"team@{DOM}", newSettings=sent))
    got = ok(ml(c, "GetRequestedListSettings", ListName="team", requestedSettings=ALL_KEYS))["settingValues"]
    assert dict(s.split("=", 1) for s in got) == {
        "description": "Team list", "disabled": "False", "moderator": f"postmaster@{DOM}", "password": "",
        "requirepassword": "False", "whocanpost": "moderator", "prependsubject": "True", "subject": "[team]",
        "maxmessagesize": "2048", "maxrecipients": "100", "replytolist": "true", "listtoaddress": "LISTADDRESS",
        "listfromaddress": "POSTERADDRESS", "listreplytoaddress": "LISTADDRESS", "digestmode": "False",
        "sendsubscribe": "True", "sendunsubscribe": "False", "allowunsubscribe": "True",
        "disablelistcommand": "True", "disablesubscribecommand": "False"}
    assert [s.split("=")[0] for s in got] == ALL_KEYS  # in the order and spelling asked
    ok(ml(c, "SetSubscriberList", ListName=f"team@{DOM}",
          Subscribers=["A@Example.org", "b@example.org", "", "c@other-example.com", "a@example.org"]))
    assert subscribers(c) == ["a@example.org", "b@example.org", "c@other-example.com"]
    ok(ml(c, "RemoveSubscriber", ListName="team", Subscriber="b@example.org"))
    assert subscribers(c) == ["a@example.org", "c@other-example.com"]
    ok(ml(c, "DeleteList", ListName=f"team@{DOM}"))
    assert ok(ml(c, "GetMailingListsByDomain"))["listNames"] in (None, [])


def test_every_address_list_round_trips(c):
    ok(ml(c, "AddList", ListName="news", Moderator="", Description=""))
    ok(ml(c, "AddSubscriber", ListName="news", Subscriber="one@example.org"))
    ok(ml(c, "AddSubscriber", ListName="news", Subscriber="ONE@example.org"))  # already there: unchanged
    ok(ml(c, "AddSubscriber2", ListName="news", Subscribers=["two@example.org", "three@example.org"]))
    assert subscribers(c, "news") == ["one@example.org", "three@example.org", "two@example.org"]
    ok(ml(c, "SetSubscriberList2", ListName="news", Subscribers=["two@example.org", "four@example.org"]))
    assert subscribers(c, "news") == ["four@example.org", "two@example.org"]
    ok(ml(c, "AddDigestSubscriber", ListName="news", Subscriber="d1@example.org"))
    ok(ml(c, "SetDigestSubscriberList", ListName="news", Subscribers=["d1@example.org", "d2@example.org"]))
    ok(ml(c, "RemoveDigestSubscriber", ListName="news", Subscriber="d1@example.org"))
    assert subscribers(c, "news", "GetDigestSubscriberList") == ["d2@example.org"]
    ok(ml(c, "SetPosterWhiteList", ListName="news", Subscribers=["w@example.org"]))
    assert subscribers(c, "news", "GetPosterWhiteList") == ["w@example.org"]
    ok(ml(c, "SetPosterKillList", ListName="news", Subscribers=["k@example.org", "k2@example.org"]))
    assert subscribers(c, "news", "GetPosterKillList") == ["k2@example.org", "k@example.org"]
    ok(ml(c, "SetPosterKillList", ListName="news", Subscribers=[]))
    assert subscribers(c, "news", "GetPosterKillList") == []
    assert subscribers(c, "news") == ["four@example.org", "two@example.org"]  # kinds kept apart
    code_ = code(ml(c, "RemoveSubscriber", ListName="news", Subscriber="nobody@example.org"))
    assert code_ == -36


def test_defaults_and_setting_parsing(c):
    ok(ml(c, "AddList", ListName="team", Moderator="postmaster", Description="d"))
    got = ok(ml(c, "GetRequestedListSettings", ListName="team",
                requestedSettings=["moderator", "whocanpost", "replytolist", "sendsubscribe"]))["settingValues"]
    assert got == [f"moderator=postmaster@{DOM}", "whocanpost=subscribersonly", "replytolist=false",
                   "sendsubscribe=True"]
    ok(ml(c, "SetRequestedListSettings", ListName="team", newSettings=["replytolist= TRUE ", "whocanpost=Anyone"]))
    got = ok(ml(c, "GetRequestedListSettings", ListName="team", requestedSettings=["replytolist", "whocanpost"]))
    assert got["settingValues"] == ["replytolist=true", "whocanpost=anyone"]
    # All or nothing: one bad value, one unknown key — each named, nothing stored.
    for bad, named in ((["subject=x", "maxrecipients=lots"], "maxrecipients"), (["subject=x", "colour=red"], "colour"),
                       (["subject=x", "disabled=yes"], "disabled"), (["listtoaddress=nowhere"], "listtoaddress")):
        result_code, message = refused(ml(c, "SetRequestedListSettings", ListName="team", newSettings=bad))
        assert result_code == -15 and named in message
    assert ok(ml(c, "GetRequestedListSettings", ListName="team", requestedSettings=["subject"]))["settingValues"] == ["subject="]
    assert code(ml(c, "GetRequestedListSettings", ListName="team", requestedSettings=["nosuchkey"])) == -15
    assert set(LIST) == set(ALL_KEYS)


def test_list_names_and_addresses(c):
    ok(ml(c, "AddList", ListName="team", Moderator="", Description=""))
    assert code(ml(c, "AddList", ListName="TEAM", Moderator="", Description="")) == -126
    assert code(ml(c, "AddList", ListName="plain", Moderator="", Description="")) == -45  # a user
    ok(c.call("svcAliasAdmin", "AddAlias", **ADMIN, DomainName=DOM, AliasName="sales", Addresses=[f"plain@{DOM}"]))
    assert code(ml(c, "AddList", ListName="sales", Moderator="", Description="")) == -45  # an alias
    assert code(ml(c, "AddList", ListName="stserv", Moderator="", Description="")) == -45  # the command address
    # …and the reverse: a user or alias may not take a list's name.
    assert code(c.call("svcUserAdmin", "AddUser", **ADMIN, NewUsername="team", NewPassword="User-pass-12",
                       DomainName=DOM, FirstName="", LastName="", IsDomainAdmin=False)) == -45
    assert code(c.call("svcAliasAdmin", "AddAlias", **ADMIN, DomainName=DOM, AliasName="team",
                       Addresses=[f"plain@{DOM}"])) == -45
    assert code(ml(c, "AddList", ListName="bad name", Moderator="", Description="")) == -11
    assert code(ml(c, "GetSubscriberList", ListName=f"team@{OTHER}")) == -16  # a full address of another domain
    assert code(ml(c, "GetSubscriberList", ListName="nosuch")) == -125
    assert code(ml(c, "DeleteList", ListName="nosuch")) == -125


def test_bad_addresses_name_the_first_and_change_nothing(c):
    ok(ml(c, "AddList", ListName="team", Moderator="", Description=""))
    ok(ml(c, "SetSubscriberList", ListName="team", Subscribers=["keep@example.org"]))
    for op in ("SetSubscriberList", "AddSubscriber2", "SetSubscriberList2", "SetPosterWhiteList"):
        result_code, message = refused(ml(c, op, ListName="team",
                                          Subscribers=["new@example.org", "not-an-address", "also bad@"]))
        assert result_code == -12 and "not-an-address" in message and "also bad" not in message
    assert subscribers(c) == ["keep@example.org"]
    assert subscribers(c, op="GetPosterWhiteList") == []
    assert code(ml(c, "AddSubscriber", ListName="team", Subscriber="x@bad_domain")) == -12
    assert code(ml(c, "AddSubscriber", ListName="team", Subscriber="")) == -12


def test_rights(c):
    ok(ml(c, "AddList", ListName="team", Moderator="", Description=""))
    ok(ml(c, "AddSubscriber", DA, ListName="team", Subscriber="by-da@example.org"))  # the domain's admin
    assert subscribers(c) == ["by-da@example.org"]
    for auth in (OTHER_DA, USER):
        assert code(ml(c, "GetSubscriberList", auth, ListName="team")) == -5
        assert code(ml(c, "AddList", auth, ListName="mine", Moderator="", Description="")) == -5
        assert code(ml(c, "DeleteAllLists", auth)) == -5
        assert code(ml(c, "SetListCommandAddress", auth, commandAddress="cmd")) == -5
    assert ok(ml(c, "GetMailingListsByDomain"))["listNames"] == ["team"]


def test_limit_counts_delete_all_and_domain_lifecycle(c, live_server):
    for name in ("l1", "l2", "l3"):
        ok(ml(c, "AddList", DA, ListName=name, Moderator="", Description=""))
    assert code(ml(c, "AddList", DA, ListName="l4", Moderator="", Description="")) == -50
    counts = ok(c.call("svcDomainAdmin", "GetDomainCounts", **ADMIN, DomainName=DOM))
    assert counts["MailingLists"] == 3
    ok(ml(c, "SetSubscriberList", ListName="l1", Subscribers=["a@example.org"]))
    ok(ml(c, "DeleteAllLists"))
    assert ok(c.call("svcDomainAdmin", "GetDomainCounts", **ADMIN, DomainName=DOM))["MailingLists"] == 0
    ok(ml(c, "AddList", ListName="kept", Moderator="", Description=""))
    ok(ml(c, "SetSubscriberList", ListName="kept", Subscribers=["a@example.org"]))
    ok(c.call("svcDomainAdmin", "RenameDomain", **ADMIN, OldDomainName=DOM, NewDomainName="renamed-example.com"))
    renamed = ok(c.call(ML, "GetSubscriberList", **ADMIN, DomainName="renamed-example.com", ListName="kept@renamed-example.com"))
    assert renamed["Subscribers"] == ["a@example.org"]
    ok(c.call("svcDomainAdmin", "DeleteDomain", **ADMIN, DomainName="renamed-example.com", DeleteFiles=True))
    with live_server.server.store.session() as s:  # the FK cascade took the lists and their members
        assert s.execute(select(func.count()).select_from(MailingList)).scalar_one() == 0
        assert s.execute(select(func.count()).select_from(ListMember)).scalar_one() == 0


def test_list_command_address(c):
    assert ok(ml(c, "GetListCommandAddress"))["commandAddress"] == "stserv"
    ok(ml(c, "SetListCommandAddress", DA, commandAddress=f"Lists@{DOM}"))
    assert ok(ml(c, "GetListCommandAddress"))["commandAddress"] == "lists"
    assert code(ml(c, "SetListCommandAddress", commandAddress="plain")) == -45  # a user's address
    assert code(ml(c, "SetListCommandAddress", commandAddress=f"lists@{OTHER}")) == -16
    assert code(ml(c, "SetListCommandAddress", commandAddress="bad name")) == -11
    assert ok(ml(c, "GetListCommandAddress"))["commandAddress"] == "lists"
    got = ok(c.call("svcDomainAdmin", "GetRequestedDomainSettings", **ADMIN, DomainName=DOM,
                    requestedSettings=["listcommandaddress"]))
    assert got["settingValues"] == ["listcommandaddress=lists"]


def test_replace_all_keeps_bounce_state_of_addresses_that_stay(c, live_server):
    ok(ml(c, "AddList", ListName="team", Moderator="", Description=""))
    ok(ml(c, "SetSubscriberList", ListName="team", Subscribers=["a@example.org", "b@example.org"]))
    with live_server.server.store.session() as s:
        row = s.execute(select(ListMember).where(ListMember.address == "a@example.org")).scalar_one()
        row.bounces, row.disabled = 5, True
    ok(ml(c, "SetSubscriberList", ListName="team", Subscribers=["a@example.org", "c@example.org"]))
    assert subscribers(c) == ["a@example.org", "c@example.org"]
    lst = live_server.server.mailing_lists.find(DOM, "team")
    assert lst is not None and lst.address == f"team@{DOM}"
    assert live_server.server.mailing_lists.addresses(lst.id, "subscriber") == ["c@example.org"]  # a stays disabled


def test_large_replace_is_all_or_nothing(c, live_server):
    lists, actor = live_server.server.mailing_lists, live_server.server.login("root", "Gr8-secret-pw", "127.0.0.1")
    ok(ml(c, "AddList", ListName="big", Moderator="", Description=""))
    first = [f"s{i}@example{i % 50}.org" for i in range(20_000)]
    lists.set_members(actor, DOM, "big", "subscriber", first)
    second = [f"t{i}@example.org" for i in range(20_000)] + ["broken@"]
    result_code, message = refused(ml(c, "SetSubscriberList", ListName="big", Subscribers=second))
    assert result_code == -12 and "broken@" in message
    assert len(subscribers(c, "big")) == 20_000
    ok(ml(c, "SetSubscriberList", ListName="big", Subscribers=second[:-1] + first[:10_000]))
    assert sorted(subscribers(c, "big")) == sorted(second[:-1] + first[:10_000])


def set_list_request(op: str, addresses: list[str]) -> bytes:
    """A SetSubscriberList-shaped SOAP 1.1 request, written out (a 100,000-line one is 4.5 MB)."""
    items = "".join(f"<string>{a}</string>" for a in addresses)
    return (f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/'
            f'envelope/"><soap:Body><{op} xmlns="http://tempuri.org/"><AuthUserName>root</AuthUserName>'
            f"<AuthPassword>Gr8-secret-pw</AuthPassword><DomainName>{DOM}</DomainName><ListName>big</ListName>"
            f"<Subscribers>{items}</Subscribers></{op}></soap:Body></soap:Envelope>").encode()


def soap11(live_server, body: bytes, op: str) -> httpx.Response:
    return httpx.post(f"{live_server.url}/Services/svcMailListAdmin.asmx", content=body, timeout=120,
                      headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f"http://tempuri.org/{op}"})


def test_a_100000_address_list_goes_through_with_the_default_config(c, live_server):
    """Over `[web] max_request_bytes` (4 MB), within `max_list_request_bytes`, which only the Set…List
    operations get; past it, a SOAP fault before the body is read."""
    config = live_server.server.config.web
    ok(ml(c, "AddList", ListName="big", Moderator="", Description=""))
    addresses = [f"subscriber.{i}@example{i % 1000}.org" for i in range(100_000)]
    body = set_list_request("SetSubscriberList", addresses)
    assert config.max_request_bytes < len(body) < config.max_list_request_bytes
    answer = soap11(live_server, body, "SetSubscriberList")
    assert answer.status_code == 200 and "<Result>true</Result>" in answer.text
    with live_server.server.store.session() as s:
        assert s.execute(select(func.count()).select_from(ListMember)).scalar_one() == 100_000
    # Another operation is held to the default cap, whatever its body.
    refused_body = soap11(live_server, body.replace(b"SetSubscriberList", b"GetSubscriberList"), "GetSubscriberList")
    assert refused_body.status_code == 413 and "larger than 4194304 bytes" in refused_body.text
    # A body naming the other operation than its SOAPAction is refused, not served with the larger cap.
    mismatch = soap11(live_server, body.replace(b"SetSubscriberList", b"SetPosterKillList"), "SetSubscriberList")
    assert mismatch.status_code == 500 and "does not match" in mismatch.text
    too_big = set_list_request("SetSubscriberList", addresses * 4)
    assert len(too_big) > config.max_list_request_bytes
    answer = soap11(live_server, too_big, "SetSubscriberList")
    root = etree.fromstring(answer.content)
    fault = root.find("{http://schemas.xmlsoap.org/soap/envelope/}Body/{http://schemas.xmlsoap.org/soap/envelope/}Fault")
    assert answer.status_code == 413 and fault.findtext("faultcode") == "soap:Client"
    assert fault.findtext("faultstring") == (f"The request body is larger than {config.max_list_request_bytes} bytes, "
                                             "the most SetSubscriberList may carry.")
    with live_server.server.store.session() as s:
        assert s.execute(select(func.count()).select_from(ListMember)).scalar_one() == 100_000
