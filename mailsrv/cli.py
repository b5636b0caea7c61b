"""The `mailsrv` command: `serve`, `admin reset` for a lost system administrator login,
`gateway test` for a server mail is handed to, `spool list|reset-retries|hold|release|delete`
(Postfix's postqueue -p / -f and postsuper -h / -H / -d: the same engine functions as
svcSpoolAdmin, as the system administrator), `dns check` (the records a domain should publish);
the commands for daily work (domains, users, statistics, check-config, backup, restore) are in
`mailsrv.commands`.

Exit codes: 0 done, 1 refused or failed, 2 bad usage or configuration.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from mailsrv import __version__
from mailsrv.commands import add_parsers, describe, run
from mailsrv.core.config import Config, ConfigError, config_path, load_config

if TYPE_CHECKING:
    from mailsrv.mta.dns_check import DnsReport
    from mailsrv.mta.spool_control import SpoolEntry

Command = Callable[[Config, argparse.Namespace], int]


def _serve(config: Config, _args: argparse.Namespace) -> int:
    # The engine and web stack are imported only by the commands that run them.
    from mailsrv.core.logs import configure
    from mailsrv.serve import ListenError, run

    configure(config.log)
    try:
        run(config)
    except ListenError as exc:
        print(f"mailsrv: {exc}", file=sys.stderr)
        return 1
    return 0


def _admin_reset(config: Config, args: argparse.Namespace) -> int:
    """The seed's "Resetting an Unknown Login": set the primary admin's login from the shell."""
    from mailsrv.commands import opened, read_password

    if args.password is not None:
        print("mailsrv: warning: --password is shown to every user of this machine (ps); "
              "give the password at the prompt or on stdin", file=sys.stderr)
    # Migrated here, as at a server start: this is how a new installation gets its first login.
    with opened(config, create=args.create, migrate=True) as server:
        password = args.password if args.password is not None else read_password(f"password for {args.username}")
        server.admins.reset_primary(args.username, password)
    print(f"The primary system administrator now logs in as '{args.username}'.")
    return 0


def _gateway_test(config: Config, args: argparse.Namespace) -> int:
    """The seed's test of a gateway or primary: SMTP (greeting, EHLO, TLS) and, given its API, its
    version and spool count. Exit 1 when it could not be reached or its API did not answer."""
    from mailsrv.core.errors import MailsrvError
    from mailsrv.mta.server_probe import ApiLogin, probe_server

    if bool(args.soap_url) != bool(args.user and args.password is not None):
        print("mailsrv: --soap-url, --user and --password go together", file=sys.stderr)
        return 2
    api = ApiLogin(args.soap_url, args.user, args.password) if args.soap_url else None
    try:
        found = probe_server(args.address, api, local_name=config.smtp.hostname, nameservers=config.dns.nameservers,
                             timeout=args.timeout, try_tls=not args.no_tls)
    except MailsrvError as exc:
        print(f"mailsrv: {exc.message}", file=sys.stderr)
        return 2
    print(f"server:     {found.address} ({found.ip or 'not resolved'} port {found.port})")
    if found.reachable:
        print(f"greeting:   {found.greeting}  ({found.connect_ms:.1f} ms)")
    if found.ehlo:
        print(f"EHLO:       {' | '.join(found.ehlo)}  (round trip {found.round_trip_ms:.1f} ms)")
        tls = ("offered" if found.starttls_offered else "not offered")
        if found.tls_negotiated:
            tls += f", negotiated {found.tls_version} {found.tls_cipher}"
        print(f"STARTTLS:   {tls}")
    for label, error in (("SMTP", found.smtp_error), ("TLS", found.tls_error)):
        if error:
            print(f"{label} error: {error}")
    if api is not None:
        if found.product_version:
            print(f"product:    {found.product_name} {found.product_version}")
        if found.spool_count is not None:
            print(f"spool:      {found.spool_count} messages")
        for label, error in (("API", found.api_error), ("spool", found.spool_error)):
            if error:
                print(f"{label} error: {error}")
    api_failed = api is not None and bool(found.api_error or found.spool_error)
    return 1 if not found.reachable or api_failed else 0


def _spool(config: Config, args: argparse.Namespace) -> int:
    """One spool command, with the shell's user as the system administrator (it holds the
    configuration and the database, as root does Postfix's queue). A refusal exits 1 (`run`)."""
    from mailsrv.commands import SHELL, opened
    from mailsrv.core.logs import configure

    # What the command changes is logged into the server's log file (who: "shell"); without one the
    # server logs to its own standard error (the journal), not this terminal's.
    if config.log.file:
        configure(config.log)
    with opened(config) as server:  # an existing database only: never a new empty one
        control = server.spool_control
        if args.action == "list":
            _print_spool(control.list(SHELL, args.max))
        elif args.action == "reset-retries":
            print(f"{control.reset_retries(SHELL, args.ids)} recipients are due now.")
        else:
            getattr(control, args.action)(SHELL, args.ids)
            print(f"{len(set(args.ids))} messages {_DONE[args.action]}.")
    return 0


_DONE = {"hold": "held", "release": "released", "delete": "deleted"}


def _print_spool(entries: Sequence[SpoolEntry]) -> None:
    """postqueue -p's layout: a line per message, then its open recipients indented."""
    if not entries:
        print("Mail queue is empty")
        return
    for entry in entries:
        held = "!" if entry.held else " "  # postqueue marks held messages with "!"
        print(f"{entry.id}{held} {entry.size:>9} {entry.attempts:>3} "
              f"{entry.next_attempt.strftime('%Y-%m-%dT%H:%M:%SZ')}  {entry.sender or '<>'}")
        if entry.last_error:
            print(f"    ({entry.last_error})")
        for recipient in entry.recipients:
            print(f"    {recipient}")
    print(f"-- {len(entries)} messages")


def _dns_check(config: Config, args: argparse.Namespace) -> int:
    """The records the domain should publish beside what DNS answers; exit 0 only when all pass."""
    from mailsrv.commands import SHELL, opened
    from mailsrv.core.errors import MailsrvError

    with opened(config) as server:  # an existing database only: never a new empty one
        try:
            report = server.dns_check.check(SHELL, args.domain, args.timeout)
        except MailsrvError as exc:
            print(f"mailsrv: {exc.message}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        _print_dns(report)
    return 0 if report.passed else 1


def _print_dns(report: DnsReport) -> None:
    for check in report.checks:
        print(f"{check.kind:<6} {check.status:<8} {check.label}: {check.detail}")
        for line in check.expected:
            print(f"       create: {line}")
        for line in check.found:
            print(f"       in DNS: {line}")
    passed = sum(check.status == "pass" for check in report.checks)
    print(f"-- {report.domain}: {passed} of {len(report.checks)} records pass")


def _parser() -> argparse.ArgumentParser:
    config_option = argparse.ArgumentParser(add_help=False)
    config_option.add_argument("--config", metavar="FILE",
                               help="TOML configuration file (default: $MAILSRV_CONFIG, else built-in defaults)")

    parser = argparse.ArgumentParser(prog="mailsrv", description="A mail server administered over "
                                     "SmarterMail's SOAP/ASMX automation contract.")
    parser.add_argument("--version", action="version", version=f"mailsrv {__version__}")
    commands = parser.add_subparsers(metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", parents=[config_option], help="run the server until SIGTERM/SIGINT")
    serve.set_defaults(command=_serve)

    admin = commands.add_parser("admin", help="administration from the shell")
    admin_commands = admin.add_subparsers(metavar="ACTION", required=True)
    reset = admin_commands.add_parser(
        "reset", parents=[config_option],
        help="set the primary system administrator's name and password (when the login is lost)")
    reset.add_argument("--username", required=True, metavar="NAME")
    reset.add_argument("--create", action="store_true",
                       help="make the database when it holds no mailsrv tables yet (a new installation)")
    # Kept for scripts written before the prompt; it warns (the password shows in ps).
    reset.add_argument("--password", metavar="PW", help=argparse.SUPPRESS)
    reset.set_defaults(command=_admin_reset)

    gateway = commands.add_parser("gateway", help="gateways and the servers mail is handed to")
    gateway_commands = gateway.add_subparsers(metavar="ACTION", required=True)
    test = gateway_commands.add_parser(
        "test", parents=[config_option],
        help="test a gateway or primary: SMTP greeting, EHLO, TLS; with --soap-url its version and spool count")
    test.add_argument("address", metavar="ADDRESS", help="ip, ip:port, [ipv6]:port or host name[:port] (port 25)")
    test.add_argument("--soap-url", metavar="URL", help="its web interface (SmarterMail or mailsrv), e.g. http://gw:9998")
    test.add_argument("--user", metavar="NAME", help="a system administrator of that server")
    test.add_argument("--password", metavar="PW")
    test.add_argument("--timeout", type=float, default=10, metavar="SECONDS", help="for each step (default 10)")
    test.add_argument("--no-tls", action="store_true", help="do not try STARTTLS")
    test.set_defaults(command=_gateway_test)

    spool = commands.add_parser("spool", help="the queue of mail waiting for delivery")
    spool_commands = spool.add_subparsers(metavar="ACTION", dest="action", required=True)
    listing = spool_commands.add_parser("list", parents=[config_option],
                                        help="the waiting messages, oldest first (ID, size, attempts, next "
                                        "attempt, sender; \"!\" after the ID: held)")
    listing.add_argument("--max", type=int, default=10_000, metavar="N", help="at most N messages (1-10000)")
    resetting = spool_commands.add_parser("reset-retries", parents=[config_option],
                                          help="attempts back to 0 and due now (no ID: every message)")
    resetting.add_argument("ids", nargs="*", metavar="ID")
    for action, text in [("hold", "never attempt these messages until released"),
                         ("release", "attempt held messages again"),
                         ("delete", "remove these messages without telling their senders")]:
        command = spool_commands.add_parser(action, parents=[config_option], help=text)
        command.add_argument("ids", nargs="+", metavar="ID")
    spool.set_defaults(command=_spool)

    dns = commands.add_parser("dns", help="the DNS records of the domains")
    dns_commands = dns.add_subparsers(metavar="ACTION", required=True)
    check = dns_commands.add_parser(
        "check", parents=[config_option],
        help="the records a domain should publish (MX, mail.DOMAIN, PTR, SPF, DKIM, DMARC) and what DNS answers; "
        "exit 1 unless all pass")
    check.add_argument("domain", metavar="DOMAIN")
    check.add_argument("--json", action="store_true", help="the report as JSON (as /admin/api/dns/DOMAIN)")
    check.add_argument("--timeout", type=float, default=5, metavar="SECONDS", help="for each DNS lookup (default 5)")
    check.set_defaults(command=_dns_check)
    add_parsers(commands, config_option)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "raw", None):  # commands that read the configuration themselves, or none
        return run(lambda: args.raw(args), args)
    command: Command = args.command
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"mailsrv: {exc}", file=sys.stderr)
        return 2
    if command is not _serve:  # serve logs what it uses as it starts
        print(describe(config, config_path(args.config)), file=sys.stderr)
    return run(lambda: command(config, args), args)
