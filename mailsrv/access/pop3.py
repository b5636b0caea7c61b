"""POP3 (RFC 1939) with CAPA (RFC 2449), STLS (RFC 2595) and AUTH PLAIN (RFC 5034) over the IMAP store.

A POP3 session is a pymap session on the user's INBOX, so the two protocols share everything: the
UIDL of a message is `<UIDVALIDITY>.<UID>`, exactly IMAP's identity for it, and the deletions
made at QUIT are an IMAP expunge (\\Deleted, then UID EXPUNGE), which IMAP clients and the web
interface see at once. A connection that drops before QUIT deletes nothing. Logins follow the IMAP
rule: only under TLS, from loopback, or when `[listen] allow_plaintext_auth` is set.
"""
from __future__ import annotations

import asyncio
import binascii
import ipaddress
import logging
import socket
import ssl
from base64 import b64decode
from collections.abc import Awaitable
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass
from typing import TypeVar

from pymap.backend.maildir.mailbox import Message
from pymap.concurrent import Subsystem
from pymap.exceptions import ResponseError
from pymap.flags import FlagOp
from pymap.interfaces.session import SessionInterface
from pymap.parsing.specials import SequenceSet
from pymap.parsing.specials.flag import Deleted
from pymap.selected import SelectedMailbox
from pysasl import SASLAuth
from pysasl.creds.plain import PlainCredentials
from pysasl.creds.server import ServerCredentials
from pysasl.exception import AuthenticationError
from pysasl.mechanism import ChallengeResponse, ServerChallenge

from mailsrv.access.imap.accounts import Accounts, MailboxLogin, MailboxUser
from mailsrv.access.imap.listener import mailbox_login
from mailsrv.access.imap.maildir import message_bytes, stored_size
from mailsrv.core import events
from mailsrv.core.config import Config
from mailsrv.core.sessions import POP as POP_SESSION
from mailsrv.core.sessions import OpenSessions, peer_ip
from mailsrv.directory.address_lists import POP
from mailsrv.directory.listeners import Greetings

log = logging.getLogger(__name__)

_T = TypeVar("_T")
# RFC 2449: a command line is at most 255 octets; a SASL response line may be longer.
_MAX_LINE = 8192


class _Closed(Exception):
    """The client went away or must be disconnected."""


class _BadBase64(Exception):
    pass


@dataclass
class _Message:
    uid: int
    size: int
    message: Message
    deleted: bool = False


class Pop3Connection:
    def __init__(self, config: Config, login: MailboxLogin, subsystem: Subsystem,
                 tls_context: ssl.SSLContext, implicit_tls: bool,
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hostname: str | None = None) -> None:
        self.config = config
        self.hostname = hostname  # the greeting's name for this local IP (AddHostname), if it has one
        self.login = login
        self.subsystem = subsystem
        self.tls_context = tls_context
        self.reader = reader
        self.writer = writer
        self.tls = implicit_tls
        self.peer = str(writer.get_extra_info("peername")[0])
        self.user: str | None = None
        self.identity: MailboxUser | None = None
        self.session: SessionInterface | None = None
        self.selected: SelectedMailbox | None = None
        self.uid_validity = 0
        self.messages: list[_Message] = []

    def _run(self, work: Awaitable[_T]) -> Awaitable[_T]:
        # The store's file I/O runs in pymap's worker threads, never on the shared event loop.
        return self.subsystem.execute(work)

    @property
    def login_allowed(self) -> bool:
        return (self.tls or self.config.listen.allow_plaintext_auth
                or ipaddress.ip_address(self.peer.split("%")[0]).is_loopback)

    async def send(self, line: str) -> None:
        self.writer.write(line.encode("utf-8") + b"\r\n")
        await self.writer.drain()

    async def send_lines(self, first: str, body: bytes) -> None:
        """A multi-line answer: `body` is CRLF text, dot-stuffed here."""
        if body and not body.endswith(b"\r\n"):
            body += b"\r\n"
        lines = body.split(b"\r\n")[:-1] if body else []
        stuffed = b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)
        self.writer.write(first.encode() + b"\r\n" + stuffed + b".\r\n")
        await self.writer.drain()

    async def readline(self) -> str:
        try:
            line = await self.reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            await self.send("-ERR line too long")
            raise _Closed() from None
        except (asyncio.IncompleteReadError, ConnectionError):
            raise _Closed() from None
        return line.decode("utf-8", "replace").rstrip("\r\n")

    async def run(self) -> None:
        async with AsyncExitStack() as stack:
            self.stack = stack
            try:
                # The per-IP name (AddHostname), else the smtphostname server setting as it is now:
                # a change holds for the next session.
                hostname = self.hostname or await asyncio.to_thread(self.login.accounts.server_name)
                await self.send(f"+OK {hostname} POP3 ready")
                while True:
                    line = await self.readline()
                    command, _, argument = line.partition(" ")
                    if not await self.dispatch(command.upper(), argument):
                        break
            except (_Closed, ConnectionError):
                pass
            except Exception:
                log.exception("POP3 session of %s failed", self.peer)
                with suppress(ConnectionError):
                    await self.send("-ERR internal server error")
            finally:
                self.writer.close()

    async def dispatch(self, command: str, argument: str) -> bool:
        """Answer one command; False when the connection is to close."""
        if self.identity is not None and not await self.identity.credentials_still_current():
            # Not even QUIT's deletions are made for a session whose password is no longer valid.
            await self.send("-ERR [AUTH] the password was changed or the account disabled; log in again")
            return False
        if command == "QUIT":
            return await self.quit()
        if command == "CAPA":
            await self.capa()
        elif self.session is None:
            await self.authorization(command, argument)
        else:
            await self.transaction(command, argument)
        return True

    async def capa(self) -> None:
        capabilities = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self.session is None:
            if not self.tls:
                capabilities.append("STLS")
            if self.login_allowed:
                capabilities += ["USER", "SASL PLAIN"]
        capabilities.append("IMPLEMENTATION mailsrv")
        await self.send_lines("+OK Capability list follows", "\r\n".join(capabilities).encode())

    # -- AUTHORIZATION state -----------------------------------------------------------------

    async def authorization(self, command: str, argument: str) -> None:
        if command == "STLS":
            await self.starttls()
        elif command in ("USER", "PASS", "AUTH") and not self.login_allowed:
            await self.send("-ERR [AUTH] Log in only over TLS: use STLS first")
        elif command == "USER" and argument:
            self.user = argument
            await self.send("+OK send PASS")
        elif command == "PASS" and self.user is not None:
            user, self.user = self.user, None
            await self.log_in(PlainCredentials(user, argument))
        elif command == "AUTH":
            await self.authenticate(argument)
        else:
            self.user = None
            await self.send("-ERR command not valid before login")

    async def starttls(self) -> None:
        if self.tls:
            await self.send("-ERR already under TLS")
            return
        await self.send("+OK begin TLS negotiation")
        try:
            await self.writer.start_tls(self.tls_context)
        except (ssl.SSLError, ConnectionError, OSError):
            raise _Closed() from None
        self.tls = True
        self.user = None
        events.tls_established("pop3", self.peer, self.writer.get_extra_info("ssl_object"))

    async def authenticate(self, argument: str) -> None:
        mechanism_name, _, initial = argument.partition(" ")
        mechanism = SASLAuth.defaults().get_server(mechanism_name.upper().encode())
        if mechanism is None or mechanism_name.upper() != "PLAIN":
            await self.send("-ERR unsupported SASL mechanism")
            return
        responses: list[ChallengeResponse] = []
        if initial:
            # RFC 5034: "=" is an empty initial response.
            responses.append(ChallengeResponse(b"", b"" if initial == "=" else self._b64(initial)))
        while True:
            try:
                credentials, _ = mechanism.server_attempt(responses)
            except ServerChallenge as challenge:
                await self.send("+ ")
                answer = await self.readline()
                if answer == "*":
                    await self.send("-ERR authentication cancelled")
                    return
                responses.append(ChallengeResponse(challenge.data, self._b64(answer)))
            except (AuthenticationError, _BadBase64):
                await self.send("-ERR [AUTH] authentication failed")
                return
            else:
                await self.log_in(credentials)
                return

    @staticmethod
    def _b64(text: str) -> bytes:
        try:
            return b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise _BadBase64() from None

    async def log_in(self, credentials: ServerCredentials) -> None:
        try:
            identity = await self._run(self.login.authenticate_from(credentials, self.peer))
            await self.login.authorize(identity, credentials.authzid)
            self.session = await self._run(self.stack.enter_async_context(identity.new_session()))
            await self._run(self.open_inbox())
        except ResponseError:
            self.session = None
            await self.send("-ERR [AUTH] authentication failed")
            return
        self.identity = identity
        total = sum(m.size for m in self.messages)
        await self.send(f"+OK {len(self.messages)} messages ({total} octets)")

    async def open_inbox(self) -> None:
        assert self.session is not None
        snapshot, selected = await self.session.select_mailbox("INBOX")
        found, self.selected = await self.session.fetch_messages(selected, SequenceSet.all(), False)
        self.uid_validity = snapshot.uid_validity
        self.messages = [_Message(message.uid, stored_size(message), message) for _, message in found]

    # -- TRANSACTION state -------------------------------------------------------------------

    def _message(self, argument: str) -> _Message | None:
        if not argument.isdigit() or not 1 <= int(argument) <= len(self.messages):
            return None
        message = self.messages[int(argument) - 1]
        return None if message.deleted else message

    async def transaction(self, command: str, argument: str) -> None:
        args = argument.split()
        if command == "STAT":
            live = [m for m in self.messages if not m.deleted]
            await self.send(f"+OK {len(live)} {sum(m.size for m in live)}")
        elif command in ("LIST", "UIDL"):
            await self.listing(command, args)
        elif command in ("RETR", "TOP") and args:
            await self.retrieve(command, args)
        elif command == "DELE" and len(args) == 1:
            message = self._message(args[0])
            if message is None:
                await self.send("-ERR no such message")
            else:
                message.deleted = True
                await self.send(f"+OK message {args[0]} deleted")
        elif command == "NOOP":
            await self.send("+OK")
        elif command == "RSET":
            for message in self.messages:
                message.deleted = False
            await self.send(f"+OK {len(self.messages)} messages")
        else:
            await self.send("-ERR unknown command or bad arguments")

    def _describe(self, command: str, number: int, message: _Message) -> str:
        value = str(message.size) if command == "LIST" else f"{self.uid_validity}.{message.uid}"
        return f"{number} {value}"

    async def listing(self, command: str, args: list[str]) -> None:
        if args:
            message = self._message(args[0])
            if message is None:
                await self.send("-ERR no such message")
            else:
                await self.send("+OK " + self._describe(command, int(args[0]), message))
            return
        lines = [self._describe(command, n, m) for n, m in enumerate(self.messages, 1) if not m.deleted]
        await self.send_lines("+OK", "\r\n".join(lines).encode())

    async def retrieve(self, command: str, args: list[str]) -> None:
        message = self._message(args[0])
        body_lines = args[1] if command == "TOP" and len(args) == 2 else None
        if message is None or (command == "TOP" and (body_lines is None or not body_lines.isdigit())):
            await self.send("-ERR no such message" if message is None else "-ERR TOP needs a line count")
            return
        try:
            content = await self._run(_read(message))
        except (KeyError, FileNotFoundError):
            await self.send("-ERR message was deleted by another session")
            return
        if body_lines is not None:
            header, separator, body = content.partition(b"\r\n\r\n")
            kept = b"".join(line + b"\r\n" for line in body.split(b"\r\n")[:int(body_lines)]) if body else b""
            content = header + separator + kept
        await self.send_lines(f"+OK {message.size} octets", content)

    # -- UPDATE state ------------------------------------------------------------------------

    async def quit(self) -> bool:
        deleted = [m.uid for m in self.messages if m.deleted]
        if self.session is not None and deleted:
            try:
                await self._run(self.expunge(deleted))
            except (ResponseError, OSError):
                log.exception("POP3 QUIT could not delete %d messages", len(deleted))
                await self.send("-ERR some deleted messages not removed")
                return False
        await self.send("+OK bye")
        return False

    async def expunge(self, uids: list[int]) -> None:
        assert self.session is not None and self.selected is not None
        uid_set = SequenceSet(uids, uid=True)
        _, selected = await self.session.update_flags(self.selected, uid_set, frozenset({Deleted}), FlagOp.ADD)
        await self.session.expunge_mailbox(selected, uid_set)


async def _read(message: _Message) -> bytes:
    return message_bytes(message.message)


async def start_pop3_listener(accounts: Accounts, config: Config, sock: socket.socket, tls_context: ssl.SSLContext,
                              implicit_tls: bool, subsystem: Subsystem, sessions: OpenSessions | None = None,
                              greetings: Greetings | None = None) -> asyncio.Server:
    """Serve POP3 on an already bound socket, on the running loop (`sessions`, `greetings`: as
    mailsrv.access.smtp.start_listener)."""
    login = mailbox_login(accounts, config, tls_context, implicit_tls, subsystem, "pop3")
    sessions = sessions or OpenSessions()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not await accounts.admitted(POP, writer, b"-ERR "):
            return
        login.config.apply_context()
        local_ip = str((writer.get_extra_info("sockname") or ("",))[0])
        hostname = (greetings.name_for(local_ip, "") or None) if greetings else None
        ip = peer_ip(writer)
        events.tls_established("pop3", ip, writer.get_extra_info("ssl_object"))
        with sessions.session(POP_SESSION, ip):
            await Pop3Connection(config, login, subsystem, tls_context, implicit_tls, reader, writer, hostname).run()

    return await asyncio.start_server(connection, sock=sock, ssl=tls_context if implicit_tls else None,
                                      limit=_MAX_LINE)
