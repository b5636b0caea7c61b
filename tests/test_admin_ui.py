"""The administration pages in a real browser (headless Debian Chromium through Playwright), on a
server started fresh: the factory login is led to the setup wizard and refused over SOAP after it;
a domain added in the interface is found over SOAP; catch-alls Disabled on the Security tab make
SMTP refuse an unknown local part; the spool page resets retry counts; the bandwidth totals equal
GetDomainStatistics. With MAILSRV_SCREENSHOTS=<dir> each page is also saved as a PNG there (the
README's screenshots under docs/screenshots/ are made so)."""
from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from contract_clients import ZeepClient, ok, refused
from smtp_support import START, MailHarness, send
from web_support import WebHarness

from mailsrv.core.clock import ManualClock
from mailsrv.core.errors import ResultCode

CHROMIUM = Path("/usr/bin/chromium")
CHIEF = ("chief", "Boss-pass-123")
SHOP, SHOP_ADMIN_PASSWORD = "shop.test", "Shop-pass-123"
SHOTS = os.environ.get("MAILSRV_SCREENSHOTS", "")
PHONE, DESKTOP = {"width": 390, "height": 844}, {"width": 1280, "height": 860}


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[WebHarness]:
    """A server as `mailsrv serve` leaves it at first start: the factory login, no domain."""
    mail = MailHarness((tmp_path / "data").resolve(), ManualClock(START))
    web = WebHarness(mail)
    try:
        yield web
    finally:
        web.stop()
        if mail.database_url:
            mail.server.store.drop_all()
        mail.stop()
        mail.dns.close()


def shot(page, name: str, phone: bool = False) -> None:  # type: ignore[no-untyped-def]
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        if phone:
            page.set_viewport_size(PHONE)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)
        if phone:
            page.set_viewport_size(DESKTOP)


def rcpt(mail: MailHarness, address: str) -> int:
    with mail.client() as smtp:
        smtp.ehlo("client.example")
        smtp.mail("ext@example.org")
        return smtp.rcpt(address)[0]


def test_first_start_to_daily_administration_in_the_browser(fresh):
    from playwright.sync_api import expect, sync_playwright

    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing (Debian package chromium)")
        pytest.skip(f"{CHROMIUM} is not on this machine (Debian package chromium)")
    mail, soap = fresh.mail, ZeepClient(fresh.url)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page(viewport=DESKTOP)
            # Login.aspx takes a plain user name: the factory login, then every page is the wizard.
            page.goto(f"{fresh.url}/Login.aspx")
            page.get_by_label("Email address or user name").fill("admin")
            page.get_by_label("Password").fill("admin")
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url(f"{fresh.url}/admin/setup")
            page.goto(f"{fresh.url}/admin/domains")
            page.wait_for_url(f"{fresh.url}/admin/setup")
            expect(page.get_by_role("heading", name="Welcome: set up mailsrv")).to_be_visible()
            # A refusal is shown next to its field.
            page.get_by_label("Administrator name").fill(CHIEF[0])
            page.get_by_label("New password").fill("short")
            page.get_by_label("Repeat the password").fill("short")
            page.get_by_label("Server host name").fill("mail.example.test")
            page.get_by_role("button", name="Save and finish setup").click()
            expect(page.locator("#e-password")).to_contain_text("at least")
            shot(page, "setup-wizard")
            page.get_by_label("New password").fill(CHIEF[1])
            page.get_by_label("Repeat the password").fill(CHIEF[1])
            page.get_by_role("button", name="Save and finish setup").click()
            expect(page.get_by_role("status")).to_contain_text("factory login admin/admin no longer works")
            expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
            code, _ = refused(soap.call("svcDomainAdmin", "GetAllDomains", AuthUserName="admin", AuthPassword="admin"))
            assert code == ResultCode.LOGIN_FAILED
            assert mail.server.system_settings.values()["smtphostname"] == "mail.example.test"
            shot(page, "dashboard")
            shot(page, "dashboard-phone", phone=True)

            # Signing in again, at /admin/.
            page.get_by_role("button", name="Log out").click()
            page.goto(f"{fresh.url}/admin/")
            page.wait_for_url(f"{fresh.url}/admin/login")
            page.get_by_label("User name").fill(CHIEF[0])
            page.get_by_label("Password").fill(CHIEF[1])
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

            # A domain added here is there over SOAP.
            page.get_by_role("link", name="Domains").click()
            page.get_by_role("link", name="Add domain").click()
            page.get_by_label("Domain name").fill(SHOP)
            page.get_by_label("Password").fill(SHOP_ADMIN_PASSWORD)
            shot(page, "domain-add")
            page.get_by_role("button", name="Add domain").click()
            expect(page.get_by_role("status")).to_have_text(f"Domain {SHOP} added.")
            expect(page.get_by_role("link", name=SHOP, exact=True)).to_be_visible()
            shot(page, "domains")
            auth = {"AuthUserName": CHIEF[0], "AuthPassword": CHIEF[1]}
            assert SHOP in ok(soap.call("svcDomainAdmin", "GetAllDomains", **auth))["DomainNames"]
            page.get_by_role("link", name=SHOP, exact=True).click()
            page.get_by_role("link", name="Technical").click()
            expect(page.get_by_label("Require SMTP Authentication")).to_have_value("True")
            shot(page, "domain-technical")

            # Catch-alls Disabled on the Security tab: SMTP refuses an unknown local part.
            chief = mail.server.login(*CHIEF, "127.0.0.1")
            mail.server.aliases.add(chief, SHOP, "catcher", [f"postmaster@{SHOP}"])
            mail.server.aliases.set_catch_all(chief, SHOP, "catcher")
            assert rcpt(mail, f"nobody@{SHOP}") == 250
            page.get_by_role("link", name="General Settings").click()
            page.get_by_role("link", name="Security").click()
            page.get_by_label("Catch-alls").select_option("Disabled")
            page.get_by_role("button", name="Save").click()
            expect(page.get_by_role("status")).to_have_text("Saved.")
            expect(page.get_by_label("Catch-alls")).to_have_value("Disabled")
            shot(page, "settings-security")
            assert rcpt(mail, f"nobody@{SHOP}") == 550
            assert rcpt(mail, f"postmaster@{SHOP}") == 250

            # Traffic: one message received, one sent to a domain whose DNS fails (deferred).
            with mail.client() as smtp:
                send(smtp, "ext@example.org", [f"postmaster@{SHOP}"], b"Subject: in\r\n\r\nhello\r\n")
            with mail.authenticated(f"postmaster@{SHOP}", SHOP_ADMIN_PASSWORD) as smtp:
                send(smtp, f"postmaster@{SHOP}", ["someone@unreachable.test"], b"Subject: out\r\n\r\nbye\r\n")
            mail.deliver()
            [waiting] = mail.server.spool_control.list(chief, 10)
            assert waiting.attempts == 1

            # The spool page resets the retry counts.
            page.get_by_role("link", name="Spool").click()
            row = page.get_by_role("row").filter(has_text="someone@unreachable.test")
            expect(row.locator("td[data-label=Attempts]")).to_have_text("1")
            shot(page, "spool")
            page.get_by_label("Action").select_option("reset")
            page.get_by_role("button", name="Apply to all messages").click()
            expect(page.get_by_role("status")).to_have_text("1 recipient due now.")
            expect(row.locator("td[data-label=Attempts]")).to_have_text("0")
            assert [entry.attempts for entry in mail.server.spool_control.list(chief, 10)] == [0]

            # The bandwidth page's totals are GetDomainStatistics' for the same range.
            page.get_by_role("link", name="Bandwidth and traffic").click()
            page.get_by_label("Domain", exact=True).fill(SHOP)
            page.get_by_label("From").fill("2026-02-01")
            page.get_by_label("To").fill("2026-03-10")
            page.get_by_role("button", name="Show").click()
            shown = {name: int(page.locator(f"td[data-total={name}]").inner_text())
                     for name in ("messages_received", "messages_sent", "bytes_received", "bytes_sent")}
            stats = ok(soap.call("svcDomainAdmin", "GetDomainStatistics", **auth, DomainName=SHOP,
                                 StartDate=dt.datetime(2026, 2, 1), EndDate=dt.datetime(2026, 3, 10)))
            assert shown == {"messages_received": stats["MessagesReceived"], "messages_sent": stats["MessagesSent"],
                             "bytes_received": stats["BytesReceived"], "bytes_sent": stats["BytesSent"]}
            assert shown["messages_received"] >= 1 and shown["messages_sent"] == 1
            expect(page.locator("svg rect")).not_to_have_count(0)
            shot(page, "traffic")
            csv_link = page.get_by_role("link", name="Download CSV (for billing)").get_attribute("href")
            with fresh.client() as client:
                client.cookies.update({c["name"]: c["value"] for c in page.context.cookies()})
                csv_text = client.get(csv_link).text
            total = csv_text.strip().splitlines()[-1].split(",")
            assert total[:1] + [int(v) for v in total[3:]] == ["total", *shown.values()]

            page.get_by_role("link", name="Administrators").click()
            shot(page, "administrators")
            page.get_by_role("link", name="Default Domain Settings").click()
            shot(page, "default-domain-settings")
        finally:
            browser.close()
