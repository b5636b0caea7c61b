"""The IMAP listeners (`[listen] imap` with STARTTLS, `imaps` with implicit TLS) of `mailsrv serve`."""
from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from proxyprotocol.reader import ProxyProtocolReader
from pymap.concurrent import Subsystem
from sqlalchemy import select

from mailsrv.access.imap.accounts import Accounts, MailboxLogin
from mailsrv.access.imap.maildir import remove_stale_locks
from mailsrv.access.imap.protocol import (
    COMMAND_LIMIT,
    SERVER_NAME,
    MailboxConfig,
    MailImapServer,
)
from mailsrv.core import events
from mailsrv.core.config import Config
from mailsrv.core.sessions import IMAP as IMAP_SESSION
from mailsrv.core.sessions import OpenSessions, peer_ip
from mailsrv.directory.address_lists import IMAP
from mailsrv.mailstore.disk import Disk
from mailsrv.store.db import Store
from mailsrv.store.models import Domain, User

log = logging.getLogger(__name__)

# pymap runs every command in a worker thread, and an IDLE connection holds one about once a
# second: the pool must exceed the number of clients idling at once, or every command queues.
MAILBOX_WORKERS = 256


def mailbox_subsystem() -> Subsystem:
    return Subsystem.for_executor(ThreadPoolExecutor(MAILBOX_WORKERS, thread_name_prefix="mailbox"))


def mailbox_login(accounts: Accounts, config: Config, tls_context: ssl.SSLContext, implicit_tls: bool,
                  subsystem: Subsystem, protocol: str) -> MailboxLogin:
    """The logins of one IMAP or POP3 listener (STARTTLS, or implicit TLS)."""
    return MailboxLogin(accounts, MailboxConfig(
        hostname=config.smtp.hostname, tls_context=tls_context, starttls=not implicit_tls,
        allow_plaintext_auth=config.listen.allow_plaintext_auth, subsystem=subsystem), protocol)


def remove_all_stale_locks(store: Store) -> int:
    """At startup no uidlist lock of ours can be live: remove those a crash left behind."""
    with store.session() as s:
        rows = s.execute(select(Domain.path, User.name).join(User, User.domain_id == Domain.id)).all()
    return sum(remove_stale_locks(Disk.maildir(Path(path), name), 0) for path, name in rows)


async def start_imap_listener(accounts: Accounts, config: Config, sock: socket.socket, tls_context: ssl.SSLContext,
                              implicit_tls: bool, subsystem: Subsystem,
                              sessions: OpenSessions | None = None) -> asyncio.Server:
    """Serve IMAP on an already bound socket, on the running loop; `sessions` counts the open ones.
    (pymap's greeting names no host, so AddHostname's names do not apply here.)"""
    sessions = sessions or OpenSessions()
    # At DEBUG pymap logs the wire, LOGIN passwords included.
    logging.getLogger("pymap").setLevel(logging.INFO)
    login = mailbox_login(accounts, config, tls_context, implicit_tls, subsystem, "imap")
    imap = MailImapServer(login, login.config)

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sock_info: Any) -> None:
        # The proxy-protocol reader runs this as a task of its own: counted here, for its whole life.
        ip = peer_ip(writer)
        events.tls_established("imap", ip, writer.get_extra_info("ssl_object"))
        with sessions.session(IMAP_SESSION, ip):
            await imap(reader, writer, sock_info)

    callback = ProxyProtocolReader(login.config.proxy_protocol).get_callback(session)

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not await accounts.admitted(IMAP, writer, b"* BYE "):
            return
        login.config.apply_context()
        try:  # the greeting names the server as the setting is now: a change holds for the next session
            SERVER_NAME.set(await asyncio.to_thread(accounts.server_name))
        except Exception:
            log.exception("could not read the server settings for a new IMAP session")
            writer.close()
            return
        await callback(reader, writer)

    # The reader's limit is the longest line it buffers: without it a line that never ends grows
    # without bound.
    return await asyncio.start_server(connection, sock=sock, ssl=tls_context if implicit_tls else None,
                                      limit=COMMAND_LIMIT)
