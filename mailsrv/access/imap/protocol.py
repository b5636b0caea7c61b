"""pymap's IMAP server with what it lacks: NAMESPACE (RFC 2342), UNSELECT (RFC 3691), the RFC 6154
SPECIAL-USE attributes on LIST and QUOTA (RFC 9208: the mailbox's size limit as svcUserAdmin's
GetUserQuotas reports it, one quota root "" for every folder; set by the administrator, so
SETQUOTA is refused), added through pymap's own command registry and connection state,
the login rule: LOGIN/AUTHENTICATE only under TLS, from loopback, or when the config allows,
and input limits: pymap reads any literal a client announces, before login too, into memory.
"""
from __future__ import annotations

import asyncio
import os
import re
import ssl
import sys
from argparse import Namespace
from asyncio import StreamReader, StreamWriter
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from contextlib import AsyncExitStack, closing
from contextvars import ContextVar
from operator import attrgetter
from typing import Any, TypeVar, cast

from proxyprotocol.sock import SocketInfo
from pymap.backend.maildir import Config as MaildirConfig
from pymap.bytes import WriteStream
from pymap.concurrent import Event, Subsystem
from pymap.config import IMAPConfig
from pymap.context import connection_exit, subsystem
from pymap.imap import IMAPConnection, IMAPServer
from pymap.imap.state import ConnectionState
from pymap.interfaces.login import LoginInterface
from pymap.interfaces.message import MessageInterface
from pymap.interfaces.session import SessionInterface
from pymap.parsing import EndLine, Params, Space
from pymap.parsing.command import Command, CommandAuth, CommandNoArgs, CommandSelect
from pymap.parsing.command.any import NoOpCommand
from pymap.parsing.command.auth import CommandMailboxArg, ListCommand
from pymap.parsing.command.nonauth import AuthenticateCommand, LoginCommand
from pymap.parsing.command.select import FetchCommand, IdleCommand, UidFetchCommand
from pymap.parsing.commands import Commands, InvalidCommand
from pymap.parsing.exceptions import NotParseable
from pymap.parsing.response import (
    CommandResponse,
    Response,
    ResponseBad,
    ResponseBye,
    ResponseCode,
    ResponseNo,
    ResponseOk,
    UntaggedResponse,
)
from pymap.parsing.response.code import Capability
from pymap.parsing.response.specials import ListResponse, LSubResponse
from pymap.parsing.specials.astring import AString
from pymap.parsing.specials.datetime_ import DateTime
from pymap.parsing.specials.fetchattr import FetchAttribute
from pymap.parsing.specials.flag import Flag
from pymap.parsing.specials.sequenceset import MaxValue, SequenceSet
from pymap.parsing.state import ExpectContinuation, ParsingInterrupt
from pymap.selected import SelectedMailbox
from pysasl import SASLAuth
from pysasl.creds.server import ServerCredentials
from pysasl.hashing import BuiltinHash

from mailsrv.access.imap.accounts import MailboxUser
from mailsrv.access.imap.maildir import MailFolders, SettledFolder, message_bytes, stored_size, to_crlf
from mailsrv.core import events
from mailsrv.core.sessions import peer_ip
from mailsrv.mailstore.disk import SPECIAL_FOLDERS

_SPECIAL_USE = {name: name.encode() for name in SPECIAL_FOLDERS}  # "Sent" -> \Sent, …
# QUOTA=RES-STORAGE only: a mailbox has a size limit, no message-count limit (RFC 9208 lists a
# resource only with a limit).
_EXTRA_CAPABILITIES = [b"NAMESPACE", b"UNSELECT", b"SPECIAL-USE", b"QUOTA", b"QUOTA=RES-STORAGE"]
QUOTA_ROOT = b'""'  # one root for the whole mailbox, as RFC 9208's examples name it
_FLUSH_BYTES = 256 * 1024
# One command, its lines and literals together (an APPEND's message besides): also the longest
# line the stream reader buffers while it looks for the line end.
COMMAND_LIMIT = 64 * 1024
# A literal other than an APPEND's message after login: a user name, a password, a search string.
LITERAL_LIMIT = 8 * 1024
_TOOBIG = ResponseCode.of(b"TOOBIG")
_LITERAL_PLUS = re.compile(rb"{(\d+)\+}\r?\n$")  # pymap's IMAPConnection._literal_plus
_APPEND = re.compile(rb"[^ ]* APPEND ", re.IGNORECASE)
# FETCH items answered from the scan and the file's size alone (besides a whole BODY.PEEK[]).
_LEAN_ITEMS = (b"FLAGS", b"UID", b"RFC822.SIZE", b"INTERNALDATE")
# What a command answered on the event loop's thread may read at most; a bigger one goes to the
# thread pool, from where the loop keeps serving the other sessions meanwhile.
_LOOP_MESSAGES = 64
_LOOP_BYTES = 1024 * 1024
_T = TypeVar("_T")
_uid = attrgetter("uid")


def _is_lean(cmd: FetchCommand) -> bool:
    return all(attr.value in _LEAN_ITEMS or _is_whole_peek(attr) for attr in cmd.attributes)


def _is_whole_peek(attr: FetchAttribute) -> bool:
    """`BODY.PEEK[]`: the whole message, no section part or byte range."""
    section = attr.section
    return (attr.value == b"BODY.PEEK" and attr.partial is None and section is not None
            and not section.parts and section.specifier is None and not section.headers)


def _most_named(seq_set: SequenceSet, top: int) -> int:
    """How many numbers `seq_set` names at most up to `top` (its `*`), from its ranges alone."""
    count = 0
    for elem in seq_set.value:
        if not isinstance(elem, tuple):
            count += 1
            continue
        first, last = sorted(top if isinstance(end, MaxValue) else end for end in elem)
        count += max(0, min(last, top) - first + 1)
    return count


def _stored_or_empty(message: MessageInterface) -> bytes:
    # A file removed by another session (expunged or not yet seen as such) is sent empty, as pymap does.
    try:
        return message_bytes(message)  # type: ignore[arg-type]
    except (KeyError, FileNotFoundError):
        return b""


def _size_or_zero(message: MessageInterface) -> int:
    # Removed by another session: pymap's size of a message it cannot load is 0.
    try:
        return stored_size(message)  # type: ignore[arg-type]
    except (KeyError, FileNotFoundError):
        return 0


class _NotOnLoop(Exception):
    """A command begun on the event loop's thread that pymap must answer after all: more to read
    than the loop should, or a file renamed since its folder was found settled."""


class _SettledFiles:
    """The message files of a settled folder, read on the event loop's thread (_LOOP_BYTES at most)."""

    def __init__(self, folder: SettledFolder) -> None:
        self.folder = folder
        self.left = _LOOP_BYTES

    def size(self, message: MessageInterface) -> int:
        try:
            return os.stat(self.folder.file(message.uid)).st_size
        except FileNotFoundError:
            raise _NotOnLoop() from None

    def data(self, message: MessageInterface) -> bytes:
        # os-level calls: a Python file object costs more than the read of a small message.
        try:
            fd = os.open(self.folder.file(message.uid), os.O_RDONLY)
        except FileNotFoundError:
            raise _NotOnLoop() from None
        try:
            size = os.fstat(fd).st_size
            if size > self.left:
                raise _NotOnLoop()
            self.left -= size
            content = os.read(fd, size)
            while len(content) < size and (more := os.read(fd, size - len(content))):
                content += more
        finally:
            os.close(fd)
        return to_crlf(content)


class _Completed(ResponseOk):
    """pymap's OK, its line written without pymap's BytesFormat, whose typing.Protocol checks cost
    more than the rest of a NOOP answered on the loop."""

    @property
    def text(self) -> bytes:
        code = self.code
        return b"OK %b %b" % (code, self._text) if code is not None else b"OK %b" % self._text


class _FetchLines(UntaggedResponse):
    """Untagged FETCH responses as wire lines: pymap's response object per line costs more than
    the formatting, and 10,000 of them at once set off full garbage collections."""

    def __init__(self, lines: list[bytes]) -> None:
        super().__init__()
        self.lines = lines

    def write(self, writer: WriteStream) -> None:
        for line in self.lines:
            writer.write(line)


# `tag [UID ]FETCH set items`, one space apart, with no literal: pymap's Tag characters.
_FETCH = re.compile(rb"([\x21\x23\x24\x26\x27\x2C-\x5B\x5D\x5E-\x7A\x7C\x7E]+) (UID )?FETCH ([0-9:*,]+)"
                    rb"( [^{\r\n]+\r?\n)\Z", re.IGNORECASE)
_FETCH_ITEMS_KEPT = 256


class MailCommands(Commands):
    """pymap's parser, with what a FETCH asks for (its attribute list, after the sequence set)
    parsed once per distinct text: a client repeats a few of them with other tags and messages,
    and parsing `(BODY.PEEK[])` again each time cost as much as answering it."""

    def __init__(self) -> None:
        super().__init__()
        self._fetch_items: dict[tuple[bool, bytes], FetchCommand] = {}

    def parse(self, buf: memoryview, params: Params) -> tuple[Command, memoryview]:
        match = _FETCH.match(buf)
        if match is None:
            return super().parse(buf, params)
        uid = match[2] is not None
        command_name = b"UID FETCH" if uid else b"FETCH"
        items = self._fetch_items.get((uid, match[4]))
        if items is None:
            # pymap's parse of the same items after another sequence set (the set ends at the space).
            items, _ = super().parse(memoryview(b"t " + command_name + b" 1" + match[4]), params)
            if not isinstance(items, FetchCommand):
                return super().parse(buf, params)  # pymap's own refusal of the whole line
            if len(self._fetch_items) >= _FETCH_ITEMS_KEPT:
                self._fetch_items.clear()
            self._fetch_items[(uid, match[4])] = items
        try:
            sequence_set, rest = SequenceSet.parse(memoryview(match[3]), params.copy(uid=uid))
        except NotParseable:
            rest = b"?"
        if rest:
            return super().parse(buf, params)
        command = (UidFetchCommand if uid else FetchCommand)(match[1], sequence_set, items.attributes, items.options)
        return command, buf[len(buf):]


class NamespaceCommand(CommandNoArgs, CommandAuth):
    command = b"NAMESPACE"


class UnselectCommand(CommandNoArgs, CommandSelect):
    command = b"UNSELECT"


class GetQuotaRootCommand(CommandMailboxArg):
    command = b"GETQUOTAROOT"


class _QuotaRootArg(CommandAuth):
    """A command whose first argument is a quota root (an astring); GETQUOTA takes nothing else,
    SETQUOTA's resource list is not read: the command is refused whatever it sets."""
    _rest_allowed = False

    def __init__(self, tag: bytes, root: bytes) -> None:
        super().__init__(tag)
        self.root = root

    @classmethod
    def parse(cls, buf: memoryview, params: Params) -> tuple[_QuotaRootArg, memoryview]:
        _, buf = Space.parse(buf, params)
        root, buf = AString.parse(buf, params)
        if cls._rest_allowed:
            return cls(params.tag, root.value), buf[len(buf):]
        _, buf = EndLine.parse(buf, params)
        return cls(params.tag, root.value), buf


class GetQuotaCommand(_QuotaRootArg):
    command = b"GETQUOTA"


class SetQuotaCommand(_QuotaRootArg):
    command = b"SETQUOTA"
    _rest_allowed = True


class _TooBig(EOFError):
    """Input over a limit: the connection ends with BYE [TOOBIG] without reading the rest (RFC 7888
    allows it for a non-synchronising literal; for the rest there is no command left to answer)."""


# The `smtphostname` server setting as the session's connection found it (listener.py sets it before
# pymap greets; pymap's subsystem runs the greeting in a copy of that context).
SERVER_NAME: ContextVar[str] = ContextVar("SERVER_NAME")


class MailboxConfig(MaildirConfig):
    """pymap's settings for one listener (STARTTLS or implicit TLS)."""

    def __init__(self, *, hostname: str, tls_context: ssl.SSLContext, starttls: bool,
                 allow_plaintext_auth: bool, subsystem: Subsystem) -> None:
        super().__init__(Namespace(passlib_cfg=None, proxy_protocol=None, debug=False),
                         host=None, port=0, base_dir="", layout="++", colon=None,
                         ssl_context=tls_context, tls_enabled=starttls, subsystem=subsystem,
                         # Passwords are checked by mailsrv's Authenticator, never by pymap's hashes.
                         hash_context=BuiltinHash(), reject_dnsbl=False, invalid_user_sleep=0,
                         # Each user's own limit (MailConnectionState), not pymap's 1 GB for all.
                         max_append_len=None)
        self._hostname = hostname  # [smtp] hostname: the greeting's when SERVER_NAME was not set
        self._allow_plaintext_auth = allow_plaintext_auth

    @property
    def greeting(self) -> bytes:
        return b"Server ready " + SERVER_NAME.get(self._hostname).encode("ascii", "replace")

    @property
    def commands(self) -> Commands:
        commands = MailCommands()
        for command in (NamespaceCommand, UnselectCommand, GetQuotaRootCommand, GetQuotaCommand, SetQuotaCommand):
            commands.register(command)
        return commands

    @property
    def initial_auth(self) -> SASLAuth:
        # pymap itself opens auth to loopback peers and after STARTTLS; this adds the config switch.
        return self.tls_auth if self._allow_plaintext_auth else super().initial_auth

    @property
    def login_capability(self) -> Sequence[bytes]:
        return [*super().login_capability, *_EXTRA_CAPABILITIES]


class MailConnectionState(ConnectionState):
    """pymap's connection state, run on the event loop's thread (MailImapConnection._exec): NOOP and
    lean FETCHes of a selected folder unchanged on disk are answered right there, everything else
    by pymap in its thread pool, where its blocking file and database access belongs."""
    _user: MailboxUser | None = None

    def __init__(self, login: LoginInterface, config: IMAPConfig) -> None:
        super().__init__(login, config)
        self._loop = asyncio.get_running_loop()

    def _pooled(self, work: Coroutine[Any, Any, _T]) -> Awaitable[_T]:
        """`work` in pymap's thread pool; already there (LOGIN's do_authenticate), right where it is."""
        if asyncio.get_running_loop() is self._loop:
            return subsystem.get().execute(work)
        return work

    async def do_authenticate(self, cmd: AuthenticateCommand | LoginCommand,
                              creds: ServerCredentials | None) -> CommandResponse:
        return await self._pooled(super().do_authenticate(cmd, creds))

    async def receive_updates(self, cmd: IdleCommand, done: Event) -> Iterable[UntaggedResponse]:
        return await self._pooled(super().receive_updates(cmd, done))

    async def _login(self, creds: ServerCredentials) -> SessionInterface:
        # pymap's, remembering who logged in for the check before each command.
        user = await self.login.authorize(await self.login.authenticate(creds), creds.authzid)
        self._user = cast(MailboxUser, user)
        return await connection_exit.get().enter_async_context(user.new_session())

    @property
    def append_limit(self) -> int | None:
        """The largest message the logged-in user may APPEND; None before login."""
        return self._session.append_limit if self._session is not None else None  # type: ignore[attr-defined]

    @property
    def capability(self) -> Capability:
        capability = super().capability
        if self.append_limit is not None:
            capability.capabilities.append(b"APPENDLIMIT=%d" % self.append_limit)  # RFC 7889
        return capability

    async def do_command(self, cmd: Command) -> CommandResponse:
        checked = False
        if self._user is not None and self._selected is not None and (
                isinstance(cmd, NoOpCommand) or (isinstance(cmd, FetchCommand) and _is_lean(cmd))):
            # The commands a client repeats most, for which pymap's thread hand-over, parsing of
            # the folder's state and comparison of the client view with it cost several times the
            # answer.
            if not await self._user.credentials_still_current():
                return self._ended(cmd)
            checked = True
            answer = self._answer_settled(cmd, on_loop=True)
            if answer is not None:
                return answer
        return await self._pooled(self._by_pymap(cmd, checked))

    @staticmethod
    def _ended(cmd: Command) -> CommandResponse:
        response = ResponseNo(cmd.tag, b"Session ended: the password was changed or the account disabled.")
        response.add_untagged(ResponseBye(b"The password was changed or the account disabled; log in again."))
        return response

    def _answer_settled(self, cmd: NoOpCommand | FetchCommand, on_loop: bool) -> CommandResponse | None:
        """The answer when the selected folder is on disk exactly as the client was last told, so
        that there is no update to send (pymap would find none) and the client view's messages
        are the folder's; None when pymap must answer. `on_loop`: on the event loop's thread, which
        reads little (None for more)."""
        selected = self.selected
        folder = cast(MailFolders, self.session.mailbox_set).opened(selected.lookup)  # type: ignore[attr-defined]
        settled = folder.settled(selected.messages) if folder is not None else None
        if settled is None or not selected.unchanged:  # type: ignore[attr-defined]
            return None
        if isinstance(cmd, NoOpCommand):
            return _Completed(cmd.tag, cmd.command + b" completed.")
        view = selected.messages
        if on_loop and _most_named(cmd.sequence_set, view.max_uid if cmd.uid else view.exists) > _LOOP_MESSAGES:
            # Told before the messages are looked up: the thread pool would look them up again.
            return None
        messages = view.get_all(cmd.sequence_set)
        if not on_loop:
            return self._lean_fetch(cmd, messages, _size_or_zero, _stored_or_empty)
        files = _SettledFiles(settled)
        try:
            return self._lean_fetch(cmd, messages, files.size, files.data)
        except _NotOnLoop:
            return None

    async def _by_pymap(self, cmd: Command, checked: bool) -> CommandResponse:
        # In a worker thread, so the blocking database read is fine here.
        if not checked and self._user is not None and not self._user.credentials_current():
            return self._ended(cmd)
        parse_exc = cmd.parse_exc if isinstance(cmd, InvalidCommand) else None
        if parse_exc is not None and parse_exc.code is not None and bytes(parse_exc.code) == bytes(_TOOBIG):
            # A literal refused before its continuation: APPEND's message is NO (RFC 7889), the rest BAD.
            if cmd.command_name == b"APPEND":
                return ResponseNo(cmd.tag, b"APPEND: Message too big.", _TOOBIG)
            return ResponseBad(cmd.tag, cmd.message, _TOOBIG)
        return await super().do_command(cmd)

    async def do_namespace(self, cmd: NamespaceCommand) -> tuple[ResponseOk, None]:
        response = ResponseOk(cmd.tag, b"NAMESPACE completed.")
        # One personal namespace, no shared or other users' folders.
        response.add_untagged(UntaggedResponse(b'NAMESPACE (("" "/")) NIL NIL'))
        return response, None

    async def do_unselect(self, cmd: UnselectCommand) -> tuple[ResponseOk, None]:
        # CLOSE without the expunge.
        self._selected = None
        return ResponseOk(cmd.tag, b"UNSELECT completed."), None

    def _quota_response(self) -> UntaggedResponse:
        """`* QUOTA "" (STORAGE used limit)` in KiB, rounded down as GetUserQuotas' bytes would be;
        an unlimited mailbox has no resource to list."""
        assert self._user is not None
        quota = self._user.quota()
        storage = b"STORAGE %d %d" % (quota.used_bytes // 1024, quota.max_bytes // 1024) if quota.max_bytes else b""
        return UntaggedResponse(b"QUOTA %b (%b)" % (QUOTA_ROOT, storage))

    async def do_getquotaroot(self, cmd: GetQuotaRootCommand) -> tuple[ResponseOk, SelectedMailbox | None]:
        _mailbox, updates = await self.session.get_mailbox(cmd.mailbox, selected=self._selected)  # NO if none
        response = ResponseOk(cmd.tag, b"GETQUOTAROOT completed.")
        response.add_untagged(UntaggedResponse(b"QUOTAROOT %b %b" % (bytes(cmd.mailbox_obj), QUOTA_ROOT)),
                              self._quota_response())
        return response, updates

    async def do_getquota(self, cmd: GetQuotaCommand) -> tuple[Response, None]:
        if cmd.root != b"":
            return ResponseNo(cmd.tag, b"No such quota root.", ResponseCode.of(b"NONEXISTENT")), None
        response = ResponseOk(cmd.tag, b"GETQUOTA completed.")
        response.add_untagged(self._quota_response())
        return response, None

    async def do_setquota(self, cmd: SetQuotaCommand) -> tuple[Response, None]:
        return ResponseNo(cmd.tag, b"Quotas are set by the mail administrator.", ResponseCode.of(b"NOPERM")), None

    async def do_fetch(self, cmd: FetchCommand) -> tuple[ResponseOk, SelectedMailbox | None]:
        if not _is_lean(cmd):
            return await super().do_fetch(cmd)
        # A client's sync (`UID FETCH 1:* (FLAGS)`, often with RFC822.SIZE and INTERNALDATE) and
        # opening a message (`UID FETCH n (BODY.PEEK[])`) answered without pymap's generic
        # formatting, whose typing.Protocol checks cost ~0.1 ms a message, and without it parsing
        # the MIME structure to re-serialise it or just to count its bytes: the file is stored CRLF
        # exactly as sent, so its size is the RFC 822 size. PEEK sets no \Seen, so no flag update
        # is needed.
        # A settled folder (a set too big for the loop): the view holds what fetch_messages would find.
        answer = self._answer_settled(cmd, on_loop=False)
        if answer is not None:
            return answer, None  # type: ignore[return-value]
        if not cmd.uid:
            self.selected.hide_expunged = True
        messages, updates = await self.session.fetch_messages(self.selected, cmd.sequence_set, False)
        return self._lean_fetch(cmd, messages, _size_or_zero, _stored_or_empty), updates

    def _lean_fetch(self, cmd: FetchCommand, messages: Sequence[tuple[int, MessageInterface]],
                    size: Callable[[MessageInterface], int], data: Callable[[MessageInterface], bytes]) -> ResponseOk:
        """A lean FETCH's answer, each message's file size and bytes as `size` and `data` give them.
        Written column by column (each item of every message, then the lines from one template):
        a `UID FETCH 1:* (FLAGS)` of 10,000 messages is a loop of Python calls per item."""
        response = _Completed(cmd.tag, cmd.command + b" completed.")
        found = [message for _, message in messages]
        if any(message.expunged for message in found):
            response.code = ResponseCode.of(b"EXPUNGEISSUED")
        # An item asked for twice (UID FETCH adds UID to a list that may have it) is written once, as pymap does.
        items = [self._item(attr, size, data) for attr in dict.fromkeys(cmd.attributes)]
        template = b"* %%d FETCH (%b)\r\n" % b" ".join(item for item, _ in items)
        columns = [[value(message) for message in found] for _, value in items]
        response.add_untagged(_FetchLines([template % row for row in zip([seq for seq, _ in messages], *columns)]))
        return response

    def _item(self, attr: FetchAttribute, size: Callable[[MessageInterface], int],
              data: Callable[[MessageInterface], bytes]) -> tuple[bytes, Callable[[MessageInterface], Any]]:
        """How one lean FETCH item is written: its part of the line's template, and its value."""
        value = attr.value
        if value == b"UID":
            return b"UID %d", _uid
        if value == b"FLAGS":
            session_flags = self.selected.session_flags
            # A folder has few distinct flag sets: each is sorted and joined once per command.
            written: dict[frozenset[Flag], bytes] = {}

            def flags(message: MessageInterface) -> bytes:
                found = message.get_flags(session_flags)
                listed = written.get(found)
                if listed is None:
                    listed = written[found] = b" ".join(sorted(bytes(flag) for flag in found))
                return listed
            return b"FLAGS (%b)", flags
        if value == b"RFC822.SIZE":
            return b"RFC822.SIZE %d", size
        if value == b"INTERNALDATE":
            return b"INTERNALDATE %b", lambda message: bytes(DateTime(message.internal_date))

        def body(message: MessageInterface) -> bytes:
            content = data(message)
            return b"{%d}\r\n%b" % (len(content), content)
        return b"BODY[] %b", body

    async def do_list(self, cmd: ListCommand) -> tuple[ResponseOk, SelectedMailbox | None]:
        # pymap's do_list, with the special folders' RFC 6154 attribute added to LIST (not LSUB).
        mailboxes, updates = await self.session.list_mailboxes(
            cmd.ref_name, cmd.filter, subscribed=cmd.only_subscribed, selected=self._selected)
        response = ResponseOk(cmd.tag, cmd.command + b" completed.")
        for name, sep, attrs in mailboxes:
            if cmd.only_subscribed:
                response.add_untagged(LSubResponse(name, sep, attrs))
            else:
                special = _SPECIAL_USE.get(name)
                response.add_untagged(ListResponse(name, sep, [*attrs, special] if special else attrs))
        return response, updates


class _Coalescing:
    """Gathers a response's many small writes (one per FETCH line) into few socket sends."""

    def __init__(self, writer: StreamWriter) -> None:
        self.writer = writer
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> None:
        self.parts.append(data)
        self.size += len(data)
        if self.size >= _FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            self.writer.write(b"".join(self.parts))
            self.parts.clear()
            self.size = 0


class MailImapConnection(IMAPConnection):
    # What the command being read may still send, its largest literal, and whether its first line
    # (which names it) is still to come. AUTHENTICATE and IDLE read their lines between commands.
    _left = COMMAND_LIMIT
    _literal_limit = LITERAL_LIMIT
    _first_line = False
    _append_limit: int | None = None

    async def read_command(self, state: ConnectionState) -> Command:
        self._append_limit = state.append_limit if isinstance(state, MailConnectionState) else None
        # pymap's parser refuses a synchronising literal over this before sending "+" (APPEND's
        # message; every other string is held to 4 KB by pymap itself).
        limit = self._append_limit or LITERAL_LIMIT
        if self.params.max_append_len != limit:  # made once per limit, not per command
            self.params = Params(max_append_len=limit)
        self._first_line = True
        try:
            return await super().read_command(state)
        except _TooBig:
            await self.send_error_disconnect()
            raise
        finally:
            self._left, self._literal_limit, self._first_line = COMMAND_LIMIT, LITERAL_LIMIT, False

    def _charge(self, size: int) -> None:
        if size > self._left:
            raise _TooBig(b"Command too long.")
        self._left -= size

    async def _read_line(self) -> bytes:
        try:
            line = await self.reader.readline()
        except ValueError:  # no line end within the stream reader's limit (COMMAND_LIMIT)
            raise _TooBig(b"Command line too long.") from None
        if self._first_line:
            self._first_line = False
            if self._append_limit is not None and _APPEND.match(line):
                self._left += self._append_limit
                self._literal_limit = self._append_limit
        self._charge(len(line))
        return line

    async def readline(self) -> memoryview:
        # pymap's, which reads a non-synchronising literal of any announced size.
        buf = bytearray(await self._read_line())
        while buf.endswith(b"\n"):
            match = _LITERAL_PLUS.search(buf) if buf.endswith((b"+}\n", b"+}\r\n")) else None
            if match is None:
                return memoryview(buf)
            length = int(match[1])
            if length > self._literal_limit:
                raise _TooBig(b"Literal too big.")
            self._charge(length)
            buf += await self.reader.readexactly(length)
            buf += await self._read_line()
        raise EOFError()

    async def _interrupt(self, state: ConnectionState, interrupt: ParsingInterrupt,
                         continuations: list[memoryview]) -> None:
        # A synchronising literal: the parser checked its own size, this the command's in all.
        if isinstance(interrupt.expected, ExpectContinuation):
            self._charge(interrupt.expected.literal_length)
        await super()._interrupt(state, interrupt, continuations)

    def _exec(self, future: Awaitable[_T]) -> Awaitable[_T]:
        # pymap hands every call into the connection state (greeting, commands, AUTHENTICATE, IDLE
        # updates) to its thread pool; MailConnectionState sends there what must go.
        return future

    async def send_error_disconnect(self) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, _TooBig):
            await self.write_response(ResponseBye(exc.args[0], _TOOBIG))
        else:
            await super().send_error_disconnect()

    async def write_response(self, resp: Response) -> None:
        # pymap's own writes each line to the socket separately, and serialises the whole response
        # a second time for a debug log line even when debug logging is off.
        buffer = _Coalescing(self.writer)
        try:
            await resp.async_write(buffer)
            buffer.flush()
            await self.writer.drain()
        except ConnectionError:
            pass

    async def start_tls(self) -> None:
        await super().start_tls()
        events.tls_established("imap", peer_ip(self.writer), self.writer.get_extra_info("ssl_object"))


class MailImapServer(IMAPServer):
    """pymap's per-connection entry point, with our connection and connection state."""

    async def __call__(self, reader: StreamReader, writer: StreamWriter, sock_info: SocketInfo) -> None:
        conn = MailImapConnection(self.commands, self._config, reader, writer, sock_info)
        state = MailConnectionState(self._login, self._config)
        async with AsyncExitStack() as stack:
            connection_exit.set(stack)
            stack.enter_context(closing(conn))
            await conn.run(state)
