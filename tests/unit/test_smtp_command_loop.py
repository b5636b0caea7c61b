"""mailsrv.access.smtp's session (MailsrvSMTP, from its listener's factory) answers plain command
lines as aiosmtpd's own SMTP does: the same script, the malformed lines included, gets the same
replies from both (HELP's list of commands too), and the same end of the connection."""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP

from mailsrv.access.smtp import MailsrvSMTP

SCRIPT = [
    b"\r\n",  # empty: bad syntax
    b"\xff\xfe\r\n",  # a command name that is not ASCII
    b"MAIL FROM:<a@b.example>\r\n",  # before HELO
    b"HELO client.example\r\n",
    b"NOOP\r\n",
    b"HELP\r\n",
    b"HELP MAIL\r\n",
    b"MAIL FROM:<\xe9t\xe9@b.example>\r\n",  # an argument that is not ASCII
    b"MAIL FROM:<" + b"x" * 600 + b"@b.example>\r\n",  # over the command size limit
    b"NOOP " + b"y" * 3000 + b"\r\n",  # over the reader's line limit
    b"mail FROM:<a@b.example>\r\n",
    b"RCPT TO:<c@d.example>\r\n",
    b"RSET\r\n",
    b"VRFY <c@d.example>\r\n",
    b"FOO\r\n", b"BAR\r\n", b"BAZ\r\n", b"QUX\r\n",
    b"QUUX\r\n",  # the fifth unknown command: 502 and the connection closed
]


class Greets:
    async def open_session(self, server: MailsrvSMTP) -> None:
        return None


async def _replies(factory: Callable[[], Any]) -> list[bytes]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, "127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
        replies = [await reader.readline()]
        for line in SCRIPT:
            writer.write(line)
            replies.append(await reader.readline())
        replies.append(await asyncio.wait_for(reader.read(), 30))  # b"": the server closed the connection
        writer.close()
        return replies
    finally:
        server.close()


async def _both() -> tuple[list[bytes], list[bytes]]:
    loop = asyncio.get_running_loop()
    ours = await _replies(MailsrvSMTP.factory(Greets(), hostname="mx.test", ident="ESMTP test", loop=loop))
    theirs = await _replies(lambda: SMTP(Greets(), hostname="mx.test", ident="ESMTP test", loop=loop))
    return ours, theirs


def test_the_command_loop_answers_as_aiosmtpds():
    ours, theirs = asyncio.run(_both())
    assert ours == theirs
    assert ours[-2].startswith(b"502 5.5.1") and ours[-1] == b""



@pytest.mark.parametrize("options", [{"proxy_protocol_timeout": 5}, {"command_call_limit": 20}])
def test_a_listener_asking_for_what_the_command_loop_does_not_serve_is_refused(options):
    """PROXY and aiosmtpd's per-command call limits are served by aiosmtpd's loop, not ours: a
    listener asking for them fails to start instead of silently going without (even under -O)."""
    async def make() -> None:
        MailsrvSMTP.factory(Greets(), hostname="mx.test", loop=asyncio.get_running_loop(), **options)

    with pytest.raises(ValueError, match="neither the PROXY protocol nor"):
        asyncio.run(make())
