"""A MailHarness with the web interface served too, on the same asyncio loop as its SMTP listeners.

One loop, as under `mailsrv serve`: the spool's writer task belongs to the loop that started it, so
a message sent from webmail and one arriving over SMTP must be accepted on the same loop.
"""
from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from smtp_support import DOMAIN, USER_PASSWORD, MailHarness, make_harness

from mailsrv.serve import tcp_listener
from mailsrv.core.tls import SELF_SIGNED_NAME
from services.app import create_app

ALICE, BOB = f"alice@{DOMAIN}", f"bob@{DOMAIN}"


class WebHarness:
    """The web listener; with `tls`, HTTPS with the server's self-signed certificate."""

    def __init__(self, mail: MailHarness, tls: bool = False) -> None:
        self.mail = mail
        self.tls = tls
        self.sock = tcp_listener("127.0.0.1", 0)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.sock.getsockname()[1]}"
        pem = str(mail.data_dir / "tls" / SELF_SIGNED_NAME) if tls else None
        self.web = uvicorn.Server(uvicorn.Config(create_app(mail.server), log_level="warning", lifespan="off",
                                                 ssl_certfile=pem, ssl_keyfile=pem))
        self.serving = asyncio.run_coroutine_threadsafe(self.web.serve(sockets=[self.sock]), mail.loop)
        deadline = time.monotonic() + 10
        while not self.web.started:
            if self.serving.done() or time.monotonic() > deadline:
                raise RuntimeError("the test web server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.web.should_exit = True
        self.serving.result(10)
        self.sock.close()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, follow_redirects=False, timeout=30,
                            verify=self.mail.client_tls() if self.tls else True)

    def signed_in(self, address: str = ALICE, password: str = USER_PASSWORD) -> httpx.Client:
        client = self.client()
        answer = client.post("/Login.aspx", data={"email": address, "password": password})
        assert answer.status_code == 303, answer.text
        return client


def csrf(page: httpx.Response) -> str:
    match = re.search(r'action="/[^"?]+\?csrf=([^"&]+)"', page.text)
    assert match, page.text
    return match[1]


@pytest.fixture
def web(tmp_path: Path) -> Iterator[WebHarness]:
    for mail in make_harness(tmp_path):
        harness = WebHarness(mail)
        try:
            yield harness
        finally:
            harness.stop()
