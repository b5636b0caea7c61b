"""The whole path in a real browser (headless Debian Chromium driven by Playwright): a hosting
panel's page on another site carries the seed's hidden auto-login form; its link lands the user in
the inbox, where a message delivered over SMTP waits; the user opens it and replies; the reply
reaches the other mailbox, is filed in Sent, and is counted as sent."""
from __future__ import annotations

import email
import email.policy
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import unavailable
from smtp_support import USER_PASSWORD, send
from web_support import ALICE, BOB
from web_support import web  # noqa: F401  (the fixture)

CHROMIUM = Path("/usr/bin/chromium")

# The seed's "Automating LogIn to SmarterMail" page, byte for byte but for the form action and the
# credentials it says to fill in.
PANEL_PAGE = """<html>
<head> <meta http-equiv= "Content-Language" content= "en-us" > <meta http-equiv= "Content-
Type" content= "text/html; charset=windows-1252 "> <title>Smartermail Login</title> </head>
<SCRIPT LANGUAGE= "JavaScript" > function GoToMail() { document.mailform.submit(); }
</SCRIPT>
<body>
<form name= "mailform" action= "{action}" method= "post" > <input type=
"hidden" name= "shortcutLink" value= "autologin" id= "shortcutLink" > <input type= "hidden"
name= "email" id= "email" value= "{email}" > <input type= "hidden" name=
"password" id= "password" value= "{password}" > </form>
<p><a href= "JavaScript:GoToMail()" > Log into your mail </a></p>
</body>
</html>
"""


@pytest.fixture
def panel(web) -> Iterator[str]:
    """The panel page, served from another site (localhost, not 127.0.0.1, and another port)."""
    body = (PANEL_PAGE.replace("{action}", f"{web.url}/Login.aspx").replace("{email}", ALICE)
            .replace("{password}", USER_PASSWORD).encode("cp1252"))

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802  (http.server's naming)
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=windows-1252")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/panel.html"
    finally:
        server.shutdown()
        server.server_close()


def test_autologin_from_a_panel_then_read_and_reply_in_the_browser(web, panel):
    from playwright.sync_api import expect, sync_playwright

    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is not on this machine (Debian package chromium)")
    with web.mail.authenticated(BOB) as smtp:
        send(smtp, BOB, [ALICE], b"From: Bob <bob@a.test>\r\nTo: alice@a.test\r\nSubject: Lunch on Friday?\r\n"
                                 b"Message-ID: <lunch@a.test>\r\n\r\nShall we meet at noon?\r\n")
    web.mail.deliver()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page()
            page.goto(panel)
            page.get_by_text("Log into your mail").click()
            page.wait_for_url(f"{web.url}/Mail")
            expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
            expect(page.get_by_text(ALICE)).to_be_visible()

            page.get_by_role("link", name="Lunch on Friday?").click()
            expect(page.get_by_text("Shall we meet at noon?")).to_be_visible()
            page.get_by_role("link", name="Reply", exact=True).click()
            expect(page.get_by_label("Subject")).to_have_value("Re: Lunch on Friday?")
            page.get_by_label("Message").fill("Noon works. See you there!")
            page.get_by_role("button", name="Send").click()
            expect(page.get_by_role("status")).to_have_text("Message sent.")
        finally:
            browser.close()

    web.mail.deliver()
    [reply] = web.mail.messages(BOB)
    message = email.message_from_bytes(reply, policy=email.policy.default)
    assert (message["From"], message["Subject"], message["In-Reply-To"]) == (
        ALICE, "Re: Lunch on Friday?", "<lunch@a.test>")
    assert message.get_content().startswith("Noon works. See you there!")
    sent = web.mail.maildir(ALICE) / ".Sent" / "cur"
    [copy] = [path.read_bytes() for path in sent.iterdir()]
    assert reply.endswith(copy)
    traffic = web.mail.server.user_activity.traffic(web.mail.admin(), ALICE, None, None)
    assert (traffic.messages_sent, traffic.bytes_sent) == (1, len(copy))
