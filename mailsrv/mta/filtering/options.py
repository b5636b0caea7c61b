"""The content filters' options as SMTP reads them: kept with the directory lookups under the
directory generation the transaction's `begin` read (mailsrv.mta.recipients.Resolver), so a message
costs no query for them until an option changes (server_settings is watched by the generation)."""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection

from mailsrv.directory.content_filters import read_antispam, read_antivirus
from mailsrv.mta.recipients import MISS, Resolver


class FilterOptions:
    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver

    async def _get(self, name: str, read: Callable[[Connection], dict[str, Any]]) -> Mapping[str, Any]:
        hit = self.resolver.cached("filter-options", name)
        if hit is MISS:
            hit = await asyncio.to_thread(self.resolver.remember, ("filter-options", name), read)
        return hit  # type: ignore[return-value]

    async def antispam(self) -> Mapping[str, Any]:
        return await self._get("antispam", read_antispam)

    async def antivirus(self) -> Mapping[str, Any]:
        return await self._get("antivirus", read_antivirus)
