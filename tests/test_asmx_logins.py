"""Logins over SOAP on two nodes sharing one store: what one node changes about a login (password,
disabling, IP restrictions) is refused at once by the other, however often the old credentials
were just accepted there; and a wrong password is refused and counted on every call. Likewise what
one node changes about a domain or a user is read at once on the other, however often the old
values were just read there, and a domain administrator reads its own domain only."""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
from conftest import web_listener

from mailsrv.core.actor import Actor, Role
from mailsrv.server import MailServer

ADMIN, PASSWORD, NEW_PASSWORD = "chief", "Sturdy-pass-123", "Other-pass-456"
DOMAIN, USER, USER_PASSWORD = "nodes.example", "postmaster@nodes.example", "Domain-pass-123"
OTHER_DOMAIN, OTHER_USER = "other.example", "postmaster@other.example"  # its password: USER_PASSWORD
LIMITS = "[security]\nmax_failures_per_login = 3\nbackoff_seconds = 60\n"


@dataclass(frozen=True)
class Node:
    url: str
    server: MailServer


@contextmanager
def serving(server: MailServer) -> Iterator[Node]:
    """The node's web listener on a free loopback port."""
    with web_listener(server) as base_url:
        yield Node(base_url, server)


@pytest.fixture
def nodes(make_server) -> Iterator[tuple[Node, Node]]:
    """Two MailServers on one database and one data directory, each with its own web listener."""
    first, second = make_server(LIMITS), make_server(LIMITS)
    first.admins.reset_primary(ADMIN, PASSWORD)
    for domain in (DOMAIN, OTHER_DOMAIN):
        first.domains.add(Actor(Role.SYSTEM_ADMIN, ADMIN), domain, "", "postmaster", USER_PASSWORD, "", "", {})
    with serving(first) as one, serving(second) as other:
        yield one, other


def call(node: Node, service: str, operation: str, login: tuple[str, str], source: str = "127.0.0.1",
         **params: str) -> httpx.Response:
    """A SOAP 1.1 call with the login in AuthUserName/AuthPassword (svcServerAdmin's own spelling
    where it has one), from the loopback address `source`."""
    names = ("authUsername", "authPassword") if operation in ("SetSystemAdminPassword",
                                                              "AddIPRestrictionToSystemAdmin") else \
        ("AuthUserName", "AuthPassword")
    body = "".join(f"<{k}>{v}</{k}>" for k, v in {names[0]: login[0], names[1]: login[1], **params}.items())
    envelope = (f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/'
                f'soap/envelope/"><soap:Body><{operation} xmlns="http://tempuri.org/">{body}</{operation}>'
                f'</soap:Body></soap:Envelope>')
    with httpx.Client(timeout=30, transport=httpx.HTTPTransport(local_address=source)) as client:
        return client.post(f"{node.url}/Services/{service}.asmx", content=envelope.encode(),
                           headers={"Content-Type": "text/xml; charset=utf-8",
                                    "SOAPAction": f'"http://tempuri.org/{operation}"'})


def code(response: httpx.Response) -> int:
    """The call's ResultCode; 0 for a void operation that succeeded."""
    assert response.status_code == 200, response.text
    found = re.search(r"<ResultCode>(-?\d+)</ResultCode>", response.text)
    return int(found[1]) if found else 0


def edition(node: Node, login: tuple[str, str], source: str = "127.0.0.1") -> int:
    return code(call(node, "svcServerAdmin", "GetEdition", login, source))


def domain_settings(node: Node, login: tuple[str, str]) -> int:
    return code(call(node, "svcDomainAdmin", "GetDomainSettings", login, domainName=DOMAIN))


def test_a_password_changed_on_one_node_is_refused_at_once_on_the_other(nodes: tuple[Node, Node]) -> None:
    first, second = nodes
    assert [edition(second, (ADMIN, PASSWORD)) for _ in range(3)] == [0, 0, 0]
    assert code(call(first, "svcServerAdmin", "SetSystemAdminPassword", (ADMIN, PASSWORD),
                     systemAdminUsername=ADMIN, newPassword=NEW_PASSWORD)) == 0
    assert edition(second, (ADMIN, PASSWORD)) == -1
    assert edition(second, (ADMIN, NEW_PASSWORD)) == 0

    assert [domain_settings(second, (USER, USER_PASSWORD)) for _ in range(3)] == [0, 0, 0]
    assert code(call(first, "svcUserAdmin", "UpdateUser", (ADMIN, NEW_PASSWORD), EmailAddress=USER,
                     NewPassword=NEW_PASSWORD, NewFirstName="", NewLastName="", IsDomainAdmin="true")) == 0
    assert domain_settings(second, (USER, USER_PASSWORD)) == -1
    assert domain_settings(second, (USER, NEW_PASSWORD)) == 0


@pytest.mark.parametrize("service, operation, params", [
    ("svcUserAdmin", "SetRequestedUserSettings", {"EmailAddress": USER, "newSettings": "<string>isenabled=false</string>"}),
    ("svcDomainAdmin", "DisableDomain", {"domainName": DOMAIN}),
])
def test_disabling_a_user_or_its_domain_on_one_node_is_refused_at_once_on_the_other(
        nodes: tuple[Node, Node], service: str, operation: str, params: dict[str, str]) -> None:
    first, second = nodes
    assert [domain_settings(second, (USER, USER_PASSWORD)) for _ in range(3)] == [0, 0, 0]
    assert code(call(first, service, operation, (ADMIN, PASSWORD), **params)) == 0
    assert domain_settings(second, (USER, USER_PASSWORD)) == -1


def test_an_ip_restriction_added_on_one_node_is_applied_at_once_on_the_other(nodes: tuple[Node, Node]) -> None:
    first, second = nodes
    assert [edition(second, (ADMIN, PASSWORD), "127.0.0.2") for _ in range(3)] == [0, 0, 0]
    assert code(call(first, "svcServerAdmin", "AddIPRestrictionToSystemAdmin", (ADMIN, PASSWORD),
                     adminUsername=ADMIN, ipAddressOrRange="127.0.0.1", restrictionDescription="")) == 0
    assert edition(second, (ADMIN, PASSWORD), "127.0.0.2") == -1
    assert edition(second, (ADMIN, PASSWORD), "127.0.0.1") == 0


def test_wrong_passwords_after_many_right_ones_are_refused_counted_and_lock_the_address(
        nodes: tuple[Node, Node]) -> None:
    first, second = nodes
    assert [edition(node, (ADMIN, PASSWORD), "127.0.0.3") for node in (first, second) * 3] == [0] * 6
    # The limit (3 per login and address) is shared by the nodes: failures on either count.
    assert [edition(node, (ADMIN, "guess"), "127.0.0.3") for node in (first, second, first)] == [-1, -1, -1]
    assert edition(second, (ADMIN, PASSWORD), "127.0.0.3") == -3
    assert edition(first, (ADMIN, PASSWORD), "127.0.0.3") == -3
    assert edition(second, (ADMIN, PASSWORD), "127.0.0.4") == 0


# Each: a read control panels make in loops, a change of what it answers made through the other
# node, and a text in the answer once the change is read.
_READ_AFTER_CHANGE = {
    "GetDomainSettings": (("svcDomainAdmin", "GetDomainSettings", {"domainName": DOMAIN}),
                          ("svcDomainAdmin", "SetRequestedDomainSettings",
                           {"DomainName": DOMAIN, "newSettings": "<string>maxusers=7</string>"}),
                          "<MaxDomainUsers>7</MaxDomainUsers>"),
    "GetPrimaryDomainAdmin": (("svcDomainAdmin", "GetPrimaryDomainAdmin", {"DomainName": DOMAIN}),
                              ("svcDomainAdmin", "SetPrimaryDomainAdmin", {"DomainName": DOMAIN, "AdminUserName": "ada"}),
                              "<PrimaryAdmin>ada</PrimaryAdmin>"),
    "GetUser": (("svcUserAdmin", "GetUser", {"EmailAddress": f"ada@{DOMAIN}"}),
                ("svcUserAdmin", "UpdateUser", {"EmailAddress": f"ada@{DOMAIN}", "NewPassword": "", "NewFirstName": "Ada",
                                                "NewLastName": "", "IsDomainAdmin": "true"}),
                "<FirstName>Ada</FirstName>"),
    "GetUsers": (("svcUserAdmin", "GetUsers", {"DomainName": DOMAIN}),
                 ("svcUserAdmin", "AddUser", {"NewUsername": "bea", "NewPassword": "User-pass-123", "DomainName": DOMAIN,
                                              "FirstName": "", "LastName": "", "IsDomainAdmin": "false"}),
                 "<UserName>bea</UserName>"),
}


def _add_domain_admin(node: Node) -> None:
    """ada, a domain administrator of DOMAIN: the user whose reads _READ_AFTER_CHANGE makes."""
    assert code(call(node, "svcUserAdmin", "AddUser", (ADMIN, PASSWORD), NewUsername="ada",
                     NewPassword="User-pass-123", DomainName=DOMAIN, FirstName="", LastName="", IsDomainAdmin="true")) == 0


@pytest.mark.parametrize("read_name", list(_READ_AFTER_CHANGE))
def test_a_domain_or_user_changed_on_one_node_is_read_at_once_on_the_other(
        nodes: tuple[Node, Node], read_name: str) -> None:
    first, second = nodes
    _add_domain_admin(first)
    (service, read, params), (change_service, change, change_params), changed = _READ_AFTER_CHANGE[read_name]
    for login in ((ADMIN, PASSWORD), (USER, USER_PASSWORD)):
        answers = [call(second, service, read, login, **params) for _ in range(3)]
        assert [code(answer) for answer in answers] == [0, 0, 0]
        assert not any(changed in answer.text for answer in answers)
    assert code(call(first, change_service, change, (ADMIN, PASSWORD), **change_params)) == 0
    for login in ((ADMIN, PASSWORD), (USER, USER_PASSWORD)):
        answer = call(second, service, read, login, **params)
        assert code(answer) == 0 and changed in answer.text


@pytest.mark.parametrize("read_name", list(_READ_AFTER_CHANGE))
def test_a_domain_administrator_is_refused_another_domain_just_read_by_others(
        nodes: tuple[Node, Node], read_name: str) -> None:
    first, second = nodes
    _add_domain_admin(first)
    service, read, params = _READ_AFTER_CHANGE[read_name][0]
    assert [code(call(second, service, read, login, **params)) for login in ((ADMIN, PASSWORD), (USER, USER_PASSWORD))] == [0, 0]
    assert code(call(second, service, read, (OTHER_USER, USER_PASSWORD), **params)) == -5  # PERMISSION_DENIED
