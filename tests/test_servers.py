"""Independent mailsrv servers on loopback talking to each other by MX over real SMTP
(tests/servers_support.py): what a mail administrator sees between two servers, and the test of a
server (`mailsrv.mta.server_probe`) against a live and a stopped one."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from serve_support import wait_until
from servers_support import ADMIN, ServerLab, server_lab

from mailsrv.mta.server_probe import ApiLogin, probe_server


@pytest.fixture
def lab(tmp_path, env) -> Iterator[ServerLab]:
    yield from server_lab(tmp_path, env)


def message(number: int) -> bytes:
    return (f"From: alice@a.test\r\nTo: bob@b.test\r\nSubject: across {number}\r\n"
            f"X-Number: {number}\r\n\r\nbody {number}\r\n").encode()


def test_a_stopped_receiver_leaves_the_mail_in_the_senders_spool_until_it_is_back(lab):
    sender, receiver = lab.add("sender"), lab.add("receiver")
    sender.add_domain("a.test")
    sender.add_user("alice@a.test")
    receiver.add_domain("b.test")
    receiver.add_user("bob@b.test")
    lab.mx("a.test", sender)
    lab.mx("b.test", receiver)
    sender.settings("retryminutes=1,1,1")

    # By MX over real SMTP: from the sender's spool into the receiver's Maildir.
    sender.send("alice@a.test", ["bob@b.test"], message(1))
    wait_until(lambda: len(receiver.messages("bob@b.test")) == 1, "the first message in bob's Maildir")
    assert b"X-Number: 1\r\n" in receiver.messages("bob@b.test")[0]
    wait_until(lambda: sender.spool_count() == 0, "the sender's spool empty")

    receiver.stop()
    found = probe_server(f"{receiver.address}:{lab.smtp_port}", timeout=5)
    assert not found.reachable and "refused" in found.smtp_error.lower()

    # Tried, deferred, kept: no bounce while the receiver is down.
    sender.send("alice@a.test", ["bob@b.test"], message(2))
    wait_until(lambda: [row[2:] for row in sender.spool_rows()] == [("deferred", 1)], "one attempt, deferred")
    assert sender.spool_count() == 1
    assert sender.messages("alice@a.test") == []

    receiver.start()
    # A test of the receiver as the admin interface runs it: SMTP and, over its API, its spool.
    found = probe_server(f"{receiver.address}:{lab.smtp_port}",
                         ApiLogin(receiver.base_url, ADMIN["AuthUserName"], ADMIN["AuthPassword"]), timeout=5)
    assert found.reachable and found.greeting.startswith("220 receiver.lab.test")
    assert found.starttls_offered and found.tls_negotiated and found.spool_count == 0, found

    # The next retry (one minute after the failed attempt) delivers it, once.
    wait_until(lambda: len(receiver.messages("bob@b.test")) == 2, "the held message delivered", timeout=120)
    assert b"X-Number: 2\r\n" in receiver.messages("bob@b.test")[1]
    wait_until(lambda: sender.spool_count() == 0, "the sender's spool empty")
    assert sender.spool_rows() == [] and sender.messages("alice@a.test") == []  # and no bounce
