"""The domain model as tables. Every schema change goes through a migration in mailsrv/store/migrations."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from mailsrv.core.clock import as_utc


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """Every datetime column: an instant, aware UTC in and out. PostgreSQL's timestamptz keeps the
    instant but answers in the session's zone; SQLite keeps the wall-clock text without its zone
    and answers it naive, so a value is converted to UTC before it is written. A naive value is
    refused: nothing says which zone it was meant in. The DDL stays DateTime(timezone=True)."""
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} for a UTC column: give it a time zone")
        return value.astimezone(dt.timezone.utc)

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        return None if value is None else as_utc(value)


class Base(DeclarativeBase):
    type_annotation_map = {dt.datetime: UtcDateTime(), dict[str, Any]: JSON, list[str]: JSON}


class Domain(Base):
    __tablename__ = "domains"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # ASCII (IDNA) lower-case form; what DNS, SMTP and every lookup use.
    name: Mapped[str] = mapped_column(String(253), unique=True)
    path: Mapped[str] = mapped_column(Text)
    primary_admin: Mapped[str] = mapped_column(String(64), default="")
    # Every key=value setting of the domain (mailsrv.core.settings.DOMAIN), complete: filled from the
    # domain defaults at creation so a later change of the defaults never changes existing domains.
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    users: Mapped[list["User"]] = relationship(back_populates="domain", cascade="all, delete-orphan",
                                               passive_deletes=True)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("domain_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(Text)
    first_name: Mapped[str] = mapped_column(String(128), default="")
    last_name: Mapped[str] = mapped_column(String(128), default="")
    is_domain_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    # mailsrv.core.settings.USER keys (isenabled, maxsize, lockpassword, replytoaddress, signature).
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    forwarding_addresses: Mapped[list[str]] = mapped_column(JSON, default=list)
    delete_on_forward: Mapped[bool] = mapped_column(Boolean, default=False)
    autoresponder_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    autoresponder_subject: Mapped[str] = mapped_column(Text, default="")
    autoresponder_body: Mapped[str] = mapped_column(Text, default="")
    activesync_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Raised by every password change: sessions opened with an older value (web, IMAP, POP3) end.
    credential_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    domain: Mapped[Domain] = relationship(back_populates="users")


class Alias(Base):
    __tablename__ = "aliases"
    __table_args__ = (UniqueConstraint("domain_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    addresses: Mapped[list[str]] = mapped_column(JSON, default=list)


class DomainAlias(Base):
    __tablename__ = "domain_aliases"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(253), unique=True)


class UserGroup(Base):
    __tablename__ = "user_groups"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    members: Mapped[list[str]] = mapped_column(JSON, default=list)


class RssFeed(Base):
    __tablename__ = "rss_feeds"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(Text)
    url: Mapped[str] = mapped_column(Text)
    folder: Mapped[str] = mapped_column(Text)


class MigrationJob(Base):
    """A queued mailbox import (QueueMailBoxMigration); stored only, see README "Stored-only features"."""
    __tablename__ = "migration_jobs"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    parameters: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(32), default="Queued")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class DomainForwardingBlock(Base):
    __tablename__ = "domain_forwarding_blocks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target_address: Mapped[str] = mapped_column(String(320), unique=True)
    domains: Mapped[list[str]] = mapped_column(JSON, default=list)


class DomainKey(Base):
    """The DKIM signing key of a domain (one active selector)."""
    __tablename__ = "domain_keys"
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"), primary_key=True)
    selector: Mapped[str] = mapped_column(String(63))
    private_key: Mapped[str] = mapped_column(Text)
    public_key: Mapped[str] = mapped_column(Text)


class ArchiveRule(Base):
    __tablename__ = "archive_rules"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"), unique=True)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class SystemAdmin(Base):
    __tablename__ = "system_admins"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    username: Mapped[str] = mapped_column(String(128), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    is_primary: Mapped[bool] = mapped_column(Boolean, default=False)
    # The factory admin/admin login: it may only complete setup until its login is changed.
    setup_pending: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    ip_restrictions: Mapped[list["AdminIpRestriction"]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="AdminIpRestriction.id")


class AdminIpRestriction(Base):
    __tablename__ = "admin_ip_restrictions"
    __table_args__ = (UniqueConstraint("admin_id", "network"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    admin_id: Mapped[str] = mapped_column(ForeignKey("system_admins.id", ondelete="CASCADE"), index=True)
    # As given by the admin (an address, a CIDR or a "first-last" range), normalised.
    network: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")


class LoginFailure(Base):
    """One failed login; counted per client address and per login name inside a window.

    Rows rather than in-memory counters so that several nodes on one database share the limit."""
    __tablename__ = "login_failures"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_ip: Mapped[str] = mapped_column(String(45), index=True)
    login: Mapped[str] = mapped_column(String(320), index=True)
    at: Mapped[dt.datetime] = mapped_column(index=True)


class UserLogin(Base):
    """The last successful login of a user per protocol (GetLastLoginTimes, GetInactiveUsers)."""
    __tablename__ = "user_logins"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    protocol: Mapped[str] = mapped_column(String(16), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column()


class WebSession(Base):
    """A signed-in web interface session. The cookie holds a random token; only its SHA-256 is
    stored, so a copy of the database lets nobody take over a session. Rows rather than memory so
    that any node on the database serves the session and a logout ends it everywhere."""
    __tablename__ = "web_sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    # A mailbox user's session, or (user_id None) a system administrator's.
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    admin_id: Mapped[str | None] = mapped_column(ForeignKey("system_admins.id", ondelete="CASCADE",
                                                            name="fk_web_sessions_admin_id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
    credential_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # the user's at sign-in


class ServerSetting(Base):
    """Server-wide key=value state (domain defaults, system settings, license), one row per key so
    that two nodes changing different keys never overwrite each other."""
    __tablename__ = "server_settings"
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)


class TrafficDaily(Base):
    """Per-day traffic of a domain; user_id 0 holds traffic not owned by one user (aliases, lists).

    No foreign key on user_id: deleting a user must not delete what the domain is billed for."""
    __tablename__ = "traffic_daily"
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Indexed on its own too: the server's figures of one day (RequestStatus, the admin dashboard)
    # would otherwise read every domain's whole history.
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True, index=True)
    messages_received: Mapped[int] = mapped_column(BigInteger, default=0)
    messages_sent: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_received: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_sent: Mapped[int] = mapped_column(BigInteger, default=0)


class SpoolMessage(Base):
    """A message accepted over SMTP, waiting for its recipients to be delivered (mailsrv.mta.spool).

    The bytes live in the file at `path` (relative to data_dir), exactly as the client sent them;
    the row and its recipients go away in the transaction that finishes the last recipient."""
    __tablename__ = "spool_messages"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    sender: Mapped[str] = mapped_column(String(320))  # "" for the null sender <>
    size: Mapped[int] = mapped_column(BigInteger)  # bytes of the DATA as transferred (dot-unstuffed)
    received_at: Mapped[dt.datetime] = mapped_column()
    client_ip: Mapped[str] = mapped_column(String(45))
    helo: Mapped[str] = mapped_column(String(255))
    auth_user: Mapped[str] = mapped_column(String(320), default="")  # "" when not authenticated
    # The Received: header written at acceptance; every delivery target prepends it.
    trace_header: Mapped[str] = mapped_column(Text)
    # pyspf's result for the sender at acceptance ("pass", "fail", …); "" when not checked (null
    # sender, authenticated client, or no policy asked for SPF then). See mailsrv.mta.spf_check.
    spf_result: Mapped[str] = mapped_column(String(16), default="", server_default="")
    # The mailbox folder local deliveries file it into ("" the inbox): the filters' verdict (Junk).
    folder: Mapped[str] = mapped_column(String(255), default="", server_default="")

    recipients: Mapped[list["SpoolRecipient"]] = relationship(cascade="all, delete-orphan",
                                                              passive_deletes=True)


class SpoolRecipient(Base):
    """One delivery of a spooled message: a local mailbox or a remote address.

    status: pending (never tried), deferred (tried, will be retried), delivered, failed. A node
    works on a row only while it holds the lease (claimed_by/claimed_until), taken with
    SELECT … FOR UPDATE SKIP LOCKED so that several nodes on one PostgreSQL share the queue."""
    __tablename__ = "spool_recipients"
    # The claim query's access path: open rows by due time.
    __table_args__ = (Index("ix_spool_recipients_due", "status", "next_attempt_at"),
                      # Claims count each destination's in-flight rows; a dead one's due rows are deferred together.
                      Index("ix_spool_recipients_domain", "domain", "status"),
                      Index("ix_spool_recipients_claimed", "claimed_until"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("spool_messages.id", ondelete="CASCADE"), index=True)
    address: Mapped[str] = mapped_column(String(320))  # the mailbox or remote address delivered to
    original: Mapped[str] = mapped_column(String(320))  # the RCPT TO address it was reached through
    kind: Mapped[str] = mapped_column(String(8))  # "local" or "remote"
    # The mailbox owner for local deliveries. No foreign key: deleting a user must not silently
    # drop mail already accepted for it; delivery then fails the recipient instead.
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column()
    last_error: Mapped[str] = mapped_column(Text, default="")
    claimed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    claimed_until: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    # The address's domain, lower-case: the destination the queue keeps apart (mailsrv.mta.spool.claim).
    domain: Mapped[str] = mapped_column(String(255), default="", server_default="")
    # Held by an administrator (mailsrv.mta.spool_control): never claimed, so never attempted nor expired.
    held: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # This copy's own envelope sender and header lines, "" for the message's: a list post's copy carries
    # its subscriber's VERP bounces address and one-click unsubscribe link (mailsrv.mta.list_server).
    sender: Mapped[str] = mapped_column(String(320), default="", server_default="")
    headers: Mapped[str] = mapped_column(Text, default="", server_default="")


class AutoReplySent(Base):
    """When a user's auto-responder last answered a sender (mailsrv.mta.autoreply): at most one reply
    per sender per window. Written in the transaction that records the delivery it answers."""
    __tablename__ = "autoreply_sent"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    sender: Mapped[str] = mapped_column(String(320), primary_key=True)  # the envelope sender, lower-case
    sent_at: Mapped[dt.datetime] = mapped_column()


class Node(Base):
    """A running queue manager and its last heartbeat (mailsrv.mta.nodes). A node whose beat is
    older than `[delivery] node_timeout_seconds` is dead: any live node deletes its row and
    releases its claims in one transaction."""
    __tablename__ = "nodes"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)  # QueueManager's node id
    beat_at: Mapped[dt.datetime] = mapped_column()
    # Published with each heartbeat (migration 0011): the sessions open in the node's process, and
    # the listeners it could not bind, one "address (protocol): reason" per line.
    smtp_sessions: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    pop_sessions: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    imap_sessions: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    listen_errors: Mapped[str] = mapped_column(Text, default="", server_default="")


class DirectoryGeneration(Base):
    """One row (id 1) whose number database triggers raise with every change to what SMTP's recipient
    lookups read (domains, users, aliases, domain aliases, server settings; migration 0007) and what
    SOAP's reads of domains and users return (migration 0024). Each node caches those lookups under
    the number it read and drops the cache once it sees another one, so a change made through any
    node applies to the next SMTP transaction and SOAP call on every node (mailsrv.mta.recipients,
    mailsrv.store.db.Store.fetch_directory)."""
    __tablename__ = "directory_generation"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)


# The generation as every cache keyed by it reads it (its one row); no row yet reads as 0.
CURRENT_GENERATION = select(DirectoryGeneration.generation).where(DirectoryGeneration.id == 1)


def directory_generation(conn: Any) -> int:
    """The directory generation as `conn`'s transaction (a Connection or Session) sees it."""
    return int(conn.execute(CURRENT_GENERATION).scalar() or 0)


class MaildirRename(Base):
    """A message written into a Maildir's tmp/ whose acceptance (and counting) is committed, still to
    be renamed into new/ (mailsrv.mta.spool): the file name, the same in tmp/ and new/, and the Maildir."""
    __tablename__ = "maildir_renames"
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    maildir: Mapped[str] = mapped_column(Text)


class Job(Base):
    """A background job over every domain or mailbox (mailsrv.directory.jobs): a propagation of domain
    settings, a folder auto-clean run. One node works on it at a time, while it holds the lease
    (claimed_by/claimed_until); each batch commits its effect with `cursor` (the last domain or
    user id done) and `done`, so a node taking it over goes on after the last batch committed."""
    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    # The kind while the job is not over, NULL after: unique, so one job of a kind runs at a time
    # whichever node starts one (NULLs never collide).
    active_kind: Mapped[str | None] = mapped_column(String(32), unique=True, nullable=True)
    state: Mapped[str] = mapped_column(String(16))  # Running, Finished, Failed
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    cursor: Mapped[int] = mapped_column(BigInteger, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[dt.datetime] = mapped_column()
    finished_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    claimed_until: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class AutocleanRule(Base):
    """A server-wide folder auto-clean rule (svcServerAdmin AddFolderAutocleanRule), applied to
    every mailbox by the auto-clean job (mailsrv.directory.autoclean)."""
    __tablename__ = "autoclean_rules"
    __table_args__ = (UniqueConstraint("folder", "type"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    folder: Mapped[str] = mapped_column(String(255))  # as the mailbox names it: Trash, Junk, Projects.Old
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    type: Mapped[str] = mapped_column(String(8))  # Age or Size
    size_before_mb: Mapped[int] = mapped_column(Integer, default=0)
    size_after_mb: Mapped[int] = mapped_column(Integer, default=0)
    age_days: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class DomainHourlyUsage(Base):
    """What a domain used of its hourly limits in one UTC hour (mailsrv.directory.domain_limits):
    messages and bytes its authenticated users sent, bounces (null-sender mail) it received. Counted
    only while the limit is enabled, in the transaction that accepts the message."""
    __tablename__ = "domain_hourly_usage"
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"), primary_key=True)
    hour: Mapped[int] = mapped_column(Integer, primary_key=True)  # hours since the Unix epoch, UTC
    messages_sent: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_sent: Mapped[int] = mapped_column(BigInteger, default=0)
    bounces_received: Mapped[int] = mapped_column(BigInteger, default=0)


# -- listeners (migration 0011: mailsrv.directory.listeners) ------------------------------------

class ServerPort(Base):
    """A listening port as svcServerAdmin describes it; bound on the IPs it is assigned to."""
    __tablename__ = "server_ports"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    protocol: Mapped[str] = mapped_column(String(16))  # SMTP / Submission / POP / IMAP
    encryption: Mapped[str] = mapped_column(String(16))  # None / STARTTLS / SSL
    certificate_path: Mapped[str] = mapped_column(Text)  # "" = the server's certificate
    name: Mapped[str] = mapped_column(String(128))
    port: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(1024))


class ServerPortIp(Base):
    __tablename__ = "server_port_ips"
    port_id: Mapped[str] = mapped_column(ForeignKey("server_ports.id", ondelete="CASCADE"), primary_key=True)
    ip_address: Mapped[str] = mapped_column(String(45), primary_key=True)  # canonical form


class ServerHostname(Base):
    """The greeting name for connections made to one local IP address (AddHostname)."""
    __tablename__ = "server_hostnames"
    ip_address: Mapped[str] = mapped_column(String(45), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(253))


class StoppedService(Base):
    """A mail service stopped by StopServices on every node until StartServices (row present = stopped)."""
    __tablename__ = "stopped_services"
    name: Mapped[str] = mapped_column(String(16), primary_key=True)


class ListenerGeneration(Base):
    """One row (id 1) raised with every change of the four tables above, in the same transaction:
    every worker of every node polls it and rebinds when it moves."""
    __tablename__ = "listener_generation"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)


class IpListEntry(Base):
    """One entry of a server IP list (mailsrv.directory.address_lists): the whitelist, the blacklist or
    the SMTP authentication bypass. An address, a CIDR block (`ip_address`) or a range
    (`range_start`..`range_end`); `first`..`last` is the span it covers, normalised, what entries are
    matched and told apart by. Entries of one list never overlap."""
    __tablename__ = "ip_list_entries"
    __table_args__ = (UniqueConstraint("list", "first", "last"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    list: Mapped[str] = mapped_column(String(16))
    ip_address: Mapped[str] = mapped_column(String(64), default="")
    range_start: Mapped[str] = mapped_column(String(45), default="")
    range_end: Mapped[str] = mapped_column(String(45), default="")
    first: Mapped[str] = mapped_column(String(45))
    last: Mapped[str] = mapped_column(String(45))
    smtp: Mapped[bool] = mapped_column(Boolean, default=False)
    pop: Mapped[bool] = mapped_column(Boolean, default=False)
    imap: Mapped[bool] = mapped_column(Boolean, default=False)
    xmpp: Mapped[bool] = mapped_column(Boolean, default=False)
    disable_greylisting: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str] = mapped_column(Text, default="")


class NameListEntry(Base):
    """One entry of a server name list (mailsrv.directory.address_lists): SMTP blocked senders and global
    trusted senders (an address, or a domain), the forwarding blacklist and reserved domain names
    (domains). `name` is lower-case."""
    __tablename__ = "name_list_entries"
    __table_args__ = (UniqueConstraint("list", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    list: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(320))
    description: Mapped[str] = mapped_column(Text, default="")


class OutgoingGateway(Base):
    """An outgoing gateway (mailsrv.directory.gateways): with `gatewayenabled`, remote mail leaves
    through the enabled ones. `address` is `host`, `host:port` or `[IPv6]:port` as given (normalised);
    a SmarterMail/mailsrv gateway also has the URL and login of its svcServerAdmin, from which
    LeastQueued reads its spool length. `position` keeps the order they were added in: Failover's order."""
    __tablename__ = "outgoing_gateways"
    guid: Mapped[str] = mapped_column(String(36), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, unique=True)
    address: Mapped[str] = mapped_column(String(300), unique=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    is_smartermail: Mapped[bool] = mapped_column(Boolean, default=False)
    sm_url: Mapped[str] = mapped_column(Text, default="")
    sm_username: Mapped[str] = mapped_column(String(320), default="")
    sm_password: Mapped[str] = mapped_column(Text, default="")


class IncomingGatewayRow(Base):
    """A server this one is backup MX or incoming gateway for (mailsrv.directory.incoming_gateways):
    mail for its domains is accepted here and handed on to `address` only. `spam` keeps the
    spam-action fields as given (the filtering issue will read them)."""
    __tablename__ = "incoming_gateways"
    guid: Mapped[str] = mapped_column(String(36), primary_key=True)
    mode: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(300))
    range_start: Mapped[str] = mapped_column(String(45), default="")
    range_end: Mapped[str] = mapped_column(String(45), default="")
    user_verify: Mapped[str] = mapped_column(String(16))
    domain_verify: Mapped[str] = mapped_column(String(16))
    domains: Mapped[list[str]] = mapped_column(JSON, default=list)
    webservice_url: Mapped[str] = mapped_column(Text, default="")
    smartermail_mode: Mapped[bool] = mapped_column(Boolean, default=False)
    smartermail_url: Mapped[str] = mapped_column(Text, default="")
    api_user: Mapped[str] = mapped_column(String(320), default="")
    api_password: Mapped[str] = mapped_column(Text, default="")
    spam: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The primary's domain list as last read over its API (domainVerifyType SmarterMail): what every
    # node answers with while the primary cannot be asked, across restarts.
    primary_domains: Mapped[list[str]] = mapped_column(JSON, default=list)


# -- mailing lists (migration 0016) ------------------------------------------------------------------

class MailingList(Base):
    """A mailing list of svcMailListAdmin: `name`@its domain. The list keys of settings-keys.md
    other than moderator and description live in `settings`, typed like the domain settings
    (mailsrv.core.settings), stored as parsed values."""
    __tablename__ = "mailing_lists"
    __table_args__ = (UniqueConstraint("domain_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))  # the local part, lower case
    moderator: Mapped[str] = mapped_column(String(320), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


# What a list_members row is: a subscriber, a digest subscriber, on the poster whitelist, on the kill list.
SUBSCRIBER, DIGEST, WHITELIST, KILLLIST = "subscriber", "digest", "whitelist", "killlist"


class ListMember(Base):
    """An address on one of a list's address lists (`kind`). `bounces` counts the subscriber's
    consecutive bounces; `disabled` is set when they pass the list's threshold (no more posts)."""
    __tablename__ = "list_members"
    list_id: Mapped[int] = mapped_column(ForeignKey("mailing_lists.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    address: Mapped[str] = mapped_column(String(320), primary_key=True)  # lower case
    bounces: Mapped[int] = mapped_column(Integer, default=0)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    added_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ListHold(Base):
    """A post held for its list's moderator (mailsrv.mta.list_server); the message is the file at
    `path`, relative to the data directory."""
    __tablename__ = "list_holds"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("mailing_lists.id", ondelete="CASCADE"))
    sender: Mapped[str] = mapped_column(String(320))
    path: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(index=True)


class DigestPost(Base):
    """A post waiting for its list's next digest (mailsrv.mta.digests): its copy is the file `path`
    (relative to the data directory); the row goes in the transaction that spools the digest."""
    __tablename__ = "list_digest_posts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("mailing_lists.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(String(512))
    subject: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str] = mapped_column(String(998), default="")  # its From header
    size: Mapped[int] = mapped_column(Integer)
    added_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SpamAssassinServer(Base):
    """A spamd the SpamAssassin check balances over (mailsrv.directory.content_filters), with the
    counters ListSpamAssassinServers reports, shared by every node."""
    __tablename__ = "spamassassin_servers"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    address: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    total_connections: Mapped[int] = mapped_column(Integer, default=0)


class AbuseRule(Base):
    """An abuse detection rule (mailsrv.directory.abuse): `kind` dos, harvesting, bruteforce,
    bounces or internalspammer; past `threshold` events of one subject (client address, or the
    sending user) within `timeframe_minutes`, its `action` (block for `block_minutes`, and/or
    notify `notify`)."""
    __tablename__ = "abuse_rules"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(24))
    service: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(16))
    timeframe_minutes: Mapped[int] = mapped_column(Integer)
    threshold: Mapped[int] = mapped_column(Integer)
    block_minutes: Mapped[int] = mapped_column(Integer)
    notify: Mapped[str] = mapped_column(String(320), default="")
    description: Mapped[str] = mapped_column(Text, default="")


class AbuseCounter(Base):
    """The events of one subject under one rule in the rule's current fixed window."""
    __tablename__ = "abuse_counters"
    rule_id: Mapped[int] = mapped_column(ForeignKey("abuse_rules.id", ondelete="CASCADE"), primary_key=True)
    subject: Mapped[str] = mapped_column(String(320), primary_key=True)
    window_start: Mapped[dt.datetime] = mapped_column()
    count: Mapped[int] = mapped_column(Integer)


class AbuseBlock(Base):
    """A client address (or a local user's login, for its sending) blocked for `service` until `until`."""
    __tablename__ = "abuse_blocks"
    subject: Mapped[str] = mapped_column(String(320), primary_key=True)
    service: Mapped[str] = mapped_column(String(16), primary_key=True)
    kind: Mapped[str] = mapped_column(String(24))
    blocked_at: Mapped[dt.datetime] = mapped_column()
    until: Mapped[dt.datetime] = mapped_column(index=True)
    reason: Mapped[str] = mapped_column(Text, default="")


class GreylistFilter(Base):
    """A client address, CIDR block or range never greylisted (AddGreylistingFilter)."""
    __tablename__ = "greylist_filters"
    __table_args__ = (UniqueConstraint("first", "last"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ip_address: Mapped[str] = mapped_column(String(64), default="")
    range_start: Mapped[str] = mapped_column(String(45), default="")
    range_end: Mapped[str] = mapped_column(String(45), default="")
    first: Mapped[str] = mapped_column(String(45))
    last: Mapped[str] = mapped_column(String(45))
    description: Mapped[str] = mapped_column(Text, default="")


class GreylistTriplet(Base):
    """(client network, sender, recipient) first seen at `first_seen`; passed until `passed_until`."""
    __tablename__ = "greylist_triplets"
    network: Mapped[str] = mapped_column(String(64), primary_key=True)
    sender: Mapped[str] = mapped_column(String(320), primary_key=True)
    recipient: Mapped[str] = mapped_column(String(320), primary_key=True)
    first_seen: Mapped[dt.datetime] = mapped_column()
    passed_until: Mapped[dt.datetime | None] = mapped_column(nullable=True)
