"""Login.aspx: the form, the seed's cross-origin auto-login, the session cookie, logout and the
brute-force limit shared with every other protocol."""
from __future__ import annotations

import datetime as dt
import re

from smtp_support import USER_PASSWORD
from web_support import ALICE, BOB, WebHarness, csrf
from web_support import web  # noqa: F401  (the fixture)

from mailsrv.directory.auth import LOCKED_MESSAGE, LOGIN_FAILED_MESSAGE
from mailsrv.directory.web_sessions import SESSION_LIFETIME

AUTOLOGIN = {"shortcutLink": "autologin", "email": ALICE, "password": USER_PASSWORD}


def soap_result_code(web, login: str, password: str) -> int:
    with web.client() as client:
        answer = client.get("/Services/svcUserAdmin.asmx/GetUser",
                            params={"AuthUserName": login, "AuthPassword": password, "EmailAddress": login})
    return int(re.search(r"<ResultCode>(-?\d+)</ResultCode>", answer.text)[1])


def test_login_aspx_shows_a_login_form_whatever_the_case_of_its_path(web):
    with web.client() as client:
        for path in ("/Login.aspx", "/login.aspx", "/LOGIN.ASPX"):
            page = client.get(path)
            assert page.status_code == 200
            assert '<form method="post" action="/Login.aspx">' in page.text
            assert 'name="email"' in page.text and 'type="password"' in page.text


def test_the_seed_autologin_form_posted_from_another_origin_lands_in_the_inbox(web):
    with web.client() as client:
        answer = client.post("/login.aspx", data=AUTOLOGIN,
                             headers={"Origin": "http://127.0.0.1:1", "Referer": "http://127.0.0.1:1/panel.html"})
        assert answer.status_code == 303
        assert answer.headers["location"] == "/Mail"
        inbox = client.get("/Mail")
        assert inbox.status_code == 200
        assert "<h1>Inbox</h1>" in inbox.text and ALICE in inbox.text


def test_the_session_cookie_is_httponly_and_samesite_lax_and_secure_only_under_tls(web):
    with web.client() as client:
        cookie = client.post("/Login.aspx", data=AUTOLOGIN).headers["set-cookie"]
    attributes = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in attributes and "samesite=lax" in attributes and "path=/" in attributes
    assert "secure" not in attributes  # plain http here: a Secure cookie would never come back
    https = WebHarness(web.mail, tls=True)
    try:
        with https.client() as client:
            cookie = client.post("/Login.aspx", data=AUTOLOGIN).headers["set-cookie"]
            assert client.get("/Mail").status_code == 200
    finally:
        https.stop()
    assert "secure" in [part.strip().lower() for part in cookie.split(";")]


def test_wrong_credentials_get_the_same_answer_whether_or_not_the_address_exists(web):
    with web.client() as client:
        known = client.post("/Login.aspx", data={"email": ALICE, "password": "wrong"})
        unknown = client.post("/Login.aspx", data={"email": "nobody@a.test", "password": "wrong"})
        no_domain = client.post("/Login.aspx", data={"email": "nobody@nowhere.test", "password": "wrong"})
    pages = [known, unknown, no_domain]
    assert {p.status_code for p in pages} == {401}
    assert all(LOGIN_FAILED_MESSAGE in p.text for p in pages)
    # Apart from the address typed in (echoed back into the form), the pages are identical.
    bodies = {page.text.replace(address, "") for page, address in zip(
        pages, (ALICE, "nobody@a.test", "nobody@nowhere.test"), strict=True)}
    assert len(bodies) == 1
    assert all("set-cookie" not in p.headers for p in pages)


def test_web_failures_lock_soap_and_soap_failures_lock_the_web(web):
    limit = web.mail.server.config.security.max_failures_per_login
    with web.client() as client:
        for _ in range(limit):
            assert client.post("/Login.aspx", data={"email": ALICE, "password": "wrong"}).status_code == 401
        locked = client.post("/Login.aspx", data=AUTOLOGIN)
    assert locked.status_code == 429 and LOCKED_MESSAGE in locked.text
    assert soap_result_code(web, ALICE, USER_PASSWORD) == -3
    # And the other way round: SOAP failures for bob lock bob's web login.
    for _ in range(limit):
        assert soap_result_code(web, BOB, "wrong") == -1
    with web.client() as client:
        refused = client.post("/Login.aspx", data={"email": BOB, "password": USER_PASSWORD})
    assert refused.status_code == 429 and LOCKED_MESSAGE in refused.text


def test_a_system_administrator_lands_in_the_administration_pages_not_in_webmail(web):
    with web.client() as client:
        answer = client.post("/Login.aspx", data={"email": "sysadmin", "password": "Secret-pass-123"})
        assert (answer.status_code, answer.headers["location"]) == (303, "/admin/")
        assert client.get("/admin/").status_code == 200
        assert client.get("/Mail").headers["location"] == "/admin/"  # it has no mailbox to read


def test_logout_ends_the_session_on_the_server_too(web):
    client = web.signed_in()
    cookie = client.cookies["mailsrv_session"]
    inbox = client.get("/Mail")
    answer = client.post("/Logout.aspx", params={"csrf": csrf(inbox)}, data={})
    assert answer.status_code == 303 and answer.headers["location"] == "/Login.aspx"
    assert 'mailsrv_session=""' in answer.headers["set-cookie"] or "Max-Age=0" in answer.headers["set-cookie"]
    # A copy of the old cookie opens nothing any more.
    with web.client() as stale:
        stale.cookies.set("mailsrv_session", cookie)
        assert stale.get("/Mail").headers["location"] == "/Login.aspx"


def test_logout_without_the_csrf_token_is_refused(web):
    client = web.signed_in()
    assert client.post("/Logout.aspx", data={}).status_code == 403
    assert client.get("/Mail").status_code == 200


def test_pages_need_a_session(web):
    with web.client() as client:
        for path in ("/Mail", "/Mail/Message?folder=INBOX&id=x", "/Mail/Compose", "/"):
            answer = client.get(path)
            assert answer.status_code == 303 and answer.headers["location"] == "/Login.aspx"


def test_a_session_ends_after_its_lifetime(web):
    client = web.signed_in()
    web.mail.clock.advance(SESSION_LIFETIME - dt.timedelta(seconds=1))
    assert client.get("/Mail").status_code == 200
    web.mail.clock.advance(dt.timedelta(seconds=1))
    assert client.get("/Mail").headers["location"] == "/Login.aspx"


def test_disabling_a_user_or_its_domain_ends_its_sessions_and_refuses_its_login(web):
    server, admin = web.mail.server, web.mail.admin()
    alice, bob = web.signed_in(ALICE), web.signed_in(BOB)
    server.users.set_requested_settings(admin, BOB, ["isenabled=False"])
    assert alice.get("/Mail").status_code == 200
    assert bob.get("/Mail").headers.get("location") == "/Login.aspx"
    server.users.set_requested_settings(admin, BOB, ["isenabled=True"])
    assert bob.get("/Mail").headers.get("location") == "/Login.aspx"  # the session is gone, not paused
    server.domains.set_enabled(admin, "a.test", False)
    assert alice.get("/Mail").headers.get("location") == "/Login.aspx"
    with web.client() as client:
        for address in (ALICE, BOB):
            refused = client.post("/Login.aspx", data={"email": address, "password": USER_PASSWORD})
            assert refused.status_code == 401 and LOGIN_FAILED_MESSAGE in refused.text
    assert soap_result_code(web, ALICE, USER_PASSWORD) == -1
