"""Who may open a mailbox over IMAP or POP3, and the pymap session on that user's Maildir.

Passwords are checked by mailsrv's Authenticator, so the brute-force counter is the one SOAP and
SMTP share, and disabled users or domains are refused with the same answer as a wrong password.
pymap runs this in a worker thread (its own event loop), which is why the store is used
synchronously here.
"""
from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from datetime import datetime
from pathlib import Path

from pymap.backend.maildir import Config as MaildirConfig
from pymap.backend.maildir import FilterSet
from pymap.context import socket_info
from pymap.exceptions import AuthorizationFailure, InvalidAuth, NotAllowedError
from pymap.interfaces.login import IdentityInterface, LoginInterface
from pymap.token import AllTokens
from pymap.user import UserMetadata
from pysasl.creds.server import ServerCredentials
from sqlalchemy import select

from mailsrv.access.imap.maildir import MailSession, open_folders, remove_stale_locks
from mailsrv.core import events, settings
from mailsrv.core.actor import Actor, Role
from mailsrv.core.config import SmtpConfig
from mailsrv.core.errors import MailsrvError
from mailsrv.core.sessions import peer_ip
from mailsrv.directory.abuse import blocked_text
from mailsrv.directory.address_lists import AddressLists
from mailsrv.directory.auth import Authenticator
from mailsrv.directory.domain_limits import disk_quota_bytes, disk_quota_refusal
from mailsrv.directory.domains import get_domain
from mailsrv.directory.system_settings import SystemSettings
from mailsrv.directory.user_activity import Quota, UserActivity
from mailsrv.mailstore.disk import Disk
from mailsrv.store.db import Store
from mailsrv.store.models import Domain

log = logging.getLogger(__name__)

# A uidlist lock is held for milliseconds; one this old was left by a process that died (on this
# node or another sharing the data directory).
STALE_LOCK_SECONDS = 60.0


class _AuthenticatorCheck:
    """A pysasl Identity whose secret comparison is a mailsrv login; remembers who logged in."""

    def __init__(self, auth: Authenticator, authcid: str, client_ip: str, protocol: str) -> None:
        self.auth = auth
        self.authcid = authcid
        self.client_ip = client_ip
        self.protocol = protocol
        self.actor: Actor | None = None

    def compare_authcid(self, authcid: str) -> bool:
        return authcid == self.authcid

    def compare_secret(self, secret: str) -> bool:
        try:
            actor = self.auth.login(self.authcid, secret, self.client_ip, self.protocol)
        except MailsrvError:
            return False
        # System administrators have no mailbox.
        if actor.role not in (Role.USER, Role.DOMAIN_ADMIN):
            return False
        self.actor = actor
        return True

    def get_clear_secret(self) -> None:
        return None


def append_limit(domain: Domain, server_max_kb: int) -> int:
    """The largest message a user of `domain` may store over IMAP: the domain's MaxMessageSize
    within the server's `maxmessagesize` setting (initially `[smtp] max_message_kb`). APPEND holds
    the message in memory, so with both unlimited (0) it is still the default server cap."""
    domain_kb = settings.value(settings.DOMAIN, domain.settings, "maxmessagesize")
    return min((kb for kb in (domain_kb, server_max_kb) if kb), default=SmtpConfig.max_message_kb) * 1024


def client_ip() -> str:
    # The address alone: the brute-force counter counts per client address, not per connection.
    return str(socket_info.get().peername_ip or "")


class MailboxUser(IdentityInterface):
    """A logged-in user@domain and its Maildir."""

    def __init__(self, config: MaildirConfig, disk: Disk, auth: Authenticator, domain_path: Path,
                 actor: Actor, append_limit: int, room: Callable[[int], str | None],
                 quota: Callable[[], Quota]) -> None:
        self.config = config
        self.room = room  # MailSession's: the domain's disk quota at each APPEND
        self.quota = quota  # the mailbox's size limit and use, read at each GETQUOTA(ROOT) (blocking)
        self.disk = disk
        self.auth = auth
        self.actor = actor
        self._name = actor.login
        self.domain_path = domain_path
        self.user = actor.user
        self.append_limit = append_limit

    def credentials_current(self) -> bool:
        """False once the password was changed, or the user deleted or disabled: the session must end.
        Blocking (one database read); IMAP and POP3 ask before every command."""
        return self.auth.credentials_current(self.actor)

    async def credentials_still_current(self) -> bool:
        """credentials_current from the event loop's thread, without a hand-over to a worker thread
        (Store.run_read: its reads are prepared `fetch`es)."""
        return await self.auth.store.run_read(self.credentials_current)

    @property
    def name(self) -> str:
        return self._name

    @property
    def roles(self) -> frozenset[str]:
        return frozenset()

    @property
    def maildir(self) -> Path:
        return Disk.maildir(self.domain_path, self.user)

    @asynccontextmanager
    async def new_session(self) -> AsyncIterator[MailSession]:
        # Mailboxes made before the special folders existed get them now; a no-op otherwise.
        self.disk.create_mailbox(self.domain_path, self.user)
        remove_stale_locks(self.maildir, STALE_LOCK_SECONDS)
        folders = open_folders(self.maildir)
        yield MailSession(self.name, self.config, folders, FilterSet(str(self.maildir)),
                          append_limit=self.append_limit, room=self.room)

    async def new_token(self, *, expiration: datetime | None = None) -> str | None:
        return None

    async def get(self) -> UserMetadata:
        raise NotAllowedError()

    async def set(self, metadata: UserMetadata) -> None:
        raise NotAllowedError()

    async def delete(self) -> None:
        raise NotAllowedError()


class Accounts:
    """Who may open a mailbox, and the mailbox each login opens: what the IMAP and POP3 listeners
    ask of the engine, built once by the server and shared by every listener."""

    def __init__(self, auth: Authenticator, disk: Disk, store: Store, system: SystemSettings,
                 lists: AddressLists, activity: UserActivity) -> None:
        self.auth = auth
        self.disk = disk
        self.store = store
        self.activity = activity  # IMAP QUOTA: the figures GetUserQuotas reports
        self.system = system  # the server's maxmessagesize caps every APPEND; smtphostname greets POP3
        self.lists = lists  # the server's POP and IMAP blacklists, checked at connect

    def server_name(self) -> str:
        """The `smtphostname` server setting, read now (blocking)."""
        return str(self.system.values()["smtphostname"])

    async def admitted(self, protocol: str, writer: asyncio.StreamWriter, refusal: bytes) -> bool:
        """Whether the client of a new connection may go on. An address on the server's `protocol`
        blacklist (and not on that whitelist), or blocked by abuse detection for it (as SMTP refuses
        one at connect), is sent `refusal` (the protocol's "-ERR " or "* BYE ") and why, then
        disconnected."""
        lists = await asyncio.to_thread(self.lists.current)
        ip = peer_ip(writer)
        if lists.refused(protocol, ip):
            events.emit("blocked", protocol="pop3" if protocol == "pop" else protocol, ip=ip)
            reason = "Your address is on this server's blacklist"
        else:
            until = await asyncio.to_thread(self.auth.blocked_until, ip, protocol)
            if until is None:
                return True
            log.info("abuse detection: %s connection of %s refused, blocked until %s", protocol, ip, until)
            reason = blocked_text(until)
        with suppress(ConnectionError):
            writer.write(refusal + reason.encode() + b"\r\n")
            await writer.drain()
        writer.close()
        return False

    def open(self, credentials: ServerCredentials, peer_ip: str, protocol: str,
             config: MaildirConfig) -> MailboxUser:
        """The user the credentials log in, on a listener with `config`; InvalidAuth when refused.
        Blocking: the password check and one database read."""
        check = _AuthenticatorCheck(self.auth, credentials.authcid, peer_ip, protocol)
        if not credentials.verify(check) or check.actor is None:
            raise InvalidAuth()
        actor = check.actor
        with self.store.session() as s:
            domain = get_domain(s, actor.domain)
            domain_path = Path(domain.path)
            limit = append_limit(domain, self.system.read(s.connection())["maxmessagesize"])
        return MailboxUser(config, self.disk, self.auth, domain_path, actor, limit,
                           functools.partial(self.domain_room, actor.domain, domain_path),
                           functools.partial(self.activity.own_quota, actor))

    def domain_room(self, domain: str, path: Path, incoming: int) -> str | None:
        """Why `incoming` more bytes do not fit the domain's disk quota, read from the store now (so a
        change applies to open sessions); None when they do. Blocking."""
        with self.store.read_connection() as conn:
            values = conn.execute(select(Domain.settings).where(Domain.name == domain)).scalar()
        return disk_quota_refusal(domain, path, disk_quota_bytes(values or {}), incoming)


class MailboxLogin(LoginInterface):
    def __init__(self, accounts: Accounts, config: MaildirConfig, protocol: str) -> None:
        self.accounts = accounts
        self.config = config
        self.protocol = protocol
        self._tokens = AllTokens(config)

    @property
    def tokens(self) -> AllTokens:
        return self._tokens

    async def authenticate(self, credentials: ServerCredentials) -> MailboxUser:
        return await self.authenticate_from(credentials, client_ip())

    async def authenticate_from(self, credentials: ServerCredentials, peer_ip: str) -> MailboxUser:
        return self.accounts.open(credentials, peer_ip, self.protocol, self.config)

    async def authorize(self, authenticated: IdentityInterface, authzid: str) -> IdentityInterface:
        if authzid and authzid.lower() != authenticated.name:
            raise AuthorizationFailure()
        return authenticated
