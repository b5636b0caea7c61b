"""Greylisting at RCPT (the triplets and filters: mailsrv.directory.greylisting): a triplet not
yet passed gets 451 4.7.1. Never greylisted: authenticated, trusted and SMTP-whitelisted clients, a
client a greylisting filter covers, an unknown recipient (it gets its 550), a local recipient
whose domain has `bypassgreylisting`, a client on an IP whitelist entry with `disableGreylisting`.

Passed triplets are remembered per process until their pass runs out, so the mail of known
correspondents costs no read; a first message or a retry is one transaction in the store.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging

from mailsrv.core.clock import Clock
from mailsrv.directory.address_lists import GREYLISTING
from mailsrv.directory.greylisting import Greylisting, network_of
from mailsrv.mta.filtering.pipeline import Check
from mailsrv.mta.policy import Client, Reply
from mailsrv.mta.recipients import Deliver, Resolver

log = logging.getLogger(__name__)

_PASSED_CACHE = 100_000  # triplets remembered per process; forgotten all at once when full


class GreylistingCheck(Check):
    name = "greylisting"

    def __init__(self, greylisting: Greylisting, resolver: Resolver, clock: Clock) -> None:
        self.greylisting = greylisting
        self.resolver = resolver  # its generation (read by the intake at MAIL) keys the filters
        self.clock = clock
        self._passed: dict[tuple[str, str, str], dt.datetime] = {}

    async def rcpt(self, client: Client, sender: str, recipient: str, resolution: Deliver | None) -> Reply | None:
        if not self.greylisting.enabled or resolution is None or client.login is not None \
                or client.trusted or client.whitelisted:
            return None
        if resolution.domain is not None and resolution.domain.bypass_greylisting:
            return None
        generation = self.resolver.generation
        if generation is not None and generation != self.greylisting.filters_generation:
            await asyncio.to_thread(self.greylisting.filters_at, generation)
        if self.greylisting.filtered(client.ip) or self.resolver.lists.snapshot().whitelisted(GREYLISTING, client.ip):
            return None
        now = self.clock.now()
        key = (network_of(client.ip), sender.lower(), recipient.lower())
        passed = self._passed.get(key)
        if passed is not None and passed > now:
            return None
        passed = await asyncio.to_thread(self.greylisting.judge, client.ip, sender, recipient, now)
        if passed is None:
            log.info("greylisting: deferred %s from %s <%s> to <%s>", key[0], client.ip, sender, recipient)
            return Reply(451, "4.7.1", f"<{recipient}>: greylisted, please try again later")
        if len(self._passed) >= _PASSED_CACHE:
            self._passed.clear()
        self._passed[key] = passed
        log.info("greylisting: passed %s <%s> to <%s>", key[0], sender, recipient)
        return None
