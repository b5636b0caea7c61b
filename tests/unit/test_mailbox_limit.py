"""A mailbox's effective size limit (mailsrv.core.settings.mailbox_limit_bytes), the one rule SMTP's
quota check and GetUserQuotas apply."""
from __future__ import annotations

import pytest

from mailsrv.core.settings import mailbox_limit_bytes

MB = 1024 * 1024


@pytest.mark.parametrize("user, domain, limit", [
    ({"maxsize": 5}, {"maxmailboxsize": 100}, 5 * MB),  # the user's own size wins, smaller
    ({"maxsize": 500}, {"maxmailboxsize": 100}, 500 * MB),  # or larger (a system administrator's grant)
    ({"maxsize": 0}, {"maxmailboxsize": 100}, 100 * MB),  # 0: the domain's
    ({}, {"maxmailboxsize": 7}, 7 * MB),  # users made before the key existed
    ({"maxsize": 0}, {"maxmailboxsize": 0}, 0),  # unlimited
    ({"maxsize": 0}, {}, 0),  # domains made before the key existed: its default, unlimited
])
def test_the_users_size_else_the_domains(user, domain, limit):
    assert mailbox_limit_bytes(user, domain) == limit
