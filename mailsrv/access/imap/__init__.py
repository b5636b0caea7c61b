"""IMAP4rev1 for mailsrv mailboxes: pymap embedded, with our logins, fixes and missing extensions.

What this package (and POP3, `mailsrv/access/pop3.py`) relies on beyond the public API of pymap
0.36.7 and of the standard library's `mailbox.Maildir`; tests/test_pymap_contract.py pins every
item (signatures, attributes, behaviour), so an upgrade that changes one fails there, by name.

Overrides of their internals:
- maildir.CRLFMaildir (pymap Maildir < mailbox.Maildir): `_refresh` rewritten, reading and
  replacing `_toc`, `_toc_mtimes` (nanosecond mtimes now), `_paths`; `_dump_message` (which
  `add` must call) writes CRLF; `get_message` returns the raw bytes, which pymap's
  `Message.load_content` reads through `bytes()`; `_path` and `_lookup` read; `update_metadata`
  (pymap's `update` calls it) moves a message of new/ to cur/, calls pymap's `_update`.
- maildir.HeaderFirstMessage (pymap Maildir Message): `internal_date` a property over BaseMessage's
  slot of that name (which its `__init__` assigns), read from the file when first asked; `scanned`
  sets every slot of BaseMessage and Message itself (`uid`, `expunged`, `_permanent_flags`,
  `_flags_key`, `_email_id`, `_thread_id`, `recent`, `_maildir`, `_key`), `email_id` and
  `thread_id` properties over the last two;
  `load_content` (reads `_maildir`, `_key`;
  builds pymap's `LoadedMessage`), for a requirement without BODY; pymap asks BODY for
  `BODY.PEEK[HEADER...]` (its `FetchAttribute.requirement` checks for `BODY` only), so that fetch still
  parses the whole message.
- maildir._UidList (UidList): `_build_line` (one Record's line), `write` (the file pymap's `file_write`
  writes) from `_build_header` and `records`.
- maildir.ClientView (SynchronizedMessages): `_update`, `_remove`; reads `_uids`, `_sorted`,
  `_seqs_cache`, `_cache`, `_pending_remove`.
- maildir.SelectedFolder (SelectedMailbox): `fork` builds pymap's copy from its slots (`_mailbox_id`,
  `_readonly`, `_permanent_flags`, `_session_flags`, `_selected_set`, `_lookup`, `_mod_sequence`,
  `_prev`, `_messages`) and reads `_is_deleted`; relies on `fork` building `type(self)`.
- maildir.MailSession (Session): `select_mailbox` is pymap's, rewritten; calls `_get_mailbox`.
- maildir.CachedMailboxData (MailboxData): `reset` (no longer calls pymap's, which rewrites the
  uidlist on every call: writes it with pymap's UidList, under its `write_lock`, only when a file
  has no UID yet), `messages`, `snapshot`, `update_selected`, `get`, `update`, `copy`,
  `claim_recent` (not pymap's moves out of new/: a first-recent UID per folder in `mailsrv-recent`,
  under the uidlist's lock), and the private `_get_keys`, `_get_maildir_msg` (which pymap's
  `get`/`update`/`cleanup` call); reads `_path`, `_maildir`, `_uid_validity`, `_next_uid`; trusts
  the uidlist to be replaced (new inode) on every write, or to grow (Dovecot appends in place).
- maildir.MailLayout (DefaultLayout): `_get_subdir`, through which pymap maps every folder name to a
  path (unguarded, "." is Maildir/..), and `_list_folders`.
- maildir.MailFolders (MailboxSet): replaces pymap's per-session `_cache`; reads `_layout`,
  `_inbox_maildir`; pymap's session turns its ValueError into NO [ALREADYEXISTS].
- maildir.stored_size, message_bytes (IMAP FETCH and POP3): read pymap Message `_maildir`, `_key`.
- maildir.remove_stale_locks: pymap's uidlist lock file name, honoured by pymap for 10 minutes.
- protocol.MailConnectionState (ConnectionState): `_login`, `do_command`, `do_fetch`, `do_list`,
  `do_authenticate` and `receive_updates` (sent to pymap's thread pool, as `do_command` but for its
  answers on the loop); reads `_session`, `_selected`, sets `_selected`; NAMESPACE/UNSELECT/
  GETQUOTA(ROOT)/SETQUOTA rely on the `do_<name>` dispatch; GETQUOTAROOT is a `CommandMailboxArg`
  (pymap.parsing.command.auth, not in its `__all__`).
- protocol.MailImapConnection (IMAPConnection): `readline` (pymap's, capped; `_LITERAL_PLUS` is
  pymap's `_literal_plus`), `_interrupt`, `read_command`, `send_error_disconnect`, `write_response`,
  `start_tls` (calls pymap's, then logs the handshake), `_exec` (runs on the loop what pymap hands
  it: the state's greeting, commands, AUTHENTICATE and IDLE updates);
  relies on pymap's parser refusing a synchronising literal over `Params.max_append_len` (APPEND) or
  4096 bytes (any other string) with TOOBIG before sending "+".
- protocol.MailImapServer (IMAPServer): `__call__`, reading `_login` and `_config`.
- protocol.MailCommands (Commands): `parse`, building FETCH commands from pymap's SequenceSet.parse
  and a FETCH it parsed before with the same items (tests/test_imap_loop_answers.py compares the
  answers with pymap's own server's).
- maildir.CachedMailboxData.settled, SelectedFolder.unchanged, MailFolders.opened: what the loop
  answers read (the scan's files, the view's state) without pymap's reset and update_selected.

Process-wide caches (maildir.py; everything else lives and dies with one session):
- `_SYNCED`: folder path -> the folder stamp at which its uidlist was last brought in sync.
- `_SCANS`: folder path -> `_Scan` (stamp, UIDVALIDITY, UID -> pymap Message, UID -> file), so one
  login's SELECT reuses another's scan, and a rescan starts from the last one.
Both hold the most recent 512 folders, `_SCANS` also no more than 200,000 messages in all (the
newest scan always stays). Safe across sessions: keyed by the folder's absolute path (one user's
Maildir), taken whole only while the stamp (inode, size, mtime of new/, cur/ and the uidlist, never
one younger than 100 ms) still matches the disk, and entries are replaced whole under a lock, never
mutated: pymap builds a new Message for every change. A rescan (the stamp differs) lists the folder
and reads the uidlist again, and reuses a Message only for the same UID, UIDVALIDITY and file name
(a Maildir file's name changes with its flags and its move to cur/, its content never), or its
internal date for the same UID and key (a rename keeps the mtime). A shared Message reads through
the Maildir of the session that scanned it, whose `_refresh` is serialised by its own lock.
"""
