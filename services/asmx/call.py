"""What an operation handler receives besides its contract parameters (and, when it needs one, its caller)."""
from __future__ import annotations

from typing import NamedTuple, Protocol

from mailsrv.core.clock import Clock
from mailsrv.directory.abuse import AbuseRules
from mailsrv.directory.address_lists import AddressLists
from mailsrv.directory.admins import Admins
from mailsrv.directory.aliases import Aliases, DomainAliases
from mailsrv.directory.archive_rules import ArchiveRules
from mailsrv.directory.auth import Authenticator
from mailsrv.directory.autoclean import AutocleanRules
from mailsrv.directory.dkim_keys import DkimKeys
from mailsrv.directory.domains import Domains
from mailsrv.directory.forwarding_blocks import ForwardingBlocks
from mailsrv.directory.gateways import Gateways
from mailsrv.directory.greylisting import Greylisting
from mailsrv.directory.listeners import Listeners
from mailsrv.directory.mailbox_migrations import MailboxMigrations
from mailsrv.directory.mailing_lists import MailingLists
from mailsrv.directory.product import Product
from mailsrv.directory.propagation import GlobalUpdate
from mailsrv.directory.stats import Stats
from mailsrv.directory.system_settings import SystemSettings
from mailsrv.directory.user_activity import UserActivity
from mailsrv.directory.content_filters import ContentFilters
from mailsrv.directory.user_groups import UserGroups
from mailsrv.directory.user_options import UserOptions
from mailsrv.directory.users import Users
from mailsrv.mta.spool import Spool
from mailsrv.mta.spool_control import SpoolControl
from mailsrv.mta.status import ServerStatus


class Engine(Protocol):
    """The engine objects the operations call. The wiring passes its server object, which has them;
    naming them here keeps services/asmx independent of that wiring."""
    auth: Authenticator
    admins: Admins
    domains: Domains
    users: Users
    user_options: UserOptions
    user_groups: UserGroups
    mailbox_migrations: MailboxMigrations
    user_activity: UserActivity
    aliases: Aliases
    mailing_lists: MailingLists
    domain_aliases: DomainAliases
    stats: Stats
    product: Product
    forwarding_blocks: ForwardingBlocks
    dkim_keys: DkimKeys
    archive_rules: ArchiveRules
    spool: Spool
    spool_control: SpoolControl
    global_update: GlobalUpdate
    autoclean: AutocleanRules
    listeners: Listeners
    status: ServerStatus
    address_lists: AddressLists
    system_settings: SystemSettings
    gateways: Gateways
    content_filters: ContentFilters
    abuse_rules: AbuseRules
    greylisting: Greylisting
    clock: Clock


class Call(NamedTuple):
    """One per request: a named tuple, made for a fraction of a frozen dataclass's cost."""
    engine: Engine
    # The address of the TCP peer, used for system-admin IP restrictions and brute-force counting.
    client_ip: str
