"""Server configuration: a TOML file whose every key is optional.

Found by `--config FILE` or the MAILSRV_CONFIG environment variable; with neither, the embedded
defaults below apply. An unknown key stops the server at start with the key named, because a typo
in a mail server's config silently falling back to a default is how open relays happen.
"""
from __future__ import annotations

import ipaddress
import os
import socket
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

from mailsrv.core.networks import parse_network


class ConfigError(Exception):
    """The configuration cannot be used; the message names the offending key."""


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "mailsrv"


@dataclass
class ListenConfig:
    # SmarterMail's own port, so the seed's documented URLs work unchanged.
    web: str = "0.0.0.0:9998"
    # The same over HTTPS (certificate from [tls]): the sign-in pages carry passwords, and the
    # session cookie is Secure there. An unprivileged port, so `mailsrv serve` starts without root;
    # the packaged configurations (docker/, contrib/) put it on 443.
    webs: str = "0.0.0.0:9443"
    # Inbound mail from other servers (MX traffic), message submission (RFC 6409, AUTH required)
    # and submission with implicit TLS (RFC 8314, which clients are told to prefer). An empty value
    # disables that listener.
    smtp: str = "0.0.0.0:25"
    submission: str = "0.0.0.0:587"
    submissions: str = "0.0.0.0:465"
    # Mailbox access: IMAP and POP3 with STARTTLS/STLS, and their implicit-TLS ports (RFC 8314).
    imap: str = "0.0.0.0:143"
    imaps: str = "0.0.0.0:993"
    pop3: str = "0.0.0.0:110"
    pop3s: str = "0.0.0.0:995"
    # IMAP/POP3 logins are refused before TLS except from loopback, unless this is set.
    allow_plaintext_auth: bool = False


@dataclass
class WebConfig:
    # Largest SOAP/HTTP request body accepted; bigger ones get 413 before any parsing.
    max_request_bytes: int = 4 * 1024 * 1024
    # Plain HTTP answers the sign-in pages (Login.aspx, /admin/) with a redirect to the HTTPS
    # listener, so a password is never typed into a plain-HTTP form. Off behind a reverse proxy that
    # terminates TLS and forwards plain HTTP (the redirect would loop).
    https_redirect: bool = True
    # The same for the operations that replace a whole address list (svcMailListAdmin's Set…List):
    # 16 MB carries about 350,000 addresses (100,000 take 4.5 MB).
    max_list_request_bytes: int = 16 * 1024 * 1024


@dataclass
class SecurityConfig:
    # Brute-force limits, shared by every protocol and kept in the database (nodes share them).
    # Failures inside the window are counted per client address, and per login name from one
    # address: past max_failures_per_login that address waits backoff_seconds before its next try
    # at that login, twice as long after each further failure, at most lockout_seconds. Other
    # addresses are not held up, so a stranger's guesses never lock the owner out. Once a login has
    # failed max_failures_per_login_all_addresses times from all addresses (a distributed attack),
    # every address waits after its first failure; addresses without failures still get in.
    max_failures_per_address: int = 20
    max_failures_per_login: int = 10
    max_failures_per_login_all_addresses: int = 100
    backoff_seconds: int = 60
    failure_window_seconds: int = 900
    lockout_seconds: int = 900
    # Client networks (address, CIDR or first-last range) never held back, e.g. the office or the
    # control panel's server. A system administrator's own IP restrictions count as trusted for it.
    trusted_networks: list[str] = field(default_factory=list)


@dataclass
class DnsConfig:
    # "ip:port" or "ip" entries; empty means the system resolver (/etc/resolv.conf).
    nameservers: list[str] = field(default_factory=list)
    # This server's addresses as the world sees them (behind NAT they are not the machine's own):
    # what the DNS check expects mail.<domain>, SPF and reverse DNS to name.
    public_addresses: list[str] = field(default_factory=list)


@dataclass
class SmtpConfig:
    # The name in the greeting, the EHLO answer and our Received headers.
    hostname: str = field(default_factory=socket.getfqdn)
    # AUTH is offered only after STARTTLS unless this is set: a password sent in the clear is a
    # password given away.
    allow_plaintext_auth: bool = False
    # Client networks (address, CIDR or first-last range) that may relay without AUTH, e.g. a web
    # server's mail forms. Empty by default: no open relay in any default.
    relay_networks: list[str] = field(default_factory=list)
    # Server-wide caps, above any domain's own limits; SIZE advertises max_message_kb.
    max_message_kb: int = 51200
    max_recipients: int = 1000
    # The server-wide catch-all switch; a domain's catch-all works only when this and the
    # domain's `enablecatchalls` are both on (SmarterMail's default: on).
    allow_catchalls: bool = True
    # Mail whose recipients are all local mailboxes (without auto-responders) is written into them
    # before the 250 (mailsrv.mta.spool, direct delivery). Off: it waits in the spool for the queue,
    # as mail with remote recipients does (one more file write, fsync and transaction per message).
    deliver_at_acceptance: bool = True


@dataclass
class GreylistingConfig:
    # Greylisting at RCPT (mailsrv.directory.greylisting): the first message of a (client /24 or
    # /64, sender, recipient) triplet gets 451 4.7.1; a retry after delay_seconds, and before
    # delay_seconds + retry_window_seconds, passes the triplet for pass_lifetime_seconds.
    # Authenticated, trusted and SMTP-whitelisted clients, the greylisting filters and domains with
    # `bypassgreylisting` are never greylisted.
    enabled: bool = False
    delay_seconds: int = 300
    retry_window_seconds: int = 4 * 3600
    pass_lifetime_seconds: int = 36 * 24 * 3600


@dataclass
class AutoReplyConfig:
    # A user's auto-responder answers each sender at most once per this many days (RFC 3834's
    # "no more than once per period"); 0 answers every message (loops are still never answered).
    window_days: int = 1


@dataclass
class DeliveryConfig:
    # The port remote MX hosts are dialled on; only tests (a peer on a loopback port) change it.
    remote_port: int = 25
    # Simultaneous outbound SMTP transactions in all (each holds a thread while it waits on its peer).
    max_connections: int = 64
    # Simultaneous connections to one recipient domain: more would look like a flood to the
    # receiving server and get us throttled or greylisted.
    max_connections_per_domain: int = 4
    # An outgoing gateway that refused or did not answer is tried last for this long
    # (mailsrv.mta.outgoing_gateways), so its mail goes to the others without waiting on it first.
    gateway_cooldown_seconds: int = 60
    # Remote recipients of one destination (domain) the queue has claimed at once, across nodes:
    # a backlog for a slow or dead one leaves the rest of the queue's room to the others. A few
    # per connection, so each connection has its next message ready.
    max_queued_per_destination: int = 16
    # Every node (server process, or worker of one) writes a heartbeat into the store this often;
    # one whose heartbeat is older than node_timeout_seconds is dead, and the live nodes take over
    # the recipients it had claimed. A node that could not write its own heartbeat for half the
    # timeout stops starting deliveries and sends no remote message's final dot (so a node that
    # was only stalled never delivers what another node took over). The timeout must exceed two
    # heartbeats; nodes sharing a database need clocks in step (NTP) to well under the timeout.
    heartbeat_seconds: int = 2
    node_timeout_seconds: int = 10


@dataclass
class JobsConfig:
    # Background jobs (domain settings propagation, folder auto-clean) run on one node at a time: a
    # node holds a job under a lease it renews while it works, and commits its progress with each
    # batch; when a node dies, another takes the job over once the lease has run out and goes on
    # from the last batch committed. Nodes look for work every poll_seconds.
    lease_seconds: int = 60
    poll_seconds: int = 5
    # Domains per transaction of a propagation, mailboxes per batch of an auto-clean.
    batch_size: int = 1000


@dataclass
class AutocleanConfig:
    # How often the folder auto-clean rules (svcServerAdmin AddFolderAutocleanRule) are applied to
    # every mailbox, counted from the end of the previous run.
    interval_minutes: int = 60


@dataclass
class ServerConfig:
    # Worker processes of `mailsrv serve`, each with its own event loop serving every listener
    # (the kernel spreads connections over them); 0 means one per CPU core. 1 serves in the
    # `mailsrv serve` process itself, without a supervisor.
    workers: int = 0

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1


@dataclass
class TlsConfig:
    # PEM files for STARTTLS. Both empty: a self-signed pair is made in <data_dir>/tls at first start.
    cert_file: str = ""
    key_file: str = ""


LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass
class LogConfig:
    # One line per event (mailsrv.core.events): "text" is Postfix-like (`mailsrv[pid]: QUEUEID:
    # to=<...>, relay=..., status=sent (...)`), "json" one object per line for log shippers.
    format: str = "text"
    # DEBUG adds a line per SOAP read and per session's TLS details; WARNING keeps only problems.
    level: str = "INFO"
    # A file appended to (reopened on SIGHUP, for logrotate); empty: standard error (journald).
    file: str = ""


@dataclass
class MetricsConfig:
    # Client networks (address, CIDR or first-last range) besides loopback that may read /metrics;
    # anyone else gets 403 (the figures tell an attacker what the server carries).
    allow: list[str] = field(default_factory=list)


EDITIONS = ("PRO", "ENT", "FREE")


@dataclass
class ProductConfig:
    # What GetEdition answers: SmarterMail's edition codes, which control panels compare exactly
    # (PRO, ENT, FREE). Every feature is in every installation; ENT takes the branch that enables all.
    edition: str = "ENT"
    # What GetProductInfo reports as the version, for clients that check for a SmarterMail version
    # (e.g. "10.7"); empty reports mailsrv's own.
    reported_version: str = ""


@dataclass
class Config:
    data_dir: Path = field(default_factory=_default_data_dir)
    # Empty means the embedded SQLite file <data_dir>/mailsrv.db.
    database_url: str = ""
    server: ServerConfig = field(default_factory=ServerConfig)
    listen: ListenConfig = field(default_factory=ListenConfig)
    web: WebConfig = field(default_factory=WebConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    autoreply: AutoReplyConfig = field(default_factory=AutoReplyConfig)
    greylisting: GreylistingConfig = field(default_factory=GreylistingConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    autoclean: AutocleanConfig = field(default_factory=AutocleanConfig)
    product: ProductConfig = field(default_factory=ProductConfig)
    log: LogConfig = field(default_factory=LogConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'mailsrv.db'}"


def _build(cls: type, table: dict[str, Any], prefix: str, problems: list[str]) -> Any:
    """`cls` from `table`; each bad key is added to `problems` (naming it) and left at its default."""
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, raw in table.items():
        dotted = f"{prefix}{key}"
        if key not in known:
            problems.append(f"unknown configuration key '{dotted}'")
            continue
        kind = hints[key]
        if is_dataclass(kind):
            if not isinstance(raw, dict):
                problems.append(f"configuration key '{dotted}' must be a table")
            else:
                values[key] = _build(kind, raw, f"{dotted}.", problems)
            continue
        problem = _value_problem(kind, raw)
        if problem:
            problems.append(f"configuration key '{dotted}' {problem}")
        else:
            values[key] = Path(raw).expanduser() if kind is Path else list(raw) if kind == list[str] else raw
    return cls(**values)


def _value_problem(kind: Any, raw: Any) -> str:
    """What is wrong with `raw` as a value of type `kind` ('' : nothing)."""
    if kind is Path:
        return "" if isinstance(raw, str) else "must be a string path"
    if kind is bool:
        return "" if isinstance(raw, bool) else "must be true or false"
    if kind is int:
        natural = isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0
        return "" if natural else "must be a non-negative integer"
    if kind is str:
        return "" if isinstance(raw, str) else "must be a string"
    if kind == list[str]:
        strings = isinstance(raw, list) and all(isinstance(item, str) for item in raw)
        return "" if strings else "must be a list of strings"
    return "has an unsupported type"  # pragma: no cover - a new field type must be taught here


def config_problems(text: str) -> tuple[Config | None, list[str]]:
    """The configuration and every problem in it, each naming its key (`mailsrv check-config`);
    the configuration is None when the text is not TOML at all."""
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return None, [f"configuration is not valid TOML: {exc}"]
    problems: list[str] = []
    config = _build(Config, table, "", problems)
    config.data_dir = config.data_dir.resolve()
    delivery = config.delivery
    if delivery.heartbeat_seconds < 1 or delivery.node_timeout_seconds <= 2 * delivery.heartbeat_seconds:
        # Shorter, and a healthy node would stop delivering between two of its own heartbeats.
        problems.append("configuration key 'delivery.node_timeout_seconds' must be more than twice "
                        "'delivery.heartbeat_seconds', which must be at least 1")
    if delivery.max_queued_per_destination < 1:
        problems.append("configuration key 'delivery.max_queued_per_destination' must be at least 1")
    jobs = config.jobs
    if min(jobs.lease_seconds, jobs.poll_seconds, jobs.batch_size, config.autoclean.interval_minutes) < 1:
        problems.append("configuration keys 'jobs.lease_seconds', 'jobs.poll_seconds', 'jobs.batch_size' and "
                        "'autoclean.interval_minutes' must be at least 1")
    for address in config.dns.public_addresses:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            problems.append(f"configuration key 'dns.public_addresses': '{address}' is not an IP address")
    if config.product.edition not in EDITIONS:
        problems.append(f"configuration key 'product.edition' must be one of {', '.join(EDITIONS)}")
    if config.log.format not in LOG_FORMATS:
        problems.append(f"configuration key 'log.format' must be one of {', '.join(LOG_FORMATS)}")
    config.log.level = config.log.level.upper()
    if config.log.level not in LOG_LEVELS:
        problems.append(f"configuration key 'log.level' must be one of {', '.join(LOG_LEVELS)}")
    for spec in config.metrics.allow:
        try:
            parse_network(spec)
        except ValueError as exc:
            problems.append(f"configuration key 'metrics.allow': {exc}")
    return config, problems


def parse_config(text: str) -> Config:
    """The configuration; its first problem raised as a ConfigError."""
    config, problems = config_problems(text)
    if problems or config is None:
        raise ConfigError(problems[0])
    return config


def config_path(path: str | os.PathLike[str] | None = None) -> str | None:
    """The file a command reads: `path`, else MAILSRV_CONFIG; None means the embedded defaults."""
    return str(path) if path else os.environ.get("MAILSRV_CONFIG") or None


def read_config_text(chosen: str | None) -> str:
    if not chosen:
        return ""
    try:
        return Path(chosen).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {chosen}: {exc.strerror}") from None


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read the config named by `path`, else by MAILSRV_CONFIG, else the embedded defaults."""
    return parse_config(read_config_text(config_path(path)))
