"""Who may send what through this server: the relay policy as two short chains of rules.

The SMTP listener gathers the facts (client address, authenticated login, whether the sender's and
the recipient's domains are ours) and asks the policy; the policy reads nothing itself.

A rule looks at one check and answers ACCEPT (decided: allowed), a Reply (decided: refused with
that SMTP answer) or None (no opinion, ask the next rule). When no rule decides, a sender is
accepted and a recipient is refused: nothing is relayed unless a rule says so. The gateway and
backup-MX roles extend the policy by putting their own rules in front of the defaults (e.g.
"accept recipients in the domains we are backup MX for").

Who may relay without AUTH (`Client.trusted`) is one predicate: the configured relay networks, the
server's SMTP IP whitelist and its SMTP authentication bypass (mailsrv.directory.address_lists).

Defaults:
- MAIL FROM with a sender on the server's SMTP blocked senders (not a global trusted sender), from a
  client not on the SMTP IP whitelist: 550 5.7.1.
- MAIL FROM claiming an address in one of our domains that has "Require SMTP Authentication" on,
  from a client that neither authenticated nor is in the relay networks: 530 5.7.0. We answer
  530 (authentication required) rather than 550 5.7.1 because the usual sender of such mail is
  our own user's misconfigured client, and 530 tells it exactly what to fix; a forger gets the
  same permanent refusal either way. The null sender <> (bounces) is never refused here.
- RCPT TO for a domain an incoming gateway forwards (backup MX, incoming gateway): refused
  `554 5.4.6` from that gateway's primary (its mail would go straight back to it: a loop), before
  any other rule, and accepted from anyone else (mailsrv.mta.incoming_gateways).
- RCPT TO: accepted whatever the destination from trusted clients (`Policy.trusts`: the relay
  networks), and from authenticated clients while the server's `relay` setting is
  AuthenticatedUsers (with Nobody, a login alone relays nothing); otherwise only for our own
  domains; anything else 550 5.7.1 relaying denied.
"""
from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mailsrv.core.config import ConfigError
from mailsrv.core.networks import address_in, parse_network
from mailsrv.directory.address_lists import EMPTY, Snapshot
from mailsrv.mta.recipients import DomainInfo


@dataclass(frozen=True)
class Reply:
    code: int
    status: str  # RFC 3463 enhanced status code
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.status} {self.text}"


class Verdict(enum.Enum):
    ACCEPT = "accept"


ACCEPT = Verdict.ACCEPT


@dataclass(frozen=True)
class Client:
    ip: str
    login: str | None  # the authenticated login (user@domain), None before/without AUTH
    trusted: bool  # may relay without AUTH whatever `relay` (relay networks, SMTP whitelist or bypass), and send as a local domain
    whitelisted: bool = False  # on the SMTP IP whitelist: exempt from the blocked senders
    authenticated_relay: bool = True  # the server's relay=AuthenticatedUsers: a login may relay


@dataclass(frozen=True)
class SenderCheck:
    client: Client
    sender: str  # "" for the null sender
    sender_domain: DomainInfo | None  # the sender's domain when it is one of ours
    blocked: bool = False  # the sender is an SMTP blocked sender and not a global trusted sender


@dataclass(frozen=True)
class RecipientCheck:
    client: Client
    sender: str
    recipient: str
    local: bool  # the recipient's domain is one of ours (or one of our domain aliases)
    relay_domain: bool = False  # an incoming gateway forwards the recipient's domain (mailsrv.mta.incoming_gateways)
    from_primary: bool = False  # ... and the client is that gateway's primary (its range or address)


SenderRule = Callable[[SenderCheck], Verdict | Reply | None]
RecipientRule = Callable[[RecipientCheck], Verdict | Reply | None]

RELAY_DENIED = Reply(550, "5.7.1", "Relaying denied: authenticate first")


def blocked_sender(check: SenderCheck) -> Reply | None:
    if check.blocked and not check.client.whitelisted:
        return Reply(550, "5.7.1", f"<{check.sender}>: sender blocked on this server")
    return None


def sender_requires_auth(check: SenderCheck) -> Reply | None:
    domain = check.sender_domain
    if check.sender and domain is not None and domain.requires_smtp_auth \
            and check.client.login is None and not check.client.trusted:
        return Reply(530, "5.7.0", f"Authentication required to send as {check.sender}")
    return None


def authenticated_or_trusted(check: RecipientCheck) -> Verdict | None:
    client = check.client
    return ACCEPT if client.trusted or (client.login is not None and client.authenticated_relay) else None


def local_recipient(check: RecipientCheck) -> Verdict | None:
    return ACCEPT if check.local else None


def gateway_loop(check: RecipientCheck) -> Reply | None:
    if check.relay_domain and check.from_primary:
        return Reply(554, "5.4.6", f"<{check.recipient}>: routing loop: this server hands that domain's mail "
                                   "to your address")
    return None


def relay_domain(check: RecipientCheck) -> Verdict | None:
    return ACCEPT if check.relay_domain else None


DEFAULT_SENDER_RULES: tuple[SenderRule, ...] = (blocked_sender, sender_requires_auth)
DEFAULT_RECIPIENT_RULES: tuple[RecipientRule, ...] = (gateway_loop, authenticated_or_trusted, local_recipient,
                                                      relay_domain)


class Policy:
    def __init__(self, relay_networks: Sequence[str],
                 sender_rules: Sequence[SenderRule] = DEFAULT_SENDER_RULES,
                 recipient_rules: Sequence[RecipientRule] = DEFAULT_RECIPIENT_RULES) -> None:
        try:
            self.networks = [net for spec in relay_networks for net in parse_network(spec)]
        except ValueError as exc:
            raise ConfigError(f"configuration key 'smtp.relay_networks': {exc}") from None
        self.sender_rules = tuple(sender_rules)
        self.recipient_rules = tuple(recipient_rules)

    def trusts(self, ip: str, lists: Snapshot = EMPTY) -> bool:
        """Whether a client address relays without AUTH whatever the `relay` setting: the relay
        networks, the SMTP IP whitelist and the SMTP authentication bypass (`lists`)."""
        return address_in(ip, self.networks) or lists.relays(ip)

    def client(self, ip: str, login: str | None, lists: Snapshot = EMPTY, authenticated_relay: bool = True) -> Client:
        """The client at `ip` as the rules see it, with the server's address lists as of `lists`."""
        return Client(ip, login, self.trusts(ip, lists), lists.smtp_whitelisted(ip), authenticated_relay)

    def check_sender(self, check: SenderCheck) -> Reply | None:
        """None when MAIL FROM may go ahead, else the refusal to answer."""
        verdict = _first(self.sender_rules, check)
        return verdict if isinstance(verdict, Reply) else None

    def check_recipient(self, check: RecipientCheck) -> Reply | None:
        """None when RCPT TO may go ahead (as far as relaying goes), else the refusal to answer."""
        verdict = _first(self.recipient_rules, check)
        if verdict is None:
            return RELAY_DENIED
        return verdict if isinstance(verdict, Reply) else None


def _first(rules: Sequence[Callable[[object], Verdict | Reply | None]], check: object) -> Verdict | Reply | None:
    for rule in rules:
        verdict = rule(check)
        if verdict is not None:
            return verdict
    return None
