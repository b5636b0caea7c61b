"""The SMTP session's idle timeout (mailsrv.access.smtp moves one timer's deadline at each command
instead of setting a new timer): a client that keeps sending commands stays connected past the
timeout, one that goes quiet is disconnected once the timeout has passed since its last command."""
from __future__ import annotations

import asyncio

from mailsrv.access.smtp import MailsrvSMTP

TIMEOUT = 1.5
PAUSE = 0.1  # between the busy client's commands: far below TIMEOUT, so load cannot make it idle


class Greets:
    async def open_session(self, server: MailsrvSMTP) -> None:
        return None


async def _session() -> tuple[list[bytes], float, float]:
    """The replies to NOOPs sent every PAUSE for 2 x TIMEOUT, the length of that busy part, and
    how long after its last NOOP the then quiet client saw the server close the connection."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(MailsrvSMTP.factory(Greets(), hostname="mx.test", timeout=TIMEOUT, loop=loop),
                                      "127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
        replies = [await reader.readline()]
        start = loop.time()
        while loop.time() - start < 2 * TIMEOUT:
            await asyncio.sleep(PAUSE)
            last_command = loop.time()
            writer.write(b"NOOP\r\n")
            replies.append(await reader.readline())
        busy = loop.time() - start
        assert await asyncio.wait_for(reader.read(), 30) == b""  # the server closed the connection
        writer.close()
        return replies, busy, loop.time() - last_command
    finally:
        server.close()


def test_an_idle_session_is_closed_after_the_timeout_and_a_busy_one_is_not():
    replies, busy, waited = asyncio.run(_session())
    assert replies[0].startswith(b"220 mx.test") and busy >= 2 * TIMEOUT
    assert all(reply == b"250 OK\r\n" for reply in replies[1:]) and len(replies) > 4
    # Closed once the timeout had passed since the last command, not before.
    assert waited >= TIMEOUT
