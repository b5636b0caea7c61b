"""What an operation handler receives besides its contract parameters."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailsrv.server import MailServer


@dataclass(frozen=True)
class Call:
    server: "MailServer"
    # The address of the TCP peer, used for system-admin IP restrictions and brute-force counting.
    client_ip: str
