"""The caller's endpoints and the model it named."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..auth import Principal
from ..config import Settings
from ..store import EndpointRow


def endpoint_rows(
    settings: Settings, principal: Principal
) -> list[tuple[str, str | None, str, str]]:
    """The caller's endpoints (url, upstream key, label, id), or the shared pool when it has
    none. The id names the endpoint in metrics, where its URL must not appear."""
    return endpoints_or_pool(settings, principal.endpoints)


def endpoints_or_pool(
    settings: Settings, endpoints: Sequence[EndpointRow]
) -> list[tuple[str, str | None, str, str]]:
    """:func:`endpoint_rows` for an account's stored endpoints."""
    if endpoints:
        return [(e.base_url, e.upstream_key, e.base_url, str(e.id)) for e in endpoints]
    return [
        (url, None, f"shared pool #{i + 1}", f"pool-{i + 1}")
        for i, url in enumerate(settings.upstreams)
    ]


def requested_model(body: dict[str, Any]) -> str | None:
    """The model the client named, or None for ``"auto"``/omitted."""
    model = body.get("model")
    return None if model in (None, "", "auto") else model
