"""The caller's endpoints and the model it named."""

from __future__ import annotations

from typing import Any

from ..auth import Principal
from ..config import Settings


def endpoint_triples(settings: Settings, principal: Principal) -> list[tuple[str, str | None, str]]:
    """The caller's endpoints (url, upstream key, label), or the shared pool when it has none."""
    if principal.endpoints:
        return [(e.base_url, e.upstream_key, e.base_url) for e in principal.endpoints]
    return [(url, None, f"shared pool #{i + 1}") for i, url in enumerate(settings.upstreams)]


def requested_model(body: dict[str, Any]) -> str | None:
    """The model the client named, or None for ``"auto"``/omitted."""
    model = body.get("model")
    return None if model in (None, "", "auto") else model
