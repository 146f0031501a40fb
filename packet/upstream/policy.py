"""Which hosts and addresses an endpoint URL may point at.

Account owners choose their endpoints' URLs, and whoever holds a key sees what the endpoint
answers (``/v1/models``, proxied requests): an endpoint on the cloud metadata service or an
internal port would hand its answers to the key holder. One :class:`EndpointPolicy` per worker,
built from ``PACKET_ENDPOINT_ALLOW`` / ``PACKET_ENDPOINT_DENY``, is asked when an endpoint is
added (the URL's host, resolved) and by every new upstream connection (the addresses it is
about to connect to; see :mod:`packet.upstream.connection`), so DNS rebinding gains nothing.

The rules, in order:

1. an explicit ``DENY`` entry (network or hostname) always wins;
2. the built-in denials (link-local and cloud metadata addresses and names, unspecified,
   multicast, broadcast) hold unless ``ALLOW`` names an address or network *inside* the denied
   range (``169.254.10.5``), or the exact metadata hostname: a broad ``0.0.0.0/0`` never opens
   the metadata service;
3. when ``ALLOW`` is not empty, a host is allowed only if its name matches an ``ALLOW``
   hostname, or every address it resolves to is in an ``ALLOW`` network.

Loopback and private ranges are allowed by default (the simulated vLLM runs on 127.0.0.1);
``PACKET_ENDPOINT_DENY=127.0.0.0/8,::1`` closes them. IPv4-mapped IPv6 addresses are checked as
the IPv4 address they carry; the loose IPv4 spellings C's ``inet_aton`` accepts (``2130706433``,
``0x7f000001``, ``0251.0376.0251.0376``) are read as the address they mean.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from ..addresses import AddressRules, IPNetwork, loose_ipv4
from .errors import Blocked

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

_net = ipaddress.ip_network
DEFAULT_DENY = (
    (_net("169.254.0.0/16"), "link-local, where cloud metadata services answer"),
    (_net("fe80::/10"), "link-local"),
    (_net("100.100.100.200/32"), "a cloud metadata address (Alibaba Cloud)"),
    (_net("168.63.129.16/32"), "a cloud host address (Azure WireServer)"),
    (_net("fd00:ec2::254/128"), "a cloud metadata address (AWS IPv6)"),
    (_net("fd20:ce::254/128"), "a cloud metadata address (Google Cloud IPv6)"),
    (_net("0.0.0.0/8"), "unspecified (Linux connects 0.0.0.0 to the local machine)"),
    (_net("::/128"), "unspecified"),
    (_net("224.0.0.0/4"), "multicast"),
    (_net("ff00::/8"), "multicast"),
    (_net("255.255.255.255/32"), "broadcast"),
)
DEFAULT_DENY_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.com",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
        "metadata.platformequinix.com",
    }
)


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to for a TCP connection (cooperative under gevent)."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in found))


def normalise_host(host: str) -> str:
    """A URL host as rules compare it: lower case, no brackets, no trailing dot."""
    return host.strip("[]").rstrip(".").lower()


def parse_address(host: str) -> IPAddress | None:
    """The address ``host`` spells (canonical or loose IPv4), or None for a name."""
    host = normalise_host(host)
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if loose_ipv4(host):
        return ipaddress.IPv4Address(socket.inet_aton(host))
    return None


def _subnet_of(net: IPNetwork, other: IPNetwork) -> bool:
    """``net`` lies inside ``other`` (never across IP versions)."""
    if isinstance(net, ipaddress.IPv4Network) and isinstance(other, ipaddress.IPv4Network):
        return net.subnet_of(other)
    if isinstance(net, ipaddress.IPv6Network) and isinstance(other, ipaddress.IPv6Network):
        return net.subnet_of(other)
    return False


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class EndpointPolicy:
    """The allow/deny decision for a host and the addresses it resolves to."""

    def __init__(
        self,
        allow: AddressRules | None = None,
        deny: AddressRules | None = None,
        *,
        resolver: Resolver = resolve,
    ) -> None:
        self.allow = allow or AddressRules()
        self.deny = deny or AddressRules()
        self.resolver = resolver
        # Per built-in denial, the ALLOW networks inside it (the only ones that lift it).
        self._defaults = [(net, why, self._inside(net)) for net, why in DEFAULT_DENY]

    def addresses(self, host: str, port: int) -> list[str]:
        """The checked addresses to connect to for ``host``: resolved, every one allowed.

        Raises :class:`Blocked` when any is refused (a name that resolves to one good and one
        bad address is refused whole), and the resolver's OSError when the name does not
        resolve.
        """
        literal = parse_address(host)
        if literal is None:
            self._check_name(normalise_host(host))  # a denied name is not even looked up
            found = self.resolver(host, port)
        else:
            found = [str(literal)]
        self.check(host, found)
        return found

    def check(self, host: str, addresses: Iterable[str]) -> None:
        """Raise :class:`Blocked`, naming the rule, unless ``host`` at ``addresses`` is allowed."""
        name = normalise_host(host)
        named = parse_address(name) is None
        if named:
            self._check_name(name)
        name_allowed = named and self._matches(self.allow, name)
        for text in addresses:
            self._check_address(_unmapped(ipaddress.ip_address(text)), name_allowed)

    def check_url(self, url: str) -> list[str]:
        """The add-time check of an endpoint's base URL: the addresses its host resolves to
        now (empty when the name does not resolve: it is accepted, and checked again on every
        new connection), or :class:`Blocked`."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            return self.addresses(host, port)
        except OSError:
            self.check(host, ())
            return []

    def _check_name(self, name: str) -> None:
        if self._matches(self.deny, name):
            raise Blocked(f"host {name} is denied by PACKET_ENDPOINT_DENY")
        if name in DEFAULT_DENY_HOSTS and name not in self.allow.hosts:
            raise Blocked(f"host {name} is a cloud metadata service name (denied by default)")

    def _check_address(self, address: IPAddress, name_allowed: bool) -> None:
        if any(address in net for net in self.deny.networks):
            raise Blocked(f"address {address} is denied by PACKET_ENDPOINT_DENY")
        for net, why, lifted_by in self._defaults:
            if address in net and not any(address in a for a in lifted_by):
                raise Blocked(f"address {address} is {why} (denied by default)")
        if self.allow and not name_allowed and not any(address in a for a in self.allow.networks):
            raise Blocked(f"address {address} is not in PACKET_ENDPOINT_ALLOW")

    def _inside(self, denied: IPNetwork) -> list[IPNetwork]:
        """The ALLOW networks that lie inside ``denied``."""
        return [net for net in self.allow.networks if _subnet_of(net, denied)]

    @staticmethod
    def _matches(rules: AddressRules, name: str) -> bool:
        return name in rules.hosts or any(name.endswith(s) for s in rules.suffixes)
