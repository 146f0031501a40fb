"""Bearer key → account, with a short per-worker cache so the hot path skips the database.

Failed attempts are counted per client address and throttled by :mod:`packet.auth_throttle`.
Revocation, tier and balance changes are seen by every worker within ``PACKET_AUTH_CACHE_TTL``
seconds (5 by default). The balance check that matters for money is not this snapshot but the
atomic reservation in :mod:`packet.metering`. While the database is unreachable a key seen in
the last ``PACKET_AUTH_STALE_SECONDS`` keeps its last known principal (nobody can revoke it
meanwhile either); money stays safe because reservations still need the database or a lease.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from flask import Flask, request

from . import keys, store, tracing
from .auth_throttle import AuthThrottle
from .errors import InvalidAPIKey
from .exchange import current
from .key_controls import KeyControls, check_expiry
from .protocol import messages

_NEGATIVE_TTL = 2.0
_MAX_ENTRIES = 50_000


@dataclass(frozen=True)
class Principal:
    """What a request knows about its caller, snapshotted from the database."""

    key_id: int
    key_prefix: str
    account_id: int
    account_name: str
    tier: str
    balance_micros: int
    default_model: str | None
    endpoints: tuple[store.EndpointRow, ...]
    controls: KeyControls | None = None  # the key's own limits (None: it has none)
    cache_default: bool = False  # the response cache is on unless a request says otherwise


class KeyCache:
    """Digest → principal (or ``None`` for unknown/revoked) with an expiry per entry."""

    def __init__(self, ttl: float, stale: float = 0.0) -> None:
        self.ttl = ttl
        self.stale = stale
        self._entries: dict[str, tuple[float, Principal | None]] = {}
        self._touched: dict[int, float] = {}

    def lookup(self, key: str) -> Principal | None:
        """The principal for ``key``, loading it from the database when not fresh."""
        digest = keys.digest(key)
        now = time.monotonic()
        entry = self._entries.get(digest)
        if entry is not None and entry[0] > now:
            principal = entry[1]
        else:
            try:
                principal = _load(digest, keys.display_prefix(key))
            except Exception as exc:
                if entry is None or entry[0] + self.stale <= now or not store.is_outage(exc):
                    raise
                return self._touch(entry[1])
            if len(self._entries) >= _MAX_ENTRIES:
                self._entries.clear()
            ttl = self.ttl if principal is not None else min(self.ttl, _NEGATIVE_TTL)
            self._entries[digest] = (now + ttl, principal)
        return self._touch(principal)

    def _touch(self, principal: Principal | None) -> Principal | None:
        if principal is not None:
            self._touched[principal.key_id] = time.time()
        return principal

    def invalidate(self) -> None:
        """Forget every cached principal (admin changes in this process)."""
        self._entries.clear()

    def drain_touched(self) -> dict[int, float]:
        """Key ids used since the last call, with their last use (for ``last_used_at``)."""
        touched, self._touched = self._touched, {}
        return touched


def _load(digest: str, prefix: str) -> Principal | None:
    row = store.find_active_key(digest)
    if row is None:
        return None
    return Principal(
        key_id=row.key_id,
        key_prefix=prefix,
        account_id=row.account_id,
        account_name=row.account_name,
        tier=row.tier,
        balance_micros=row.balance_micros,
        default_model=row.default_model,
        endpoints=store.account_endpoints(row.account_id),
        controls=row.controls,
        cache_default=row.cache_default,
    )


def bearer_token() -> str | None:
    """The token from ``Authorization: Bearer …`` (None without one); never from the query
    string. API keys and the admin token are both read here."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    token = credentials.strip()
    return token if scheme.lower() == "bearer" and token else None


def bearer_key() -> str:
    """The caller's API key; 401 without one. On the Anthropic routes, ``x-api-key`` (what
    the Anthropic SDK sends) is read too."""
    key = bearer_token()
    if key is None and request.path.startswith(messages.PATHS):
        key = request.headers.get("x-api-key", "").strip() or None
    if key is None:
        raise InvalidAPIKey(
            "Missing API key. Send 'Authorization: Bearer pk_live_...' with your Packet.ai key."
        )
    return key


def authenticate(cache: KeyCache, throttle: AuthThrottle) -> Principal:
    """Resolve the request's key to a principal, or raise 401 (429 for an address that has
    spent its failure budget, checked before the key is looked at)."""
    throttle.check(request.environ)
    try:
        return _principal(cache)
    except InvalidAPIKey:
        throttle.failed(request.environ)
        raise


def _principal(cache: KeyCache) -> Principal:
    key = bearer_key()
    if not keys.is_well_formed(key):
        raise InvalidAPIKey("Malformed API key: Packet.ai keys start with 'pk_live_'.")
    principal = cache.lookup(key)
    if principal is None:
        raise InvalidAPIKey(
            f"Incorrect API key provided: {keys.display_prefix(key)}…. It does not exist or "
            "has been revoked."
        )
    if principal.controls is not None:
        check_expiry(principal.controls, time.time(), principal.key_prefix)
    return principal


def init_app(app: Flask, cache: KeyCache, throttle: AuthThrottle) -> None:
    """Authenticate every /v1 request before anything else (the limiter keys on the account)."""

    @app.before_request
    def _authenticate() -> None:
        if request.blueprint in ("v1", "vllm"):
            with tracing.span("auth"):
                current().principal = authenticate(cache, throttle)
