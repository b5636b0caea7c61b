"""What mailsrv's IMAP and POP3 (mailsrv/access/imap/, mailsrv/access/pop3.py) rely on in pymap and in the
standard library's `mailbox.Maildir` beyond their documented API: the private methods they override,
the private attributes they read, and the behaviours the overrides assume (listed in the docstring
of mailsrv/access/imap/__init__.py). An upgrade of either that changes one of them fails here, with
a message naming it, rather than as a wrong answer somewhere in the IMAP tests.

Fast and socket-free: the real pymap and mailbox objects on a temporary Maildir, driven directly."""
from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import mailbox
import os
import re
import ssl
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pymap.backend.maildir import Config as MaildirConfig
from pymap.backend.maildir import Session
from pymap.backend.maildir.layout import DefaultLayout
from pymap.backend.maildir.mailbox import LoadedMessage, MailboxData, MailboxSet, Maildir, Message
from pymap.backend.maildir.uidlist import UidList
from pymap.backend.session import BaseSession
from pymap.concurrent import FileLock, Subsystem
from pymap.config import IMAPConfig
from pymap.exceptions import MailboxConflict, MailboxNotFound
from pymap.flags import FlagOp, PermanentFlags, SessionFlags
from pymap.imap import IMAPConnection, IMAPServer
from pymap.imap.state import ConnectionState
from pymap.parsing import Params
from pymap.parsing.command import Command
from pymap.parsing.command.any import NoOpCommand
from pymap.parsing.command.nonauth import LoginCommand
from pymap.parsing.commands import Commands, InvalidCommand
from pymap.parsing.primitives import String
from pymap.parsing.specials import FetchRequirement, ObjectId
from pymap.parsing.specials.flag import Seen
from pymap.parsing.state import ExpectContinuation, ParsingInterrupt
from pymap.selected import SelectedMailbox, SynchronizedMessages
from pysasl.creds.plain import PlainCredentials

from mailsrv.access.imap.maildir import CRLFMaildir
from mailsrv.access.imap.protocol import (
    _LITERAL_PLUS,
    LITERAL_LIMIT,
    GetQuotaRootCommand,
    MailboxConfig,
    NamespaceCommand,
)

PYMAP_VERSION = "0.36.7"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_pymap_is_the_pinned_version() -> None:
    installed = importlib.metadata.version("pymap")
    assert installed == PYMAP_VERSION, (
        f"pymap {installed} is installed, mailsrv is pinned to {PYMAP_VERSION}: re-read the overrides listed in "
        "mailsrv/access/imap/__init__.py against the new sources, re-run tests/test_pymap_contract.py, "
        "then move the pin")


# -- the private (and public) methods mailsrv overrides or calls: pymap or mailbox still call them so -----------

OVERRIDDEN = [
    # CRLFMaildir
    (mailbox.Maildir, "_refresh", "(self)"),
    (mailbox.Maildir, "_lookup", "(self, key)"),
    (mailbox.Mailbox, "_dump_message", "(self, message, target, mangle_from_=False)"),
    (mailbox.Maildir, "get_message", "(self, key)"),
    (mailbox.Maildir, "get_bytes", "(self, key)"),
    (mailbox.Maildir, "keys", "(self)"),
    (Maildir, "_lookup", "(self, key: 'str') -> 'str'"),
    (Maildir, "update_metadata", "(self, key: 'str', msg: 'MaildirMessage') -> 'None'"),
    (Maildir, "get_message_metadata", "(self, key: 'str') -> 'MaildirMessage'"),
    # HeaderFirstMessage
    (Message, "load_content", "(self, requirement: 'FetchRequirement') -> 'LoadedMessage'"),
    (LoadedMessage, "__init__", "(self, message: 'MessageInterface', requirement: 'FetchRequirement', "
     "content: 'MessageContent | None') -> 'None'"),
    # ClientView
    (SynchronizedMessages, "_update", "(self, messages: 'Iterable[CachedMessage]') -> 'None'"),
    (SynchronizedMessages, "_remove", "(self, uids: 'Iterable[int]', pending: 'bool') -> 'None'"),
    (SynchronizedMessages, "get_uids", "(self, seq_set: 'SequenceSet') -> 'Sequence[tuple[int, int]]'"),
    (SynchronizedMessages, "get_all", "(self, seq_set: 'SequenceSet') -> 'Sequence[tuple[int, CachedMessage]]'"),
    # SelectedFolder
    (SelectedMailbox, "__init__", "(self, mailbox_id: 'ObjectId', readonly: 'bool', permanent_flags: "
     "'PermanentFlags', session_flags: 'SessionFlags', selected_set: 'SelectedSet | None' = None, "
     "lookup: 'Any' = None, **kwargs: 'Any') -> 'None'"),
    (SelectedMailbox, "fork", "(self, command: 'Command') -> 'tuple[SelectedMailbox, Iterable[UntaggedResponse]]'"),
    # MailSession
    (Session, "__init__", "(self, owner: 'str', config: 'Config', mailbox_set: 'MailboxSet', "
     "filter_set: 'FilterSet') -> 'None'"),
    (BaseSession, "select_mailbox", "(self, name: 'str', readonly: 'bool' = False) "
     "-> 'tuple[MailboxSnapshot, SelectedMailbox]'"),
    (BaseSession, "_get_mailbox", "(self, name: 'str', *, try_create: 'bool' = False) "
     "-> 'MailboxDataInterface[MessageT]'"),
    # CachedMailboxData
    (MailboxData, "__init__", "(self, mailbox_id: 'ObjectId', maildir: 'Maildir', path: 'str') -> 'None'"),
    (MailboxData, "reset", "(self) -> 'MailboxData'"),
    (MailboxData, "_get_keys", "(self) -> 'dict[str, str]'"),
    (MailboxData, "_get_maildir_msg", "(self, uid: 'int') -> 'tuple[Record, MaildirMessage]'"),
    (MailboxData, "get", "(self, uid: 'int', cached_msg: 'CachedMessage') -> 'Message'"),
    (MailboxData, "update", "(self, uid: 'int', cached_msg: 'CachedMessage', flag_set: 'frozenset[Flag]', "
     "mode: 'FlagOp') -> 'Message'"),
    (MailboxData, "claim_recent", "(self, selected: 'SelectedMailbox') -> 'None'"),
    (MailboxData, "copy", "(self, uid: 'int', destination: 'MailboxData', *, recent: 'bool' = False) -> 'int | None'"),
    (MailboxData, "update_selected", "(self, selected: 'SelectedMailbox', *, wait_on: 'Event | None' = None) "
     "-> 'SelectedMailbox'"),
    (MailboxData, "messages", "(self) -> 'AsyncIterable[Message]'"),
    (MailboxData, "snapshot", "(self) -> 'MailboxSnapshot'"),
    # MailFolders, MailLayout
    (MailboxSet, "__init__", "(self, maildir: 'Maildir', layout: 'MaildirLayout[Any]') -> 'None'"),
    (MailboxSet, "get_mailbox", "(self, name: 'str') -> 'MailboxData'"),
    (MailboxSet, "add_mailbox", "(self, name: 'str') -> 'ObjectId'"),
    (MailboxSet, "rename_mailbox", "(self, before: 'str', after: 'str') -> 'None'"),
    (MailboxSet, "set_subscribed", "(self, name: 'str', subscribed: 'bool') -> 'None'"),
    (MailboxSet, "delete_mailbox", "(self, name: 'str') -> 'None'"),
    (DefaultLayout, "_get_subdir", "(parts: '_Parts') -> 'str'"),
    (DefaultLayout, "_list_folders", "(self, parts: '_Parts') -> 'Iterable[_Parts]'"),
    # MailConnectionState, MailImapConnection, MailImapServer
    (ConnectionState, "__init__", "(self, login: 'LoginInterface', config: 'IMAPConfig') -> 'None'"),
    (ConnectionState, "_login", "(self, creds: 'ServerCredentials') -> 'SessionInterface'"),
    (ConnectionState, "do_command", "(self, cmd: 'Command') -> 'CommandResponse'"),
    (ConnectionState, "do_fetch", "(self, cmd: 'FetchCommand') -> '_CommandRet'"),
    (ConnectionState, "do_list", "(self, cmd: 'ListCommand') -> '_CommandRet'"),
    (ConnectionState, "do_authenticate", "(self, cmd: '_AuthCommands', creds: 'ServerCredentials | None') "
     "-> 'CommandResponse'"),
    (ConnectionState, "receive_updates", "(self, cmd: 'IdleCommand', done: 'Event') -> 'Iterable[UntaggedResponse]'"),
    (IMAPConnection, "_exec", "(self, future: 'Awaitable[_Ret]') -> 'Awaitable[_Ret]'"),
    (IMAPConnection, "__init__", "(self, commands: 'Commands', config: 'IMAPConfig', reader: 'StreamReader', "
     "writer: 'StreamWriter', sock_info: 'SocketInfo') -> 'None'"),
    (IMAPConnection, "readline", "(self) -> 'memoryview'"),
    (IMAPConnection, "_interrupt", "(self, state: 'ConnectionState', interrupt: 'ParsingInterrupt', "
     "continuations: 'list[memoryview]') -> 'None'"),
    (IMAPConnection, "read_command", "(self, state: 'ConnectionState') -> 'Command'"),
    (IMAPConnection, "send_error_disconnect", "(self) -> 'None'"),
    (IMAPConnection, "write_response", "(self, resp: 'Response') -> 'None'"),
    (IMAPServer, "__init__", "(self, login: 'LoginInterface', config: 'IMAPConfig') -> 'None'"),
    (IMAPServer, "__call__", "(self, reader: 'StreamReader', writer: 'StreamWriter', sock_info: 'SocketInfo') "
     "-> 'None'"),
    # MailCommands
    (Commands, "parse", "(self, buf: 'memoryview', params: 'Params') -> 'tuple[Command, memoryview]'"),
    (UidList, "write", "(self, fp: 'IO[str]') -> 'None'"),
    (UidList, "_build_header", "(self) -> 'str'"),
    (UidList, "_build_line", "(rec: 'Record') -> 'str'"),
]


@pytest.mark.parametrize(("owner", "name", "signature"), OVERRIDDEN,
                         ids=[f"{owner.__name__}.{name}" for owner, name, _ in OVERRIDDEN])
def test_overridden_method_keeps_its_signature(owner: type, name: str, signature: str) -> None:
    method = getattr(owner, name, None)
    assert method is not None, f"{owner.__module__}.{owner.__qualname__}.{name} is gone: mailsrv overrides it"
    assert str(inspect.signature(method)) == signature, (
        f"{owner.__module__}.{owner.__qualname__}.{name} changed its signature from {signature} "
        f"to {inspect.signature(method)}: check mailsrv's override of it")


CALLED_WITH = [
    # MailboxConfig passes these to pymap's configs, MailImapConnection to Params, CachedMailboxData to Message.
    (IMAPConfig.__init__, {"ssl_context", "tls_enabled", "subsystem", "hash_context", "reject_dnsbl",
                           "invalid_user_sleep", "max_append_len", "host", "port"}),
    (MaildirConfig.__init__, {"base_dir", "layout", "colon"}),
    (Params.__init__, {"max_append_len"}),
    (Message.__init__, {"email_id", "thread_id", "recent", "maildir", "key"}),
    (SelectedMailbox.__init__, {"selected_set", "lookup"}),
]


@pytest.mark.parametrize(("function", "keywords"), CALLED_WITH, ids=[f.__qualname__ for f, _ in CALLED_WITH])
def test_keywords_mailsrv_passes_are_still_accepted(function: Callable[..., Any], keywords: set[str]) -> None:
    missing = keywords - set(inspect.signature(function).parameters)
    assert not missing, f"{function.__module__}.{function.__qualname__} no longer takes {sorted(missing)}"


def test_config_properties_mailsrv_overrides_are_still_properties() -> None:
    for name in ("greeting", "commands", "initial_auth", "tls_auth", "login_capability", "parsing_params"):
        assert isinstance(inspect.getattr_static(IMAPConfig, name, None), property), \
            f"pymap.config.IMAPConfig.{name} is no longer a property: MailboxConfig overrides or reads it"


# -- mailbox.Maildir: the table of contents CRLFMaildir._refresh rebuilds ------------------------------------


@pytest.fixture
def maildir_root(tmp_path: Path) -> Path:
    root = tmp_path / "Maildir"
    mailbox.Maildir(str(root), create=True)
    return root


def test_maildir_private_attributes(maildir_root: Path) -> None:
    box = mailbox.Maildir(str(maildir_root), create=False)
    state = vars(box)
    expected = {"_path": str, "_toc": dict, "_toc_mtimes": dict, "_paths": dict}
    for name, kind in expected.items():
        assert isinstance(state.get(name), kind), \
            f"mailbox.Maildir().{name} is gone or no longer a {kind}: CRLFMaildir._refresh reads and replaces it"
    assert state["_path"] == str(maildir_root)
    assert set(state["_toc_mtimes"]) == {"cur", "new"}, "Maildir._toc_mtimes no longer lists exactly cur and new"
    assert {state["_paths"][d] for d in ("new", "cur")} == {str(maildir_root / "new"), str(maildir_root / "cur")}, \
        "Maildir._paths no longer maps new and cur to their directories"
    assert box.colon == ":", "Maildir.colon is no longer ':'"


def test_base_message_assigns_its_internal_date_slot_in_init() -> None:
    # HeaderFirstMessage reads its internal date lazily through a property of that name.
    from pymap.message import BaseMessage
    assert "internal_date" in BaseMessage.__slots__, "BaseMessage no longer has an internal_date slot"
    assert "self.internal_date" in inspect.getsource(BaseMessage.__init__), \
        "BaseMessage.__init__ no longer assigns internal_date: HeaderFirstMessage's property would never be set"


def test_a_scanned_message_is_the_one_pymaps_constructor_makes(maildir_root: Path) -> None:
    """HeaderFirstMessage.scanned sets the slots pymap's constructors would: same slots, same values."""
    from mailsrv.access.imap.maildir import CRLFMaildir, HeaderFirstMessage
    from pymap.parsing.specials import ObjectId
    maildir = CRLFMaildir(str(maildir_root), create=False)
    flags = frozenset([Seen])
    when = datetime(2026, 1, 2, 3, 4, 5)
    built = HeaderFirstMessage(7, when, flags, email_id=ObjectId(b"Mabc"), thread_id=ObjectId(b"Tdef"),
                               recent=True, maildir=maildir, key="1.M2P3.host")
    scanned = HeaderFirstMessage.scanned(7, flags, "Mabc", "Tdef", True, maildir, "1.M2P3.host", when)
    slots = {slot for cls in HeaderFirstMessage.__mro__ for slot in getattr(cls, "__slots__", ())}
    plain = slots - {"_email_id", "_thread_id"}  # held as the uidlist's text until asked for
    assert {slot: getattr(scanned, slot) for slot in plain} == {slot: getattr(built, slot) for slot in plain}
    assert (scanned.email_id, scanned.thread_id) == (built.email_id, built.thread_id)
    assert HeaderFirstMessage.scanned(7, flags, None, None, True, maildir, "k", None).email_id == ObjectId(None)


def test_maildir_looks_keys_up_through_refresh_and_toc(maildir_root: Path) -> None:
    """keys() and _lookup() of a key not yet in _toc call _refresh(), and read _toc: key -> 'cur/<name>'."""
    refreshed: list[int] = []

    class Counting(mailbox.Maildir):
        def _refresh(self) -> None:
            refreshed.append(1)
            super()._refresh()  # type: ignore[misc]

    (maildir_root / "cur" / "1700000000.M1P1.host:2,S").write_bytes(b"x\r\n")
    box = Counting(str(maildir_root), create=False)
    assert box.keys() == ["1700000000.M1P1.host"] and refreshed, "Maildir.keys() no longer goes through _refresh()"
    refreshed.clear()
    box._toc = {}  # type: ignore[attr-defined]
    assert box._lookup("1700000000.M1P1.host") == os.path.join("cur", "1700000000.M1P1.host:2,S"), \
        "Maildir._lookup() no longer returns the subpath 'cur/<name>'"  # type: ignore[attr-defined]
    assert refreshed, "Maildir._lookup() of an unknown key no longer calls _refresh()"


def test_maildir_add_writes_through_dump_message(maildir_root: Path) -> None:
    """CRLFMaildir stores APPEND/COPY with CRLF by overriding _dump_message, which add() must call."""
    box = CRLFMaildir(str(maildir_root), create=False)
    key = box.add(mailbox.MaildirMessage(b"Subject: x\n\nline\n"))
    stored = (maildir_root / box._lookup(key)).read_bytes()  # type: ignore[attr-defined]
    assert stored == b"Subject: x\r\n\r\nline\r\n", "mailbox.Maildir.add() no longer writes through _dump_message()"


# -- pymap's Maildir message: what message_bytes, stored_size and POP3 read -------------------------------------


def test_message_keeps_its_maildir_and_key(maildir_root: Path) -> None:
    assert {"_maildir", "_key"} <= set(Message.__slots__), "pymap Message no longer has _maildir/_key slots"
    box = Maildir(str(maildir_root), create=False)
    message = Message(1, datetime.now(), [], maildir=box, key="k")
    expunged = Message.copy_expunged(message)
    for msg in (message, expunged):
        assert msg._maildir is box and msg._key == "k", \
            "pymap Message (or copy_expunged) no longer keeps _maildir and _key: message_bytes/stored_size read them"


def test_message_content_is_the_bytes_of_get_message(maildir_root: Path) -> None:
    """load_content parses bytes(maildir.get_message(key)): CRLFMaildir hands it the file's own bytes."""
    (maildir_root / "cur" / "1700000000.M1P1.host:2,").write_bytes(b"Subject: x\n\nbody\n")
    box = CRLFMaildir(str(maildir_root), create=False)
    message = Message(1, datetime.now(), [], maildir=box, key="1700000000.M1P1.host")
    loaded = run(message.load_content(FetchRequirement.CONTENT))
    assert bytes(loaded.content) == b"Subject: x\r\n\r\nbody\r\n", \
        "pymap Message.load_content no longer reads bytes(maildir.get_message(key))"


# -- pymap's MailboxData and MailboxSet: what CachedMailboxData and MailFolders replace -----------------------


def _mailbox_data(root: Path, cls: type[MailboxData] = MailboxData) -> MailboxData:
    async def make() -> MailboxData:
        async with UidList.with_init(str(root)) as uidl:
            mailbox_id = ObjectId(uidl.global_uid)
        return await cls(mailbox_id, CRLFMaildir(str(root), create=False), str(root)).reset()
    return run(make())


def test_mailbox_data_private_attributes(maildir_root: Path) -> None:
    (maildir_root / "new" / "1700000000.M1P1.host").write_bytes(b"x\r\n")
    data = _mailbox_data(maildir_root)
    assert data._path == str(maildir_root), "MailboxData._path is no longer the folder path"
    assert isinstance(data._maildir, CRLFMaildir), "MailboxData._maildir is no longer the Maildir it was given"
    uidl = UidList.file_read(str(maildir_root))
    assert (data._uid_validity, data._next_uid) == (uidl.uid_validity, uidl.next_uid) == (data.uid_validity, 2), \
        "MailboxData._uid_validity/_next_uid are no longer what reset() read from the uidlist"


def test_mailbox_data_reads_through_the_methods_mailsrv_overrides(maildir_root: Path) -> None:
    """reset() lists the folder through _get_keys(); get() and update() look a message up through
    _get_maildir_msg(): CachedMailboxData replaces those two with cached versions."""
    calls: list[str] = []

    class Recording(MailboxData):
        async def _get_keys(self) -> dict[str, str]:
            calls.append("_get_keys")
            return await super()._get_keys()

        async def _get_maildir_msg(self, uid: int) -> Any:
            calls.append("_get_maildir_msg")
            return await super()._get_maildir_msg(uid)

    (maildir_root / "cur" / "1700000000.M1P1.host:2,").write_bytes(b"x\r\n")
    data = _mailbox_data(maildir_root, Recording)
    assert calls == ["_get_keys"], "pymap MailboxData.reset() no longer lists the folder through _get_keys()"

    async def touch() -> Message:
        cached = await data.get(1, Message(1, datetime.now(), []))
        return await data.update(1, cached, frozenset({Seen}), FlagOp.ADD)

    calls.clear()
    updated = run(touch())
    assert calls == ["_get_maildir_msg", "_get_maildir_msg"], \
        "pymap MailboxData.get()/update() no longer look the message up through _get_maildir_msg()"
    assert Seen in updated.permanent_flags and os.listdir(maildir_root / "cur") == ["1700000000.M1P1.host:2,S"]


def test_mailbox_set_private_attributes_and_existing_folder(maildir_root: Path) -> None:
    box = Maildir(str(maildir_root), create=False)
    layout = DefaultLayout(str(maildir_root), Maildir)
    folders = MailboxSet(box, layout)
    assert folders._layout is layout and folders._inbox_maildir is box, \
        "pymap MailboxSet no longer keeps _layout and _inbox_maildir"
    run(folders.add_mailbox("Projects"))
    with pytest.raises(KeyError):  # MailFolders.add_mailbox turns it into ValueError, see below
        run(folders.add_mailbox("Projects"))


def test_session_maps_mailbox_set_errors_to_imap_codes() -> None:
    """MailFolders raises ValueError for a name that exists and KeyError for a folder that does not:
    pymap's session must turn them into NO [ALREADYEXISTS] and NO [NONEXISTENT]."""

    class Refusing(MailboxSet):
        def __init__(self) -> None:
            pass

        async def add_mailbox(self, name: str) -> ObjectId:
            raise ValueError(name)

        async def get_mailbox(self, name: str) -> MailboxData:
            raise KeyError(name)

    session = Session("alice", None, Refusing(), None)  # type: ignore[arg-type]
    with pytest.raises(MailboxConflict) as conflict:
        run(session.create_mailbox("Sent"))
    assert bytes(conflict.value.code) == b"[ALREADYEXISTS]", "pymap session: ValueError is no longer ALREADYEXISTS"
    with pytest.raises(MailboxNotFound):
        run(session._get_mailbox("Nowhere"))


# -- pymap's Maildir++ layout: every name becomes a path only through _get_subdir (MailLayout's guard) --------


def test_layout_names_become_paths_only_through_get_subdir(tmp_path: Path) -> None:
    class Guarded(DefaultLayout[Maildir]):
        @classmethod
        def _get_subdir(cls, parts: Any) -> str:
            if parts:
                raise PermissionError(parts)
            return ""

    layout = Guarded(str(tmp_path), Maildir)
    attempts: dict[str, Callable[[], Any]] = {
        "get_path": lambda: layout.get_path("x", "/"), "get_folder": lambda: layout.get_folder("x", "/"),
        "add_folder": lambda: layout.add_folder("x", "/"), "remove_folder": lambda: layout.remove_folder("x", "/"),
        "rename_folder": lambda: layout.rename_folder("x", "y", "/"),
        "list_folders": lambda: layout.list_folders("/", top="x"),
    }
    for name, attempt in attempts.items():
        with pytest.raises(PermissionError):
            attempt()
            pytest.fail(f"pymap DefaultLayout.{name} reaches the disk without _get_subdir(): MailLayout's "
                        "folder name check no longer guards it")
    assert os.listdir(tmp_path) == []


def test_layout_unguarded_mapping(tmp_path: Path) -> None:
    """Why MailLayout guards: pymap maps '.' to the directory above the Maildir and '' to the Maildir
    itself; and how MailLayout._list_folders turns listed parts back into directory names."""
    layout = DefaultLayout(str(tmp_path), Maildir)
    assert layout.get_path(".", "/") == os.path.join(str(tmp_path), "..")
    assert layout.get_path("", "/") == os.path.join(str(tmp_path), ".")
    assert layout.get_path("A/B", "/") == os.path.join(str(tmp_path), ".A.B")
    (tmp_path / ".A.B").mkdir()
    (tmp_path / "cur").mkdir()
    found = list(layout._list_folders([]))
    assert found == [[], ["A", "B"]], "pymap DefaultLayout._list_folders no longer yields the root, then parts"
    assert DefaultLayout._get_subdir(found[1]) == ".A.B"


# -- pymap's selected mailbox: what ClientView and SelectedFolder read ------------------------------------------


def _message(uid: int) -> Message:
    return Message(uid, datetime.now(), [])


def _selected(messages: SynchronizedMessages) -> SelectedMailbox:
    return SelectedMailbox(ObjectId.random_mailbox_id(), False, PermanentFlags([Seen]), SessionFlags([]),
                           _messages=messages)


def test_selected_mailbox_stores_uids_in_its_synchronized_messages() -> None:
    view = SynchronizedMessages()
    selected = _selected(view)
    assert selected.messages is view, "SelectedMailbox no longer takes its message view from the _messages keyword"
    messages = [_message(uid) for uid in (3, 1, 2)]
    selected.set_messages(messages)
    assert view._uids == {1, 2, 3} and view._sorted == [1, 2, 3], \
        "SynchronizedMessages no longer keeps _uids (a set) and _sorted (ascending UIDs)"
    assert view._seqs_cache == {1: 1, 2: 2, 3: 3}, "SynchronizedMessages._seqs_cache is no longer uid -> sequence"
    assert view._cache == {m.uid: m for m in messages}, "SynchronizedMessages._cache is no longer uid -> message"
    selected.hide_expunged = True
    selected.add_updates([], [2])
    assert view._pending_remove == {2} and view._sorted == [1, 2, 3], \
        "an expunge during a hidden-expunge command is no longer held in _pending_remove"
    selected.hide_expunged = False
    selected.add_updates([], [])
    assert view._pending_remove == set() and view._sorted == [1, 3] and view._seqs_cache == {1: 1, 3: 2}, \
        "add_updates([], []) no longer applies the expunges held back"


def test_selected_mailbox_updates_through_update_and_remove() -> None:
    calls: list[str] = []

    class Recording(SynchronizedMessages):
        def _update(self, messages: Any) -> None:
            calls.append("_update")
            super()._update(messages)

        def _remove(self, uids: Any, pending: bool) -> None:
            calls.append("_remove")
            super()._remove(uids, pending)

    _selected(Recording()).set_messages([_message(1)])
    assert calls == ["_update", "_remove"], \
        "SelectedMailbox.set_messages no longer changes the view through _update() then _remove()"


def test_selected_mailbox_fork_and_private_state() -> None:
    """SelectedFolder.fork builds pymap's copy itself from these slots, and compares its own state."""
    names = {"_mailbox_id", "_readonly", "_permanent_flags", "_session_flags", "_selected_set", "_lookup",
             "_mod_sequence", "_is_deleted", "_prev", "_messages"}
    assert names <= set(SelectedMailbox.__slots__), \
        f"SelectedMailbox lost the slots {sorted(names - set(SelectedMailbox.__slots__))}"

    class Sub(SelectedMailbox):
        __slots__: list[str] = []

    view = SynchronizedMessages()
    selected = Sub(ObjectId.random_mailbox_id(), False, PermanentFlags([]), SessionFlags([]), lookup="INBOX",
                   _messages=view, _mod_sequence=7)
    assert (selected._lookup, selected._mod_sequence, selected._prev, selected._is_deleted) == ("INBOX", 7, None, False)
    selected.set_deleted()
    assert selected._is_deleted, "SelectedMailbox.set_deleted() no longer sets _is_deleted"
    copy, _ = selected.fork(NoOpCommand(b"a"))
    assert type(copy) is Sub, "SelectedMailbox.fork() no longer builds the copy with type(self)"
    assert copy._messages is view and copy._prev is not None and copy._lookup == "INBOX", \
        "SelectedMailbox.fork() no longer passes _messages, _prev and lookup on to the copy"


# -- pymap's IMAP parser and connection: what the input limits of MailImapConnection assume ----------------------


def _parse(line: bytes, max_append_len: int | None) -> Command:
    command, _ = Commands().parse(memoryview(line), Params(max_append_len=max_append_len))
    return command


def test_parser_refuses_a_big_literal_before_the_continuation() -> None:
    """A synchronising literal over the limit is an InvalidCommand with code TOOBIG, no '+' sent:
    MailConnectionState.do_command answers it NO (APPEND) or BAD."""
    refused = _parse(b"a APPEND INBOX {1001}\r\n", 1000)
    assert isinstance(refused, InvalidCommand) and refused.parse_exc is not None, \
        "pymap's parser no longer refuses an APPEND literal over max_append_len before asking for it"
    assert bytes(refused.parse_exc.code) == b"[TOOBIG]" and refused.command_name == b"APPEND"
    with pytest.raises(ParsingInterrupt) as interrupt:
        _parse(b"a APPEND INBOX {1000}\r\n", 1000)
    assert isinstance(interrupt.value.expected, ExpectContinuation), "pymap no longer asks for a literal with '+'"
    assert interrupt.value.expected.literal_length == 1000, \
        "ExpectContinuation.literal_length is no longer the announced size: MailImapConnection._interrupt charges it"


def test_parser_holds_other_strings_to_4_kib() -> None:
    assert String._MAX_LEN == 4096 <= LITERAL_LIMIT, "pymap's limit on a non-APPEND string is no longer 4 KiB"
    refused = _parse(b"a LOGIN {4097}\r\n", 1 << 30)
    assert isinstance(refused, InvalidCommand) and refused.parse_exc is not None
    assert bytes(refused.parse_exc.code) == b"[TOOBIG]", "pymap no longer refuses a LOGIN literal over 4 KiB"


class _Connection(IMAPConnection):
    """pymap's connection on an in-memory stream, recording what it asks of the overridable methods."""

    def __init__(self, data: bytes) -> None:
        self.reader = asyncio.StreamReader()
        self.reader.feed_data(data)
        self.reader.feed_eof()
        self.commands = Commands()
        self.params = Params()
        self.calls: list[str] = []

    async def readline(self) -> memoryview:
        self.calls.append("readline")
        return await super().readline()

    async def _interrupt(self, state: Any, interrupt: ParsingInterrupt, continuations: list[memoryview]) -> None:
        self.calls.append("_interrupt")
        await super()._interrupt(state, interrupt, continuations)

    async def write_response(self, resp: Any) -> None:
        self.calls.append("write_response")


def test_connection_reads_lines_and_literals_through_the_overridden_methods() -> None:
    async def read(data: bytes) -> tuple[Command, list[str]]:
        conn = _Connection(data)
        return await conn.read_command(None), conn.calls  # type: ignore[arg-type]

    command, calls = run(read(b"a LOGIN {5}\r\nalice pw\r\n"))
    assert isinstance(command, LoginCommand) and command.userid == b"alice"
    assert calls == ["readline", "_interrupt", "write_response", "readline"], (
        f"pymap's read_command now calls {calls}: MailImapConnection counts a command's bytes in readline() "
        "and _interrupt()")


def test_connection_readline_reads_nonsynchronising_literals_itself() -> None:
    """pymap's readline reads a '{n+}' literal of any announced size, before the parser sees it: the
    reason MailImapConnection.readline replaces it, matching literals with the same pattern."""
    assert IMAPConnection._literal_plus.pattern == _LITERAL_PLUS.pattern, \
        "pymap's IMAPConnection._literal_plus changed: MailImapConnection._LITERAL_PLUS copies it"
    async def read() -> memoryview:
        return await _Connection(b"a LOGIN {5+}\r\nalice pw\r\nb NOOP\r\n").readline()

    line = run(read())
    assert bytes(line) == b"a LOGIN {5+}\r\nalice pw\r\n"


def test_stream_reader_refuses_a_line_over_its_limit() -> None:
    """MailImapConnection._read_line turns this ValueError into BYE [TOOBIG] (the reader's limit is COMMAND_LIMIT)."""
    async def read() -> bytes:
        reader = asyncio.StreamReader(limit=16)
        reader.feed_data(b"x" * 64 + b"\r\n")
        return await reader.readline()

    with pytest.raises(ValueError):
        run(read())


def _config() -> MailboxConfig:
    return MailboxConfig(hostname="mail.test", tls_context=ssl.create_default_context(ssl.Purpose.CLIENT_AUTH),
                         starttls=True, allow_plaintext_auth=False, subsystem=Subsystem.for_asyncio())


def test_connection_hands_the_state_calls_to_exec() -> None:
    """MailImapConnection._exec runs them on the loop; MailConnectionState sends to the thread pool
    those that block (do_authenticate, receive_updates, and do_command but for its loop answers):
    a new call handed to _exec would now run on the loop unseen."""
    handed = set(re.findall(r"self\._exec\(\s*state\.(\w+)", inspect.getsource(IMAPConnection)))
    assert handed == {"do_greeting", "do_authenticate", "do_command", "receive_updates"}, \
        f"pymap's IMAPConnection now hands {sorted(handed)} to _exec: check MailConnectionState's thread hand-overs"


def test_connection_state_logs_in_through_login_and_dispatches_by_name() -> None:
    session = object()
    seen: list[Any] = []

    class State(ConnectionState):
        async def _login(self, creds: Any) -> Any:
            seen.append(creds)
            return session

    state = State(object(), _config())  # type: ignore[arg-type]
    assert state._session is None and state._selected is None, \
        "ConnectionState no longer starts with _session and _selected None"
    creds = PlainCredentials("alice", "pw")
    run(state.do_authenticate(LoginCommand(b"a", b"alice", b"pw"), creds))
    assert seen == [creds] and state._session is session, \
        "ConnectionState no longer logs in through _login() into _session: MailConnectionState overrides it"
    assert ConnectionState._get_func_name(NamespaceCommand(b"a")) == "do_namespace", \
        "ConnectionState no longer dispatches a command to do_<name>: NAMESPACE, UNSELECT and QUOTA rely on it"


def test_quota_commands_parse_through_commandmailboxarg_and_astring() -> None:
    # GETQUOTAROOT is pymap's CommandMailboxArg (not in its __all__); the quota root an AString.
    commands = _config().commands
    params = Params()
    command, _ = commands.parse(memoryview(b'q GETQUOTAROOT "Sent"\r\n'), params)
    assert isinstance(command, GetQuotaRootCommand) and command.mailbox == "Sent" \
        and bytes(command.mailbox_obj) == b"Sent", "CommandMailboxArg no longer parses `SP mailbox` into mailbox_obj"
    command, _ = commands.parse(memoryview(b'q GETQUOTA ""\r\n'), params)
    assert command.root == b"", "AString no longer parses a quoted empty quota root"


def test_imap_server_private_attributes() -> None:
    login, config = object(), _config()
    server = IMAPServer(login, config)  # type: ignore[arg-type]
    assert server._login is login and server._config is config, \
        "pymap IMAPServer no longer keeps _login and _config: MailImapServer.__call__ reads them"


# -- pymap's uidlist: what CachedMailboxData's stamps and remove_stale_locks assume ------------------------------


def test_uidlist_files_and_lock(maildir_root: Path) -> None:
    path = str(maildir_root)
    assert UidList.get_file(path) == os.path.join(path, UidList.FILE_NAME) == os.path.join(path, "dovecot-uidlist")
    assert UidList.get_lock(path) == os.path.join(path, UidList.LOCK_FILE) == \
        os.path.join(path, "dovecot-uidlist.lock"), "pymap's uidlist lock file moved: remove_stale_locks deletes it"
    assert inspect.signature(FileLock).parameters["expiration"].default == 600.0, \
        "pymap no longer honours a lock file for 10 minutes"

    async def write() -> None:
        async with UidList.with_write(path) as uidl:
            uidl.next_uid += 1
            uidl.touch()

    run(write())
    before = os.stat(UidList.get_file(path)).st_ino
    run(write())
    assert os.stat(UidList.get_file(path)).st_ino != before, \
        "pymap no longer replaces the uidlist on write: CachedMailboxData's (inode, size, mtime) stamp relies on it"
