"""Client network specifications (an address, a CIDR block, a `first-last` range) and matching."""
from __future__ import annotations

import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def ip_allowed(client_ip: str, networks: list[str]) -> bool:
    return address_in(client_ip, [net for spec in networks for net in parse_network(spec)])


def address_in(client_ip: str, networks: list[Network]) -> bool:
    try:
        addr = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    return any(addr in net for net in networks)


def parse_network(spec: str) -> list[Network]:
    """An address, a CIDR block, or a `first-last` range, as networks."""
    text = spec.strip()
    if "-" in text:
        first, last = (ipaddress.ip_address(part.strip()) for part in text.split("-", 1))
        if first.version != last.version or first > last:
            raise ValueError(f"'{spec}' is not an address range")
        return list(ipaddress.summarize_address_range(first, last))
    return [ipaddress.ip_network(text, strict=False)]
