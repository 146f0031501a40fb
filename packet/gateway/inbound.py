"""A request as the pipeline sees it, whichever door it came in by."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from marshmallow import Schema

from ..auth import Principal
from ..limits import TokenReservation


@dataclass(frozen=True)
class Route:
    """One proxied route: its name in rows and metrics, the upstream path, the body schema."""

    name: str
    upstream_path: str
    schema: Schema


@dataclass
class Inbound:
    """Who asks, what (the raw body), its id and start time; the pipeline fills in what
    admission counted, so the caller can answer with the rate-limit headers."""

    principal: Principal
    route: Route
    raw: bytes
    request_id: str
    started: float
    counted: bool = False
    admission: TokenReservation | None = None
    metered: bool = False


@dataclass
class Answer:
    """What to send back: a status, a body (bytes, or chunks as they come), its type."""

    status: int
    body: bytes | Iterable[bytes]
    mimetype: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
