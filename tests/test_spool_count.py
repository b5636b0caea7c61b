"""GetSpoolMessageCount over SOAP: the engine's count of messages still waiting, for system admins only."""
from __future__ import annotations

import asyncio
import datetime as dt

from contract_clients import ZeepClient

from mailsrv.mta.spool import LOCAL, REMOTE, IncomingMessage, NewRecipient, Spool

ADMIN = {"AuthUserName": "root", "AuthPassword": "Gr8-secret-pw"}


def _spool(spool: Spool, *recipient_lists: list[NewRecipient]) -> None:
    """One message per list, spooled as SMTP in would (no delivery runs in this test)."""
    async def enqueue() -> None:
        try:
            for recipients in recipient_lists:
                await spool.enqueue(IncomingMessage(
                    id=Spool.new_id(), sender="ext@example.org", content=b"Subject: x\r\n\r\nx\r\n",
                    received_at=dt.datetime.now(dt.timezone.utc), client_ip="127.0.0.1", helo="client.test",
                    trace_header="", recipients=recipients))
        finally:
            await spool.close()  # the writer task belongs to this short-lived loop
    asyncio.run(enqueue())


def test_get_spool_message_count_counts_waiting_messages_for_system_admins_only(live_server):
    server = live_server.server
    server.admins.reset_primary("root", "Gr8-secret-pw")
    server.domains.add(server.login("root", "Gr8-secret-pw", "127.0.0.1"), "example.com", "", "postmaster",
                       "Domain-pass-1", "", "", {})
    client = ZeepClient(live_server.url)

    empty = client.call("svcServerAdmin", "GetSpoolMessageCount", **ADMIN)
    assert (empty["Result"], empty["ResultCode"], empty["messageCount"]) == (True, 0, 0)

    # Two messages, one with two recipients: messages are counted, not recipients.
    _spool(server.spool, [NewRecipient("a@example.net", "a@example.net", REMOTE)],
           [NewRecipient("b@example.net", "b@example.net", REMOTE),
            NewRecipient("postmaster@example.com", "postmaster@example.com", LOCAL, 1)])
    assert client.call("svcServerAdmin", "GetSpoolMessageCount", **ADMIN)["messageCount"] == 2

    domain_admin = client.call("svcServerAdmin", "GetSpoolMessageCount", AuthUserName="postmaster@example.com",
                               AuthPassword="Domain-pass-1")
    assert (domain_admin["Result"], domain_admin["ResultCode"], domain_admin["messageCount"]) == (False, -5, 0)
    wrong = client.call("svcServerAdmin", "GetSpoolMessageCount", AuthUserName="root", AuthPassword="nope")
    assert (wrong["Result"], wrong["ResultCode"]) == (False, -1)
