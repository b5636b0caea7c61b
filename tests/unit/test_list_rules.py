"""A mailing list's pure rules without a server: its settings keys, how a list is named, how an
address array is read."""
from __future__ import annotations

import pytest

from mailsrv.core import settings
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.directory.mailing_lists import LIST, _Addresses, list_name
from mailsrv.store.models import Domain

DOMAIN = Domain(id=1, name="example.com")


def test_keys_parse_like_convert_to_boolean_and_answer_replytolist_in_lower_case():
    changes = settings.parse_assignments(LIST, ["replytolist= True", "disabled=FALSE", "password=",
                                                "whocanpost=ModeratorOnly", "maxrecipients=5"])
    assert changes == {"replytolist": True, "disabled": False, "password": "", "whocanpost": "moderator",
                       "maxrecipients": 5}
    assert settings.read_requested(LIST, changes, ["replytolist", "disabled", "whocanpost"]) == \
        ["replytolist=true", "disabled=False", "whocanpost=moderator"]


@pytest.mark.parametrize("assignment", ["disabled=yes", "disabled=", "maxmessagesize=-1", "whocanpost=everyone",
                                        "listfromaddress=SUBSCRIBERADDRESS", "listtoaddress=not an address",
                                        "nosuchkey=1"])
def test_bad_values_are_refused_naming_the_key(assignment):
    with pytest.raises(MailsrvError) as refused:
        settings.parse_assignments(LIST, [assignment])
    assert refused.value.code is ResultCode.INVALID_SETTING
    assert assignment.split("=")[0] in refused.value.message


def test_address_keys_take_their_words_in_any_case_or_an_address():
    changes = settings.parse_assignments(LIST, ["listtoaddress=subscriberaddress", "listfromaddress=Team@Example.COM",
                                                "listreplytoaddress="])
    assert changes == {"listtoaddress": "SUBSCRIBERADDRESS", "listfromaddress": "team@example.com",
                       "listreplytoaddress": "LISTADDRESS"}


def test_a_list_is_named_bare_or_by_its_address_in_its_domain():
    assert list_name(DOMAIN, " Team ") == "team"
    assert list_name(DOMAIN, "Team@Example.com") == "team"
    with pytest.raises(MailsrvError) as refused:
        list_name(DOMAIN, "team@other.com")
    assert refused.value.code is ResultCode.INVALID_ARGUMENT


def test_address_arrays_skip_blanks_keep_duplicates_once_and_name_the_first_bad_address():
    assert _Addresses().many(["B@x.org", "", None, "  ", "b@X.ORG", "a@x.org"]) == ["b@x.org", "a@x.org"]
    with pytest.raises(MailsrvError) as refused:
        _Addresses().many(["a@x.org", "first bad", "@second"])
    assert refused.value.code is ResultCode.INVALID_ADDRESS and "first bad" in refused.value.message
