"""GET /health: the gateway's own readiness, and with a key the caller's endpoints too."""

import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, request
from flask.typing import ResponseReturnValue

from .. import store
from ..auth import authenticate
from ..extensions import limiter
from ..gateway.targets import endpoint_rows
from ..runtime import runtime
from ..upstream.discovery import HEALTHY

bp = Blueprint("health", __name__)


def _check(probe: Callable[[], object]) -> str:
    try:
        ok = probe()
    except Exception:  # noqa: BLE001 - health reports, it never raises
        return "unavailable"
    return "ok" if ok is not False else "unavailable"


@bp.get("/health")
def health() -> ResponseReturnValue:
    """200 when the database and limit storage answer (and, with a key, an endpoint is ready)."""
    rt = runtime()
    body: dict[str, Any] = {
        "status": "ok",
        "database": _check(store.ping),
        "limit_storage": _check(limiter.storage.check),
    }
    healthy = body["database"] == "ok" and body["limit_storage"] == "ok"
    if request.headers.get("Authorization"):
        principal = authenticate(rt.keys, rt.auth_throttle)
        triples = endpoint_rows(rt.settings, principal)
        states = rt.discovery.states(triples)
        now = time.monotonic()
        # Labels come from the caller's own list: a shared-pool URL is never shown.
        body["endpoints"] = [
            {
                "endpoint": label,
                "status": "cooling_off" if s.cooling_off(now) else s.status,
                "models": sorted(s.models) if s.status == HEALTHY else [],
                "checked_seconds_ago": round(now - s.checked_at, 1) if s.checked_at else None,
                "inflight": s.inflight,
            }
            for (_, _, label, _), s in zip(triples, states, strict=True)
        ]
        ready = any(s.ready(now) for s in states)
        body["ready"] = ready
        healthy = healthy and ready
    body["status"] = "ok" if healthy else "unavailable"
    return body, 200 if healthy else 503
