"""The IMAP listeners (`[listen] imap` with STARTTLS, `imaps` with implicit TLS) of `mailsrv serve`."""
from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from proxyprotocol.reader import ProxyProtocolReader
from pymap.concurrent import Subsystem
from sqlalchemy import select

from mailsrv.mailstore.disk import Disk
from mailsrv.access.imap.accounts import MailboxLogin
from mailsrv.access.imap.maildir import remove_stale_locks
from mailsrv.access.imap.protocol import COMMAND_LIMIT, MailboxConfig, MailImapServer
from mailsrv.server import MailServer
from mailsrv.store.models import Domain, User

log = logging.getLogger(__name__)

# pymap runs every command in a worker thread, and an IDLE connection holds one about once a
# second: the pool must exceed the number of clients idling at once, or every command queues.
MAILBOX_WORKERS = 256


def mailbox_subsystem() -> Subsystem:
    return Subsystem.for_executor(ThreadPoolExecutor(MAILBOX_WORKERS, thread_name_prefix="mailbox"))


def mailbox_config(server: MailServer, tls_context: ssl.SSLContext, implicit_tls: bool,
                   subsystem: Subsystem) -> MailboxConfig:
    return MailboxConfig(hostname=server.config.smtp.hostname, tls_context=tls_context, starttls=not implicit_tls,
                         allow_plaintext_auth=server.config.listen.allow_plaintext_auth, subsystem=subsystem)


def remove_all_stale_locks(server: MailServer) -> int:
    """At startup no uidlist lock of ours can be live: remove those a crash left behind."""
    with server.store.session() as s:
        rows = s.execute(select(Domain.path, User.name).join(User, User.domain_id == Domain.id)).all()
    return sum(remove_stale_locks(Disk.maildir(Path(path), name), 0) for path, name in rows)


async def start_imap_listener(server: MailServer, sock: socket.socket, tls_context: ssl.SSLContext,
                              implicit_tls: bool, subsystem: Subsystem) -> asyncio.Server:
    """Serve IMAP on an already bound socket, on the running loop."""
    # At DEBUG pymap logs the wire, LOGIN passwords included.
    logging.getLogger("pymap").setLevel(logging.INFO)
    config = mailbox_config(server, tls_context, implicit_tls, subsystem)
    callback = ProxyProtocolReader(config.proxy_protocol).get_callback(
        MailImapServer(MailboxLogin(server, config, "imap"), config))

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        config.apply_context()
        await callback(reader, writer)

    # The reader's limit is the longest line it buffers: without it a line that never ends grows
    # without bound.
    return await asyncio.start_server(connection, sock=sock, ssl=tls_context if implicit_tls else None,
                                      limit=COMMAND_LIMIT)
