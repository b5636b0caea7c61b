"""SMTP in: the aiosmtpd listeners for `[listen] smtp` (MX traffic) and `submission` (AUTH required).

aiosmtpd speaks the protocol (SIZE, 8BITMIME, STARTTLS, AUTH only under TLS unless the config
allows plaintext); this module adds PIPELINING and ENHANCEDSTATUSCODES to EHLO, and answers
MAIL, RCPT, DATA and AUTH from the store: recipients via mailsrv.mta.recipients, relaying via
mailsrv.mta.policy, durability via mailsrv.mta.spool (250 only once the message is on disk and recorded).

Answers:
- a client on the server's SMTP IP blacklist (and not on its whitelist) gets 554 5.7.1 instead of
  the greeting, and the connection is closed; an SMTP blocked sender 550 5.7.1 at MAIL
  (mailsrv.directory.address_lists);
- unknown local recipient 550 5.1.1; disabled mailbox or domain 550 5.2.1; relaying 550 5.7.1;
  sender in a domain requiring AUTH without it 530 5.7.0 (see mailsrv.mta.policy); an authenticated
  user's envelope sender, `From:` or `Sender:` address it does not own 553 5.7.1 (at MAIL, after
  DATA; see mailsrv.mta.intake);
- too many recipients (server cap, the sender's domain MaxRecipients when authenticated, the
  recipient's domain MaxRecipients per domain; an RCPT counts as the remote addresses its aliases
  and forwarding expand to, at least one) 452 4.5.3, or 550 5.5.3 for one that alone exceeds a cap;
- a bare CR or LF anywhere in the DATA (SMTP smuggling towards a next hop) 550 5.6.0, and
  nothing is spooled (see mailsrv.mta.intake);
- message too big (SIZE at MAIL/RCPT, real size after DATA; the server cap, the authenticated
  sender's domain and every local recipient's domain MaxMessageSize) 552 5.3.4;
- mailbox quota: 452 4.2.2 at RCPT (full already, or full with the declared SIZE: the sending
  server retries later), 552 5.2.2 after DATA (the real size does not fit);
- the domain's disk quota (`maxsize`): 452 4.2.2 at RCPT (full, or full with the declared SIZE) and
  after DATA; its hourly limits (messages and bytes its authenticated users send, bounces it
  receives; mailsrv.directory.domain_limits): 451 4.7.1 at MAIL, 450 4.7.1 at RCPT for bounces,
  451 4.7.1 after DATA when the message's size or another session's commit took the hour over;
- storage full (the spool's disk or quota, or the database) 452 4.3.1 after DATA; at MAIL when the
  spool's filesystem has less free than the declared SIZE plus a 1 MiB reserve;
- any other internal failure 451 4.3.0, and the session goes on.

Server settings (mailsrv.directory.system_settings) are read when a session opens, through the
intake's generation-keyed cache (one primary-key read unless they changed): the greeting and EHLO
name and our Received header (`smtphostname`), SIZE and the DATA cap (`maxmessagesize`, enforced
while the data is read, before it is buffered) hold for the session; the recipient cap, the relay
rule, catch-alls and the SMTP-authentication floor are read again at each MAIL.

SPF: while a server policy (bouncing, auto-responders) is RequireSPF, the sender of an
unauthenticated client's message (not the null sender) is checked at DATA with mailsrv.mta.spf_check
on the `[dns]` resolver, and the result is kept with the spooled message for those policies.

AUTH checks the password with the one Authenticator every protocol shares (one brute-force
counter), in a worker thread so the event loop never waits on argon2 or the database. We
implement PLAIN and LOGIN as handler `auth_*` methods rather than aiosmtpd's `authenticator`
callback because that callback is synchronous: it would run the password check on the loop.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import datetime as dt
import email.utils
import logging
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import Any

from aiosmtpd.smtp import (
    ALLOWED_BEFORE_STARTTLS,
    BOGUS_LIMIT,
    MISSING,
    SMTP,
    AuthResult,
    Envelope,
    Session,
    TLSSetupException,
    _AuthMechAttr,
    syntax,
)
from aiosmtpd.smtp import log as aiosmtpd_log

from mailsrv.core import events
from mailsrv.core.actor import Actor
from mailsrv.core.config import SmtpConfig
from mailsrv.core.errors import MailsrvError, ResultCode
from mailsrv.core.sessions import SMTP as SMTP_SESSION
from mailsrv.core.sessions import OpenSessions, peer_ip
from mailsrv.directory.auth import Authenticator
from mailsrv.directory.listeners import Greetings
from mailsrv.mta.intake import Intake, Submission
from mailsrv.mta.policy import Client, Reply
from mailsrv.mta.recipients import Deliver, DomainInfo

log = logging.getLogger(__name__)

TEMPORARY_FAILURE = Reply(451, "4.3.0", "Temporary failure; please try again later")

# Default enhanced codes (RFC 3463) for the replies aiosmtpd makes itself without one.
_DEFAULT_STATUS = {
    "220": "2.0.0", "221": "2.0.0", "250": "2.0.0", "252": "2.0.0",
    "421": "4.3.0", "451": "4.3.0", "452": "4.3.1", "454": "4.7.0",
    "500": "5.5.2", "501": "5.5.4", "502": "5.5.1", "503": "5.5.1", "504": "5.5.4",
    "530": "5.7.0", "535": "5.7.8", "550": "5.0.0", "552": "5.3.4", "553": "5.1.3", "554": "5.0.0",
    "555": "5.5.4",
}
_HAS_STATUS = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}(?: |$)")


def with_enhanced_code(reply: str) -> str:
    code, sep, text = reply[:3], reply[3:4] or " ", reply[4:]
    if not code.isdigit() or code[0] not in "245" or _HAS_STATUS.match(reply):
        return reply
    return f"{code}{sep}{_DEFAULT_STATUS.get(code, code[0] + '.0.0')} {text}".rstrip()


class Transaction(Envelope):
    """aiosmtpd's envelope plus what our MAIL and RCPT answers found out."""

    def __init__(self) -> None:
        super().__init__()
        self.sender = ""  # MAIL FROM, "" for the null sender <>
        self.declared_size = 0  # MAIL FROM SIZE=, 0 when not given
        self.own_domain: DomainInfo | None = None  # the authenticated sender's domain
        self.client: Client | None = None  # who sends, as the relay policy saw it at MAIL
        self.accepted: list[tuple[str, Deliver]] = []  # (RCPT address, its resolution)


# `<local@domain>` with a dot-atom local part (RFC 5322's atext) and an LDH domain, and the blanks
# after it, when no comment follows: where the email package's get_angle_addr answers the same
# address and the same rest (it drops blanks and comments after the ">"), as a test that compares
# both on generated input shows.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_PLAIN_ADDRESS = re.compile(rf"<({_ATEXT}+(?:\.{_ATEXT}+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>(?![ \t]*\()[ \t]*")

_END = b"\r\n.\r\n"  # the end of the DATA: a line holding one dot (after the CRLF of the line before)


def _partial_end(tail: bytes | bytearray) -> int:
    """The length of the longest end of `tail` that begins _END without completing it (0 to 4)."""
    for length in range(min(len(tail), len(_END) - 1), 0, -1):
        if tail[-length:] == _END[:length]:
            return length
    return 0


class _PipelinedReader(asyncio.StreamReader):
    """A session's read buffer, and the replies it holds back while the client's next command is
    already in that buffer (RFC 2920: a pipelining client's MAIL, RCPT and DATA get their three
    replies in one write; an EHLO answer's lines go out together). Every write is a system call
    that also delivers to the client; the held replies go out at the latest when a read is about
    to wait for the client, which therefore never waits for a reply that was not sent."""

    def __init__(self, *, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        super().__init__(loop=loop, limit=limit)
        self.held: list[bytes] = []

    def send_held(self) -> None:
        if self.held:
            assert self._transport is not None  # type: ignore[attr-defined]
            self._transport.write(b"".join(self.held))  # type: ignore[attr-defined]
            self.held.clear()

    def has_command(self) -> bool:
        """Whether a whole command line is already in the buffer (aiosmtpd reads lines up to LF)."""
        return b"\n" in self._buffer  # type: ignore[attr-defined]

    async def _wait_for_data(self, func_name: str) -> None:
        # asyncio's StreamReader calls this when, and only when, a read must wait for more input.
        self.send_held()
        await super()._wait_for_data(func_name)  # type: ignore[misc]


# The SMTP commands whose replies may wait for the next command's when that one is already read
# (RFC 2920's MAIL, RCPT, RSET and the group ends EHLO, HELO, NOOP and DATA). The others (QUIT,
# STARTTLS, AUTH, ...) and the loop's own error replies send what is held at once, as they may
# close or change the transport right after.
_PIPELINABLE = frozenset({"EHLO", "HELO", "MAIL", "RCPT", "RSET", "NOOP", "DATA"})


class MailsrvSMTP(SMTP):
    """aiosmtpd's SMTP session with enhanced status codes on the replies it makes itself, and a
    DATA reader that takes the message in blocks rather than line by line.

    RFC 2034: once ENHANCEDSTATUSCODES is advertised, every reply but the greeting and the EHLO
    answer carries one; a HELO client was never told, so its replies stay plain."""

    _in_ehlo = False
    _pipelining = False
    _reader: _PipelinedReader

    def __init__(self, handler: Any, *, sessions: OpenSessions | None = None, greetings: Greetings | None = None,
                 **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._sessions = sessions
        self._greetings = greetings
        self.local_name: str | None = None  # the greeting name for the local IP connected to (AddHostname)

    _counted = False

    @classmethod
    def factory(cls, handler: Any, **kwargs: Any) -> Callable[[], MailsrvSMTP]:
        """The sessions of one listener. aiosmtpd's SMTP.__init__ finds the handler's hooks, the
        commands and the AUTH mechanisms by introspection (inspect.getmembers, dir, signature:
        ~130 us a connection, more than the rest of the session's set-up), and they are the same
        for every session of a listener: one session is built by it as the template, and each
        connection's is a copy of it with stream state of its own (and aiosmtpd's built-in AUTH
        mechanisms, when the handler does not replace them, bound to itself)."""
        template = cls(handler, **kwargs)
        # The command loop (_handle_client) serves neither of these: refused here, not by an
        # assert, which `python -O` would strip.
        if template._proxy_timeout is not None or template._enforce_call_limit:
            raise ValueError("MailsrvSMTP serves neither the PROXY protocol nor aiosmtpd's call limits")
        # The commands as functions, shared by the listener's sessions: the command loop passes the
        # session itself (binding them to each new session was ~2 of the ~5.5 us of its set-up).
        template._smtp_methods = {name: getattr(cls, method.__name__) for name, method in template._smtp_methods.items()}
        builtin = {name: mechanism.method.__name__ for name, mechanism in template._auth_methods.items()
                   if mechanism.is_builtin}

        def session() -> MailsrvSMTP:
            new = cls.__new__(cls)
            new.__dict__.update(template.__dict__)
            asyncio.StreamReaderProtocol.__init__(new, _PipelinedReader(loop=new.loop, limit=new.line_length_limit),
                                                  client_connected_cb=new._cb_client_connected, loop=new.loop)
            if builtin:  # aiosmtpd calls these with the session as argument: bound to it, not to the template
                new._auth_methods = {**template._auth_methods,
                                     **{name: _AuthMechAttr(getattr(new, method), True)
                                        for name, method in builtin.items()}}
            return new
        return session

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # aiosmtpd calls this again with the TLS transport after STARTTLS: the same session.
        first = self._original_transport is None
        super().connection_made(transport)
        ip = peer_ip(transport)
        events.tls_established("smtp", ip, transport.get_extra_info("ssl_object"))
        if not first:
            return
        if transport.get_extra_info("sslcontext") is not None:
            # Implicit TLS (an SSL port): aiosmtpd only knows of TLS it started itself (STARTTLS),
            # and would refuse AUTH as if the session were in the clear.
            self._tls_protocol = transport  # type: ignore[assignment]
        # Before the greeting, which aiosmtpd sends from the client task this call only created.
        if self._greetings is not None:
            sockname = transport.get_extra_info("sockname")
            if sockname:
                self.local_name = self._greetings.name_for(str(sockname[0]), "") or None
        if self._sessions is not None:
            self._sessions.opened(SMTP_SESSION, ip)
            self._counted = True

    _deadline = 0.0

    def _reset_timeout(self, duration: float | None = None) -> None:
        """aiosmtpd cancels its timer and sets a new one at every command; here the deadline moves
        and the one timer, when it fires before it, sets itself again for what is left."""
        self._deadline = self.loop.time() + (duration or self._timeout_duration)
        handle = self._timeout_handle
        if handle is None or handle.cancelled() or handle.when() > self._deadline:
            if handle is not None:
                handle.cancel()
            self._timeout_handle = self.loop.call_at(self._deadline, self._timeout_cb)

    def _timeout_cb(self) -> None:
        if self.loop.time() < self._deadline:
            self._timeout_handle = self.loop.call_at(self._deadline, self._timeout_cb)
            return
        super()._timeout_cb()

    def eof_received(self) -> bool | None:
        # aiosmtpd cancels the session's coroutine at the client's EOF: replies already made but
        # held for the next pipelined command go out first, as they would have without holding.
        if self.transport is not None and not self.transport.is_closing():
            self._reader.send_held()
        return super().eof_received()

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted and self._sessions is not None:
            self._counted = False
            self._sessions.closed(SMTP_SESSION, _peer_ip(self.session) if self.session else "")
        super().connection_lost(error)

    def _create_envelope(self) -> Transaction:
        return Transaction()

    def _call_handler_hook(self, command: str, *args: Any) -> Awaitable[Any]:
        """aiosmtpd's, giving the hook's coroutine to await rather than awaiting it in one more."""
        hook = self._handle_hooks.get(command)
        if hook is None:
            return _missing()
        return hook(self, self.session, self.envelope, *args)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's parse of the address of MAIL and RCPT (the address, and the parameters after
        it), without the typing Protocol class it defines on every call (three quarters of the
        parse), and with the usual `<dot-atom@domain>` taken by a regular expression: the email
        package's parser costs ~40 us an address, the expression gives the same answer in ~1 us.
        An address the parser fails on is malformed (553), an unclosed domain literal too, on
        which it raises AttributeError (aiosmtpd's answer was then a 451)."""
        if not arg:
            return "", ""
        plain = _PLAIN_ADDRESS.match(arg)
        if plain is not None:
            addr, rest = plain.group(1), arg[plain.end():]
        else:
            try:
                address, rest = get_angle_addr(arg) if arg.lstrip().startswith("<") else get_addr_spec(arg)
                addr = address.addr_spec
            except (HeaderParseError, AttributeError):
                return None, None
        if self.local_part_limit and len(addr.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return addr, rest

    async def _handle_client(self) -> None:
        """aiosmtpd's session: a client on the SMTP IP blacklist gets the refusal instead of the
        greeting (RFC 5321 3.1); the others are greeted with the server settings as they are now."""
        assert self.session is not None
        try:
            refusal = await self.event_handler.open_session(self)
        except Exception:
            log.exception("could not read the address lists or server settings for a new SMTP session")
            refusal = "421 4.3.0 Service not available; please try again later"
        if refusal is not None:
            await self.push(str(refusal))
            assert self.transport is not None
            self.transport.close()
            return
        await self.push(f"220 {self.hostname} {self.__ident__}")
        while self.transport is not None:
            try:
                await self._serve_command()
            except (asyncio.CancelledError, ConnectionResetError):  # the connection was lost
                self._writer.close()
                raise
            except Exception as error:
                await self._answer_exception(error)

    async def _serve_command(self) -> None:
        """Read one command line and run its command, with aiosmtpd's answers to a line that is too
        long, empty, not ASCII or unknown. aiosmtpd's loop also logs each line at DEBUG and INFO,
        which its logger never writes here (start_listener), after sanitising its arguments for
        that log: ~20 us a message of smtp-source's, a twelfth of the protocol path's CPU. Neither PROXY nor command call
        limits, which its loop also serves, are used by mailsrv's listeners (factory)."""
        assert self.session is not None
        try:
            line = await self._reader.readuntil()
        except asyncio.LimitOverrunError as error:
            # Too long: the rest of the line read and dropped, then the 500.
            await self._reader.read(error.consumed)
            while True:
                try:
                    await self._reader.readuntil()
                    break
                except asyncio.LimitOverrunError as more:
                    await self._reader.read(more.consumed)
            await self.push("500 Command line too long")
            return
        line = line.rstrip(b"\r\n")
        if not line:
            await self.push("500 Error: bad syntax")
            return
        command_bytes, _, arg_bytes = line.partition(b" ")
        # The command name must be ASCII; the argument is UTF-8 (surrogate escapes keep the bytes)
        # when SMTPUTF8 is on, else strict ASCII.
        try:
            command = command_bytes.upper().decode("ascii")
        except UnicodeDecodeError:
            await self.push("500 Error: bad syntax")
            return
        arg: str | None = None
        if arg_bytes:
            arg_bytes = arg_bytes.strip()
            if self.enable_SMTPUTF8:
                arg = str(arg_bytes, encoding="utf-8", errors="surrogateescape")
            else:
                try:
                    arg = str(arg_bytes, encoding="ascii", errors="strict")
                except UnicodeDecodeError:
                    await self.push("500 Error: strict ASCII mode")
                    return
        limit = self.command_size_limits[command] if self.session.extended_smtp else self.command_size_limit
        if len(line) > limit:
            await self.push("500 Command line too long")
            return
        if not self._tls_handshake_okay and command != "QUIT":
            await self.push("554 Command refused due to lack of security")
            return
        if self.require_starttls and not self._tls_protocol and command not in ALLOWED_BEFORE_STARTTLS:
            await self.push("530 Must issue a STARTTLS command first")  # RFC 3207 4
            return
        method = self._smtp_methods.get(command)
        if method is None:
            aiosmtpd_log.warning("%r unrecognised: %s", self.session.peer, command)
            self._bogus_budget -= 1
            if self._bogus_budget < 1:
                aiosmtpd_log.warning("%r too many bogus commands", self.session.peer)
                await self.push("502 5.5.1 Too many unrecognized commands, goodbye.")
                assert self.transport is not None
                self.transport.close()
                return
            await self.push(f'500 Error: command "{command}" not recognized')
            return
        self._reset_timeout()  # a valid command
        self._pipelining = command in _PIPELINABLE
        try:
            await method(self, arg)
        finally:
            self._pipelining = False

    _bogus_budget = BOGUS_LIMIT

    async def _answer_exception(self, error: Exception) -> None:
        """As aiosmtpd answers a command that raised: the handler's reply (or a 500); a failed TLS
        set-up ends the connection."""
        try:
            status = await self.handle_exception(error)
        except Exception as inner:
            aiosmtpd_log.exception("%r Exception in handle_exception()", self.session and self.session.peer)
            status = f"500 Error: ({inner.__class__.__name__}) {inner}"
        if isinstance(error, TLSSetupException):
            assert self.transport is not None
            self.transport.close()
            self.connection_lost(error)
        else:
            await self.push(status)

    # aiosmtpd's HELP lists a command by its syntax: given again to the ones overridden here.
    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:
        # aiosmtpd raises MAIL's line limit at each EHLO (SIZE, SMTPUTF8) in a dict of its class,
        # cleared by each session's __init__, which the sessions of a listener share (factory): every
        # EHLO of any client would raise every session's limit for good. This session's own, from
        # the RFC 5321 limit again at each EHLO.
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
        self._in_ehlo = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._in_ehlo = False
        await self._send_held()

    async def push(self, status: Any) -> None:
        """aiosmtpd's push, with the enhanced status code, and held back while the client's next
        pipelined command is already read (_PipelinedReader); the lines of an EHLO answer until its
        last."""
        if isinstance(status, str):
            if not self._in_ehlo and self.session is not None and self.session.extended_smtp:
                status = with_enhanced_code(status)
            status = bytes(status, "utf-8" if self.enable_SMTPUTF8 else "ascii")
        self._reader.held.append(status + b"\r\n")
        if not self._in_ehlo:
            await self._send_held()

    async def _send_held(self) -> None:
        if self._pipelining and self._reader.has_command():
            return
        self._reader.send_held()
        # StreamWriter.drain waits, or raises for a lost connection, only when the transport paused
        # our writes or is closing: its coroutine and checks skipped otherwise, as at most replies.
        transport = self.transport
        if self._paused or transport is None or transport.is_closing():
            await self._writer.drain()

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA with the same checks, limits and answers (552 too much data, 500 line too
        long, both once the data has ended), reading blocks up to the end marker instead of one
        awaited line at a time: for a 100 KB message that was over a thousand awaits and most of
        the server's time. The content is taken as aiosmtpd takes it: lines end in CRLF only (a bare
        LF stays inside its line, for mailsrv.mta.intake to refuse) and each line loses a leading dot."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            data, too_much = await self._read_data()
        except asyncio.CancelledError:  # the connection was lost during the DATA (as aiosmtpd does)
            self._writer.close()
            raise
        lines = data.split(b"\r\n")
        if not too_much and max(map(len, lines)) + 2 > self.line_length_limit:
            await self.push("500 Line too long (see RFC5321 4.5.3.1.6)")
            self._set_post_data_state()
            return
        if too_much:
            await self.push("552 Error: Too much mail data")
            self._set_post_data_state()
            return
        # RFC 5321 4.5.2: a line starting with a dot loses that dot. `data` ends after its last CRLF.
        # In C, by replace: a Python step per line was most of a large message's DATA.
        content = (data[1:] if data[:1] == b"." else data).replace(b"\r\n.", b"\r\n")
        self.envelope.content = self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    async def _read_data(self) -> tuple[bytes, bool]:
        """The DATA up to its end marker, without the marker's ".\r\n"; and whether it went over the
        size limit (then only its end is kept). Never reads past the marker: a pipelining client
        may have sent its next command behind it."""
        reader, limit = self._reader, self.data_size_limit
        data = bytearray(b"\r\n")  # as if after a line end: the marker may be the first line
        size, too_much = 0, False
        while not data.endswith(_END):
            pending = _partial_end(data)
            if pending:
                # The marker may straddle what we have and what comes: read on byte by byte, so as
                # to stop exactly at its end (a few bytes per message).
                chunk = await reader.readexactly(1)
            else:
                try:
                    chunk = await reader.readuntil(_END)
                except asyncio.LimitOverrunError as exc:  # no marker in the buffer yet: take it all
                    chunk = await reader.readexactly(exc.consumed)
            data += chunk
            size += len(chunk)
            if limit and size - 3 > limit and not too_much:  # the marker's ".\r\n" does not count
                too_much = True
            if too_much:
                del data[:-len(_END)]  # keep only what the marker check needs
        return bytes(memoryview(data)[2:-3]), too_much  # one copy, not two


async def _missing() -> Any:
    return MISSING


class _AiosmtpdNoise(logging.Filter):
    """aiosmtpd warns that Session.login_data is deprecated on every successful AUTH, from its
    own code; that says nothing about our server."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Session.login_data is deprecated")


def _peer_ip(session: Session) -> str:
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) else str(peer)


def _actor(session: Session) -> Actor | None:
    data = session.auth_data
    return data if session.authenticated and isinstance(data, Actor) else None


def _declared_size(options: Iterable[str]) -> int:
    for option in options:
        key, _, value = option.partition("=")
        if key.upper() == "SIZE" and value.isdigit():
            return int(value)
    return 0


def _printable(text: str) -> str:
    # HELO is client text going into a header: keep it to visible ASCII.
    return re.sub(r"[^!-~]", "?", text)[:255]


_last_date: tuple[tuple[float, dt.timedelta | None], str] = ((0.0, None), "")  # header_date's last second


def header_date(when: dt.datetime) -> str:
    """email.utils.format_datetime(when), worked out once a second: many messages come in a second,
    and the formatting took ~7 us of each."""
    global _last_date
    second = (when.timestamp() // 1, when.utcoffset())  # the date names the second in its offset
    if _last_date[0] != second:
        _last_date = (second, email.utils.format_datetime(when))
    return _last_date[1]


def received_header(session: Session, hostname: str, message_id: str, recipients: list[str],
                    when: dt.datetime) -> str:
    """The RFC 5321 trace header, with the RFC 3848 protocol name (ESMTP, ESMTPS, ESMTPSA, …)."""
    ip = _peer_ip(session)
    protocol = ("ESMTP" if session.extended_smtp else "SMTP") + ("S" if session.ssl else "") \
        + ("A" if _actor(session) else "")
    literal = f"IPv6:{ip}" if ":" in ip else ip
    stamp = header_date(when)
    lines = [f"Received: from {_printable(session.host_name or '') or 'unknown'} ([{literal}])",
             f"\tby {hostname} (mailsrv) with {protocol} id {message_id}"]
    if len(recipients) == 1:
        lines.append(f"\tfor <{recipients[0]}>; {stamp}")
    else:
        lines[-1] += ";"
        lines.append(f"\t{stamp}")
    return "\r\n".join(lines) + "\r\n"


class Handler:
    """The aiosmtpd handler of one listener; shared by its sessions, it keeps no session state."""

    def __init__(self, intake: Intake, auth: Authenticator, config: SmtpConfig, submission: bool) -> None:
        self.intake = intake
        self.auth = auth
        self.config = config
        self.submission = submission

    def _client(self, session: Session) -> Client:
        actor = _actor(session)
        return self.intake.client(_peer_ip(session), actor.login if actor else None)

    async def handle_exception(self, error: Exception) -> str:
        log.error("SMTP session error", exc_info=error)
        return str(TEMPORARY_FAILURE)

    async def open_session(self, server: MailsrvSMTP) -> Reply | None:
        """A new session: the refusal to send instead of the greeting (mailsrv.mta.intake), or None
        once the server settings of now apply to it: its name (unless its local IP has one of its
        own) and its DATA size cap."""
        assert server.session is not None
        refusal = await self.intake.connect_refusal(_peer_ip(server.session))
        if refusal is not None:
            return refusal
        settings = self.intake.settings
        server.hostname = server.local_name or settings.hostname
        server.data_size_limit = settings.max_message_bytes or None
        return None

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Transaction, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        # aiosmtpd reads pipelined commands one by one already; it just does not say so.
        return responses[:-1] + ["250-PIPELINING", "250-ENHANCEDSTATUSCODES", responses[-1]]

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Transaction, address: str,
                          mail_options: list[str]) -> str:
        sender = "" if address == "<>" else address
        actor = _actor(session)
        await self.intake.begin()
        declared = _declared_size(mail_options)
        own = await self.intake.domain(actor.domain) if actor else None
        # Once per transaction, with the address lists `begin` just read: the relay networks and
        # address-list checks are not repeated at each RCPT and at DATA.
        client = self._client(session)
        refusal = await self.intake.check_sender(client, actor, own, sender, declared)
        if refusal:
            return str(refusal)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        envelope.sender, envelope.declared_size, envelope.own_domain = sender, declared, own
        envelope.client = client
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Transaction, address: str,
                          rcpt_options: list[str]) -> str:
        assert envelope.client is not None  # aiosmtpd answers an RCPT before a MAIL itself
        result = await self.intake.check_recipient(envelope.client, envelope.sender, envelope.own_domain,
                                                   envelope.accepted, address, envelope.declared_size)
        if isinstance(result, Reply):
            return str(result)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        envelope.accepted.append((address, result))
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Transaction) -> str:
        # Caught here, not in handle_exception: aiosmtpd resets the transaction only when this
        # hook returns, and a client must be able to start over after a 451.
        try:
            return await self._accept(server, session, envelope)
        except Exception:
            log.exception("could not accept a message from %s", _peer_ip(session))
            return str(TEMPORARY_FAILURE)

    async def _accept(self, server: SMTP, session: Session, envelope: Transaction) -> str:
        actor, client = _actor(session), envelope.client
        assert client is not None
        outcome = await self.intake.submit(Submission(
            sender=envelope.sender, content=envelope.original_content or b"", accepted=envelope.accepted,
            own_domain=envelope.own_domain, actor=actor, client_ip=_peer_ip(session),
            helo=_printable(session.host_name or ""),
            trace=lambda message_id, now: received_header(session, server.hostname, message_id,
                                                          envelope.rcpt_tos, now),
            spf_result=await self.intake.spf_result(actor, _peer_ip(session), envelope.sender,
                                                    session.host_name or "", client.trusted),
            trusted=client.trusted, whitelisted=client.whitelisted))
        return str(outcome) if isinstance(outcome, Reply) else f"250 2.0.0 Ok: queued as {outcome}"

    # AUTH mechanisms: aiosmtpd calls these with the session's SMTP object; they answer an
    # AuthResult, and handled=True when they have already replied themselves.

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        blob = await _client_data(server, args, "")
        if blob is None:
            return AuthResult(success=False, handled=True)
        parts = blob.split(b"\0")  # authorization id, login, password
        if len(parts) != 3:
            await server.push("501 5.5.2 Cannot split the AUTH PLAIN value")
            return AuthResult(success=False, handled=True)
        return await self._login(server, parts[1], parts[2])

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:
        login = await _client_data(server, args, "Username:")
        if login is None:
            return AuthResult(success=False, handled=True)
        password = await server.challenge_auth("Password:")
        if password is MISSING:
            return AuthResult(success=False, handled=True)
        return await self._login(server, login, password)

    async def _login(self, server: SMTP, login: bytes, password: bytes) -> AuthResult:
        # handled=False: aiosmtpd answers 535 5.7.8 itself (or our `message`).
        refused = AuthResult(success=False, handled=False)
        try:
            name, secret = login.decode("utf-8"), password.decode("utf-8")
            actor = await asyncio.to_thread(self.auth.login, name, secret, _peer_ip(server.session), "smtp")
        except UnicodeDecodeError:
            return refused
        except MailsrvError as exc:
            if exc.code == ResultCode.LOGIN_LOCKED:
                return AuthResult(success=False, handled=False,
                                  message="454 4.7.0 Too many failed logins; try again later")
            return refused
        if not actor.user:  # a system administrator has no mailbox to send from
            return refused
        return AuthResult(success=True, auth_data=actor)


async def _client_data(server: SMTP, args: list[str], challenge: str) -> bytes | None:
    """The AUTH initial response, or the answer to `challenge`; None once a refusal was sent."""
    if len(args) == 1:
        answer = await server.challenge_auth(challenge)
        return None if answer is MISSING else answer
    try:
        return base64.b64decode(args[1], validate=True)
    except (binascii.Error, ValueError):
        await server.push("501 5.5.2 Cannot decode base64")
        return None


async def start_listener(intake: Intake, auth: Authenticator, config: SmtpConfig, sock: socket.socket,
                         submission: bool, tls_context: ssl.SSLContext | None, implicit_tls: bool = False,
                         sessions: OpenSessions | None = None, greetings: Greetings | None = None) -> asyncio.Server:
    """Serve SMTP (or submission) on an already bound socket, on the running loop: STARTTLS with
    `tls_context`, or TLS from the first byte with `implicit_tls`. `sessions` counts the open
    sessions; `greetings` names the server per local IP in the greeting and EHLO."""
    # aiosmtpd logs every command line at INFO, an AUTH PLAIN initial response (the password,
    # base64) included: keep its logger to warnings whatever the process's level.
    aiosmtpd_log = logging.getLogger("mail.log")
    aiosmtpd_log.setLevel(logging.WARNING)
    if not any(isinstance(f, _AiosmtpdNoise) for f in aiosmtpd_log.filters):
        aiosmtpd_log.addFilter(_AiosmtpdNoise())
    handler = Handler(intake, auth, config, submission)
    loop = asyncio.get_running_loop()
    # hostname and data_size_limit are the session's own, set by Handler.open_session; the
    # hostname given here only spares aiosmtpd a getfqdn() (a DNS lookup) for the template.
    session = MailsrvSMTP.factory(handler, hostname=config.hostname, ident="ESMTP mailsrv",
                                  tls_context=None if implicit_tls else tls_context, sessions=sessions,
                                  greetings=greetings, auth_required=submission,
                                  auth_require_tls=not config.allow_plaintext_auth, loop=loop)
    return await loop.create_server(session, sock=sock, ssl=tls_context if implicit_tls else None)
