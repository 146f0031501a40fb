"""A request as the pipeline sees it, whichever door it came in by."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from marshmallow import Schema

from ..auth import Principal
from ..limits import TokenReservation
from ..outcome import Outcome
from ..protocol import Wire
from ..upload import Upload

if TYPE_CHECKING:
    from .cache import Lookup

OPENAI, ANTHROPIC = "openai", "anthropic"
# How a route stands to stored responses: it makes one, or it must go where one lives.
CREATES, FOLLOWS = "creates", "follows"


@dataclass(frozen=True)
class Route:
    """One proxied route: its name in usage rows and metrics, the upstream method and path
    (``{id}`` stands for the resource in the client's path), the body's schema (None: no
    body), its family's wire format and error envelope, its tie to stored responses, and
    whether its body is a multipart upload rather than JSON."""

    name: str
    upstream_path: str
    schema: Schema | None
    wire: Wire
    family: str = OPENAI
    method: str = "POST"
    affinity: str | None = None
    multipart: bool = False


@dataclass
class BatchTerms:
    """A batch line's terms: not counted against the real-time limits, no money held (the
    worker pays for it when it writes the result), priced at ``discount_ppm`` millionths;
    the call leaves its usage row here for the worker to write with the result."""

    batch_id: str
    discount_ppm: int
    usage: dict[str, Any] | None = None


@dataclass
class Inbound:
    """Who asks, what (the raw body or the spooled upload, the resource named in the path, the
    query string), its id and start time; the pipeline fills in what admission counted, so
    the caller can answer with the rate-limit headers."""

    principal: Principal
    route: Route
    raw: bytes
    request_id: str
    started: float
    resource: str | None = None
    query: bytes = b""
    upload: Upload | None = None
    counted: bool = False
    admission: TokenReservation | None = None
    metered: bool = False
    # The response cache: the request's X-Packet-Cache and Cache-Control headers (None: not
    # sent), and what the cache did (hit, miss, skip; None: not involved).
    cache: str | None = None
    cache_control: str | None = None
    cache_status: str | None = None
    cache_lookup: Lookup | None = None
    outcome: Outcome = field(default_factory=Outcome)
    batch: BatchTerms | None = None


@dataclass
class Answer:
    """What to send back: a status, a body (bytes, or chunks as they come), its type."""

    status: int
    body: bytes | Iterable[bytes]
    mimetype: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
