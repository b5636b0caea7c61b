"""The addresses a domain answers list commands at (mailsrv.mta.list_commands), told from their
local part alone so the resolver can accept them at RCPT:

- the domain's command address (domain setting `listcommandaddress`, e.g. `lists@domain`): the
  commands are in the subject and body;
- `LIST-subscribe@`, `LIST-unsubscribe@`, `LIST-help@` of a list `LIST`: the command is the address;
- `LIST-confirm+TOKEN@`: confirms the subscription the signed TOKEN was issued for.
"""
from __future__ import annotations

from dataclasses import dataclass

from mailsrv.core.tokens import Tokens

SUBSCRIBE, UNSUBSCRIBE, HELP, CONFIRM = "subscribe", "unsubscribe", "help", "confirm"
_SUFFIXES = (SUBSCRIBE, UNSUBSCRIBE, HELP)


@dataclass(frozen=True)
class ListCommandAddress:
    """A route of the resolver: mail to it is read as list commands, not delivered."""
    address: str
    domain: str  # the domain's own name
    list_name: str  # "" for the command address, whose commands name their lists
    action: str  # "" for the command address, else SUBSCRIBE, UNSUBSCRIBE, HELP or CONFIRM
    token: str = ""  # CONFIRM's


def parse(local: str, command_local: str) -> tuple[str, str, str] | None:
    """(list name, action, token) of a local part (as given: a token's case matters) when it is a
    command address; the list named must still be checked to exist."""
    if command_local and local.lower() == command_local.lower():
        return "", "", ""
    head, plus, token = local.partition("+")
    name, dash, action = head.lower().rpartition("-")
    if not name or not dash:
        return None
    if action == CONFIRM and plus and token:
        return name, CONFIRM, token
    if action in _SUFFIXES and not plus:
        return name, action, ""
    return None


# One-click unsubscribe (RFC 8058): the link a post's List-Unsubscribe carries, served by the web
# listener (services.web.list_pages, mailsrv.mta.list_commands.OneClickUnsubscribe).
UNSUBSCRIBE_PURPOSE = "unsubscribe"
UNSUBSCRIBE_PATH = "/List/Unsubscribe"


def unsubscribe_token(tokens: Tokens, list_id: int, address: str) -> str:
    """The signed token of a one-click link that takes `address` off the list."""
    return tokens.sign(UNSUBSCRIBE_PURPOSE, f"{list_id}:{address.lower()}")


def unsubscribe_url(tokens: Tokens, host: str, list_id: int, address: str) -> str:
    return f"https://{host}{UNSUBSCRIBE_PATH}?token={unsubscribe_token(tokens, list_id, address)}"
