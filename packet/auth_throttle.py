"""Failed API key attempts per client address: a budget per window, then 429 for that address.

Only failures cost anything. A failed attempt (no key, a malformed, unknown or revoked key)
increments the address's counter for the current clock-aligned window in the limit storage
(``memory://`` in-process, or Redis shared by every worker and instance). The attempt that
finds the counter over ``threshold`` is answered 429 instead of 401. The worker that sees the
counter reach the threshold also remembers the address until the window ends and refuses it
before the key lookup, whatever the key — so the check every request pays is a test of an
empty set, and a set lookup while some address is blocked; it never calls the storage.

The client address is ``REMOTE_ADDR``, or, when that peer is a trusted proxy, the nearest
address in ``X-Forwarded-For`` that is not one (:func:`client_address`). No Flask here: the
WSGI environ comes in as a mapping.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .addresses import IPNetwork
from .counters import CounterStorage
from .errors import RateLimitExceeded
from .limits import StorageGuard, retry_headers

log = logging.getLogger("packet.auth")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_BLOCKED = 10_000  # addresses one worker remembers per window (~1 MB at most)


def _parse(text: str) -> IPAddress | None:
    """An address as proxies write it, IPv4-mapped IPv6 as IPv4; None when it is not one."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in trusted)


def client_address(
    remote_addr: str, forwarded_for: str | None, trusted: Sequence[IPNetwork]
) -> str:
    """The address failures are counted against.

    The peer itself unless it is a trusted proxy; then ``X-Forwarded-For`` is read from the
    right (each proxy appends the address it saw), and the first entry that is not a trusted
    proxy is the client. Everything left of it was written by the client and is ignored. A
    malformed entry ends the walk: the last trusted hop is then the address used, never a value
    the client could choose.
    """
    if not trusted or not forwarded_for:
        return remote_addr
    hop = _parse(remote_addr)
    if hop is None or not _trusted(hop, trusted):
        return remote_addr
    for entry in reversed(forwarded_for.split(",")):
        address = _parse(entry)
        if address is None:
            break
        if not _trusted(address, trusted):
            return str(address)
        hop = address
    return str(hop)


class AuthThrottle:
    """The failure budget of each client address, counted in the limit storage."""

    def __init__(
        self,
        storage: CounterStorage,
        guard: StorageGuard,
        *,
        threshold: int,
        window: int,
        prefix: str,
        trusted: Sequence[IPNetwork] = (),
        clock: Callable[[], float] = time.time,
        max_blocked: int = MAX_BLOCKED,
    ) -> None:
        self.storage = storage
        self.guard = guard
        self.threshold = threshold
        self.window = window
        self.prefix = prefix
        self.trusted = tuple(trusted)
        self.clock = clock
        self.max_blocked = max_blocked
        self._blocked: set[str] = set()  # addresses over budget in window ``_blocked_start``
        self._blocked_start = 0

    def address(self, environ: Mapping[str, Any]) -> str:
        """The client address of a WSGI request."""
        return client_address(
            environ.get("REMOTE_ADDR") or "", environ.get("HTTP_X_FORWARDED_FOR"), self.trusted
        )

    def check(self, environ: Mapping[str, Any]) -> None:
        """429 if this worker knows the request's address is over budget; no storage call."""
        if not self._blocked:
            return
        now = self.clock()
        start = self._start(now)
        if start != self._blocked_start:  # the window they were blocked in has ended
            self._blocked.clear()
            return
        if self.address(environ) in self._blocked:
            raise self._refusal(start + self.window - now)

    def failed(self, environ: Mapping[str, Any]) -> None:
        """Count a failed attempt: 429 once over budget (the caller raises its 401 otherwise).

        With the storage unreachable this follows the limits' policy: no throttling when it
        fails open, 503 when it fails closed.
        """
        if not self.threshold:
            return
        if not self.guard.available():
            self.guard.unavailable()
            return
        address = self.address(environ)
        now = self.clock()
        start = self._start(now)
        try:
            count = self.storage.incr(f"{self.prefix}/authfail/{address}/{start}", self.window + 5)
        except Exception as exc:  # noqa: BLE001 - any storage failure follows the policy
            self.guard.failed(exc)
            self.guard.unavailable()
            return
        if count >= self.threshold:
            self._block(address, start)
        if count > self.threshold:
            raise self._refusal(start + self.window - now)

    def _start(self, now: float) -> int:
        return int(now // self.window) * self.window

    def _block(self, address: str, start: int) -> None:
        if start != self._blocked_start:
            self._blocked.clear()
            self._blocked_start = start
        if address not in self._blocked and len(self._blocked) < self.max_blocked:
            self._blocked.add(address)
            log.info("auth failures: %s refused until Unix time %d", address, start + self.window)

    def _refusal(self, wait: float) -> RateLimitExceeded:
        return RateLimitExceeded(
            f"Too many failed API key attempts from your address: limit {self.threshold} per "
            f"{self.window}s. Every request from it is refused for {math.ceil(wait)}s, "
            "whatever the key.",
            headers=retry_headers(wait),
        )
