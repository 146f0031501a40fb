"""Network addresses as an operator writes them: trusted proxies (addresses and CIDRs) and the
endpoint policy's rules (CIDRs, canonical addresses, hostnames, ``*.suffix`` wildcards)."""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_CIDR_LIKE = re.compile(r"^[0-9a-f.:\[\]]+/\d+$")
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


@dataclass(frozen=True)
class AddressRules:
    """``PACKET_ENDPOINT_ALLOW`` or ``_DENY``: networks, exact hostnames, ``*.suffix`` wildcards
    (kept as ``.suffix``). Hostnames are lower-case, without a trailing dot."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.networks or self.hosts or self.suffixes)


def networks(raw: str) -> tuple[IPNetwork, ...]:
    """Comma-separated addresses or CIDRs (``10.0.0.0/8``; host bits are ignored)."""
    found = []
    for text in filter(None, (part.strip() for part in raw.split(","))):
        try:
            found.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not an address or CIDR") from None
    return tuple(found)


def address_rules(raw: str) -> AddressRules:
    """Comma-separated CIDRs, addresses, hostnames and ``*.suffix`` wildcards.

    Addresses must be written canonically (``127.0.0.1``, not ``0x7f000001`` or ``127.1``):
    a rule the operator misreads is worse than a refused start.
    """
    networks: list[IPNetwork] = []
    hosts: set[str] = set()
    suffixes: list[str] = []
    for text in filter(None, (part.strip().lower() for part in raw.split(","))):
        try:
            networks.append(ipaddress.ip_network(text.strip("[]"), strict=False))
            continue
        except ValueError as exc:
            if _CIDR_LIKE.match(text):
                raise ValueError(f"{text!r} is not a valid CIDR: {exc}") from None
        host = text.rstrip(".")
        wildcard = host.startswith("*.")
        labels = (host[2:] if wildcard else host).split(".")
        if not all(_HOST_LABEL.match(label) for label in labels):
            raise ValueError(f"{text!r} is not a CIDR, an address or a hostname")
        if loose_ipv4(host):
            raise ValueError(f"{text!r} is not a canonical address (write a.b.c.d)")
        if wildcard:
            suffixes.append(host[1:])
        else:
            hosts.add(host)
    return AddressRules(tuple(networks), frozenset(hosts), tuple(suffixes))


def loose_ipv4(text: str) -> bool:
    """True for what C's inet_aton (and so getaddrinfo) reads as an IPv4 address although it
    is not dotted-quad decimal: ``2130706433``, ``0x7f000001``, ``0251.0376.0251.0376``."""
    try:
        socket.inet_aton(text)
    except OSError:
        return False
    return True
