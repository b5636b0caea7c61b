"""The `mailsrv` command: `serve`, and `admin reset` for a lost system administrator login.

Exit codes: 0 done, 1 refused or failed, 2 bad usage or configuration.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from mailsrv import __version__
from mailsrv.core.config import Config, ConfigError, load_config

Command = Callable[[Config, argparse.Namespace], int]


def _serve(config: Config, _args: argparse.Namespace) -> int:
    # The engine and web stack are imported only by the commands that run them.
    from mailsrv.serve import ListenError, run

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run(config)
    except ListenError as exc:
        print(f"mailsrv: {exc}", file=sys.stderr)
        return 1
    return 0


def _admin_reset(config: Config, args: argparse.Namespace) -> int:
    """The seed's "Resetting an Unknown Login": set the primary admin's login from the shell."""
    from mailsrv.core.errors import MailsrvError
    from mailsrv.server import MailServer

    server = MailServer(config)
    try:
        server.admins.reset_primary(args.username, args.password)
    except MailsrvError as exc:
        print(f"mailsrv: {exc.message}", file=sys.stderr)
        return 1
    finally:
        server.close()
    print(f"The primary system administrator now logs in as '{args.username}'.")
    return 0


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
    reset.add_argument("--password", required=True, metavar="PW")
    reset.set_defaults(command=_admin_reset)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command: Command = args.command
    try:
        return command(load_config(args.config), args)
    except ConfigError as exc:
        print(f"mailsrv: {exc}", file=sys.stderr)
        return 2
