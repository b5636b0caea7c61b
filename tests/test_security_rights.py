"""What a domain administrator may not do over SOAP (security issue #8): lift its own limits, make
another domain local through a domain alias, or take the primary administrator's place."""
from __future__ import annotations

import pytest

from contract_clients import HttpClient

ADMIN = {"AuthUserName": "root", "AuthPassword": "Gr8-secret-pw"}
DOM = "a.test"
PRIMARY = {"AuthUserName": f"postmaster@{DOM}", "AuthPassword": "Domain-pass-1"}
SECOND = {"AuthUserName": f"second@{DOM}", "AuthPassword": "Deputy-pass-1"}


@pytest.fixture
def c(live_server):
    live_server.server.admins.reset_primary("root", "Gr8-secret-pw")
    client = HttpClient(live_server.url, "GET")
    ok(client.call("svcDomainAdmin", "AddDomainEx", **ADMIN, DomainName=DOM, Path="",
                   PrimaryDomainAdminUserName="postmaster", PrimaryDomainAdminPassword="Domain-pass-1",
                   PrimaryDomainAdminFirstName="", PrimaryDomainAdminLastName="", IP=""))
    return client


def ok(result: dict) -> dict:
    assert result["Result"] is True and result["ResultCode"] == 0, result
    return result


def refused(result: dict) -> tuple[int, str]:
    assert result["Result"] is False, result
    return result["ResultCode"], result["Message"]


def add_user(c, name: str, password: str, auth: dict = ADMIN, is_admin: bool = False) -> dict:
    return c.call("svcUserAdmin", "AddUser", **auth, NewUsername=name, NewPassword=password, DomainName=DOM,
                  FirstName="", LastName="", IsDomainAdmin=is_admin)


def primary_admin(c) -> str:
    return ok(c.call("svcDomainAdmin", "GetPrimaryDomainAdmin", **ADMIN, DomainName=DOM))["PrimaryAdmin"]


def test_secondary_domain_admin_cannot_make_itself_primary(c):
    ok(add_user(c, "second", "Deputy-pass-1", is_admin=True))
    code, message = refused(c.call("svcDomainAdmin", "SetPrimaryDomainAdmin", **SECOND, DomainName=DOM,
                                   AdminUserName="second"))
    assert code == -5 and "primary" in message
    assert primary_admin(c) == "postmaster"
    assert refused(c.call("svcUserAdmin", "DeleteUser", **SECOND, Username="postmaster", DomainName=DOM))[0] == -61

    # The primary administrator may hand the role over; then the new primary is the protected one.
    ok(c.call("svcDomainAdmin", "SetPrimaryDomainAdmin", **PRIMARY, DomainName=DOM, AdminUserName="second"))
    assert primary_admin(c) == "second"
    assert refused(c.call("svcUserAdmin", "DeleteUser", **PRIMARY, Username="second", DomainName=DOM))[0] == -61
