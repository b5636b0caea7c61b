"""The engine as one object: configuration, store, disk and the services every listener calls."""
from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from sqlalchemy import make_url

from mailsrv.access.imap.accounts import Accounts
from mailsrv.core.actor import Actor
from mailsrv.core.clock import Clock, SystemClock
from mailsrv.core.config import Config
from mailsrv.core.dns import make_resolver
from mailsrv.core.sessions import OpenSessions
from mailsrv.core.tokens import Tokens
from mailsrv.directory.abuse import AbuseRules
from mailsrv.directory.address_lists import AddressLists
from mailsrv.directory.admins import Admins
from mailsrv.directory.aliases import Aliases, DomainAliases
from mailsrv.directory.archive_rules import ArchiveRules
from mailsrv.directory.auth import Authenticator
from mailsrv.directory.content_filters import ContentFilters
from mailsrv.directory.greylisting import Greylisting
from mailsrv.directory.autoclean import AutocleanRules
from mailsrv.directory.dkim_keys import DkimKeys
from mailsrv.directory.domains import Domains, refers_to
from mailsrv.directory.forwarding_blocks import ForwardingBlocks
from mailsrv.directory.gateways import Gateways
from mailsrv.directory.incoming_gateways import IncomingGateways
from mailsrv.directory.jobs import JobRunner, Jobs
from mailsrv.directory.listeners import Greetings, Listeners
from mailsrv.directory.mailbox_migrations import MailboxMigrations
from mailsrv.directory.mailing_lists import MailingLists
from mailsrv.directory.product import Product
from mailsrv.directory.propagation import GlobalUpdate
from mailsrv.directory.stats import Stats
from mailsrv.directory.system_settings import SystemSettings
from mailsrv.directory.user_activity import UserActivity
from mailsrv.directory.user_groups import UserGroups
from mailsrv.directory.user_options import UserOptions
from mailsrv.directory.users import Users
from mailsrv.directory.web_sessions import WebSessions
from mailsrv.mailstore.disk import Disk
from mailsrv.mta.autoreply import AutoResponder
from mailsrv.mta.bounces import Bouncer
from mailsrv.mta.digests import Digests
from mailsrv.mta.dns_check import DnsCheck
from mailsrv.mta.incoming_gateways import IncomingRole
from mailsrv.mta.filtering.abuse import AbuseDetection, AbuseNotices
from mailsrv.mta.filtering.greylisting import GreylistingCheck
from mailsrv.mta.filtering.clamd import ClamAvCheck
from mailsrv.mta.filtering.dnsbl import DnsblCheck
from mailsrv.mta.filtering.options import FilterOptions
from mailsrv.mta.filtering.dkim import Signer
from mailsrv.mta.filtering.dmarc import SenderAuthentication
from mailsrv.mta.filtering.pipeline import Pipeline
from mailsrv.mta.filtering.spamd import SpamAssassinCheck
from mailsrv.mta.intake import Intake
from mailsrv.mta.list_commands import ListCommands, OneClickUnsubscribe
from mailsrv.mta.list_server import ListServer
from mailsrv.mta.local_delivery import LocalDelivery
from mailsrv.mta.nodes import Heartbeat
from mailsrv.mta.outgoing_gateways import GatewayRouter, OutboundAddresses
from mailsrv.mta.policy import Policy
from mailsrv.mta.queue import QueueManager
from mailsrv.mta.recipients import Resolver
from mailsrv.mta.remote_delivery import make_remote_delivery
from mailsrv.mta.routing import Routes
from mailsrv.mta.spool import LOCAL, REMOTE, Spool
from mailsrv.mta.spool_control import SpoolControl
from mailsrv.mta.status import ServerStatus
from mailsrv.store.db import Store
from mailsrv.webmail.service import Webmail

# Imported by `mailsrv serve` before it forks: its workers inherit the instance the server started.
STARTED_AT = time.time()


def _database_paths(config: Config) -> list[Path]:
    """An SQLite database's folder (its file, when that folder is the data directory itself)."""
    url = make_url(config.effective_database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return []
    database = Path(url.database).resolve()
    return [database if database.parent == config.data_dir.resolve() else database.parent]


class MailServer:
    def __init__(self, config: Config, clock: Clock | None = None, recover: bool = True) -> None:
        """`recover`: do what a server start does once, before any listener (migrations, the
        disk's reconcile, the factory login); False in `mailsrv serve`'s workers, whose parent did."""
        self.config = config
        self.clock: Clock = clock or SystemClock()
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(config.effective_database_url)
        self.disk = Disk(config.data_dir, _database_paths(config))
        # The server's IP and name lists, one snapshot per process (SMTP, POP, IMAP, the resolver and
        # the brute-force rules, which never block a whitelisted client).
        self.address_lists = AddressLists(self.store)
        self.abuse_rules = AbuseRules(self.store, config.security)
        self.auth = Authenticator(self.store, config.security, self.clock, self.abuse_rules,
                                  lambda service, ip: self.address_lists.snapshot().whitelisted(service, ip))
        self.admins = Admins(self.store)
        if recover:
            self.store.migrate()
            # Before any listener: a domain or user half added or deleted by a killed process must
            # not take mail into a staging or trash directory, nor lose what it has.
            self.disk.reconcile(lambda path: refers_to(self.store, path))
            self.admins.ensure_factory_login()
        self.domains = Domains(self.store, self.disk)
        self.users = Users(self.store, self.disk, self.auth)
        self.user_options = UserOptions(self.store)
        self.user_groups = UserGroups(self.store)
        self.mailbox_migrations = MailboxMigrations(self.store)
        self.user_activity = UserActivity(self.store)
        self.aliases = Aliases(self.store)
        self.mailing_lists = MailingLists(self.store)
        self.domain_aliases = DomainAliases(self.store, config)
        self.stats = Stats(self.store)
        self.product = Product(self.store, config.product)
        self.forwarding_blocks = ForwardingBlocks(self.store)
        self.dkim_keys = DkimKeys(self.store)
        self.archive_rules = ArchiveRules(self.store)
        # The mail engine: what SMTP in asks (resolver, policy), where it puts mail (spool), and
        # the queue manager that delivers from the spool (started by `mailsrv serve`).
        # General Settings: [smtp] gives the initial values of the ones it has.
        self.system_settings = SystemSettings(self.store, config.smtp)
        self.resolver = Resolver(self.store, self.system_settings, self.address_lists)
        self.policy = Policy(config.smtp.relay_networks)
        self.spool = Spool(self.store, config.data_dir, self.clock, Bouncer(self.resolver, self.clock))
        self.autoresponder = AutoResponder(self.store, self.resolver, self.spool, self.clock,
                                           dt.timedelta(days=config.autoreply.window_days))
        # DNS for MX lookups when delivering ([dns] nameservers).
        self.dns = make_resolver(config.dns.nameservers)
        # The admin's check of what each domain publishes in DNS.
        self.dns_check = DnsCheck(self.store, self.system_settings, config.dns.nameservers,
                                  config.dns.public_addresses)
        # The servers this one is backup MX or incoming gateway for: their domains accepted at RCPT,
        # their mail handed to them only.
        self.incoming_gateways = IncomingGateways(self.store)
        self.incoming_role = IncomingRole(self.incoming_gateways, config.delivery.remote_port)
        # How mail comes in, for SMTP and the web interface's send alike.
        # Signed tokens (list confirmations, one-click unsubscribe) and list commands by mail.
        self.tokens = Tokens(config.data_dir, self.clock)
        self.list_commands = ListCommands(self.store, self.resolver, self.spool, self.clock, self.tokens)
        # One-click unsubscribe (RFC 8058), served by the web listener.
        self.one_click = OneClickUnsubscribe(self.store, self.tokens)
        self.digests = Digests(self.store, self.resolver, self.spool, self.clock, config.data_dir)
        self.list_server = ListServer(self.resolver, self.spool, self.clock, self.tokens, self.digests)
        # Mail hygiene (mailsrv.mta.filtering): the checks every message meets at each SMTP stage.
        # The content filters' settings and SpamAssassin servers (svcSpamAdmin, svcVirusAdmin).
        self.content_filters = ContentFilters(self.store)
        options = FilterOptions(self.resolver)
        self.greylisting = Greylisting(self.store, config.greylisting)
        # SPF, DKIM keys and DMARC records at acceptance: through a cache that keeps answers for their TTL.
        self.sender_dns = make_resolver(config.dns.nameservers, cached=True)
        # In order: who may talk at all (abuse blocks), then greylisting, then the sender's
        # authentication (SPF, DKIM, DMARC), then blocklists and the content filters; SpamAssassin
        # last so that its score adds to the blocklists'.
        self.filters = Pipeline((
            AbuseDetection(self.abuse_rules, self.resolver, self.clock,
                           AbuseNotices(self.resolver, self.spool, self.clock)),
            GreylistingCheck(self.greylisting, self.resolver, self.clock),
            SenderAuthentication(self.sender_dns, lambda: self.resolver.settings),
            DnsblCheck(self.dns, options.antispam),
            ClamAvCheck(options.antivirus),
            SpamAssassinCheck(options.antispam, self.content_filters, self.incoming_role.gateway_for)))
        self.intake = Intake(self.resolver, self.policy, self.spool, self.clock, self.sender_dns,
                             config.smtp.deliver_at_acceptance, self.incoming_role, self.list_commands,
                             list_server=self.list_server, filters=self.filters,
                             signer=Signer(self.dkim_keys.signing_key))
        # This node's liveness in the store: how other nodes notice it died, and its fence.
        # The sessions open in this process, published with its heartbeat (RequestStatus).
        self.sessions = OpenSessions()
        self.heartbeat = Heartbeat(self.store, self.clock, dt.timedelta(seconds=config.delivery.heartbeat_seconds),
                                   dt.timedelta(seconds=config.delivery.node_timeout_seconds), self.sessions)
        # What to listen on and the greeting name per local IP (bound by `mailsrv serve`).
        self.listeners = Listeners(self.store)
        self.greetings = Greetings()
        self.status = ServerStatus(self.store, self.spool, self.listeners, self.heartbeat, STARTED_AT, self.abuse_rules)
        # Outgoing gateways (gatewayenabled): a router ahead of MX lookup; LeastQueued counts our own
        # transactions in flight to a plain gateway.
        self.gateways = Gateways(self.store)
        self.gateway_router = GatewayRouter(self.store, self.system_settings, config.delivery.gateway_cooldown_seconds,
                                            lambda destination: self.remote_delivery.in_flight(destination),
                                            default_port=config.delivery.remote_port)
        self.remote_delivery = make_remote_delivery(self.dns, lambda: self.system_settings.values()["smtphostname"],
                                                    config.delivery.remote_port, config.delivery.max_connections,
                                                    config.delivery.max_connections_per_domain, self.heartbeat.holds,
                                                    Routes([self.incoming_role, self.gateway_router]),
                                                    OutboundAddresses(self.system_settings))
        self.spool_control = SpoolControl(self.spool)
        self.delivery = QueueManager(self.spool, {LOCAL: LocalDelivery(self.store, self.disk, self.autoresponder),
                                                  REMOTE: self.remote_delivery}, self.system_settings, self.heartbeat,
                                     per_destination={REMOTE: config.delivery.max_queued_per_destination})
        # Background jobs over every domain or mailbox (propagation, folder auto-clean): every node
        # runs the loop (started by `mailsrv serve`), one at a time works on a job.
        self.jobs = Jobs(self.store, self.clock, dt.timedelta(seconds=config.jobs.lease_seconds), config.jobs.batch_size)
        self.global_update = GlobalUpdate(self.store, self.jobs)
        self.autoclean = AutocleanRules(self.store, self.clock, self.jobs,
                                        dt.timedelta(minutes=config.autoclean.interval_minutes))
        self.job_runner = JobRunner(self.jobs, lambda: self.heartbeat.node, config.jobs.poll_seconds,
                                    self.autoclean.schedule)
        # Who opens which mailbox over IMAP and POP3.
        self.mailboxes = Accounts(self.auth, self.disk, self.store, self.system_settings, self.address_lists,
                                  self.user_activity)
        # The web interface: its sign-ins, and what a signed-in user does with its mailbox.
        self.web_sessions = WebSessions(self.store, self.auth, self.clock)
        self.webmail = Webmail(self.intake, self.store, self.clock)

    def login(self, login: str | None, password: str | None, client_ip: str) -> Actor:
        return self.auth.login(login, password, client_ip)

    def close(self) -> None:
        self.delivery.close()
        self.remote_delivery.close()
        self.store.close()
