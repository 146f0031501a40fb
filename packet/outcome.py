"""What one proxied request came to, as the pipeline learns it, for the log line and metrics.

The pipeline knows nothing of Flask: it fills an :class:`Outcome` (carried by its ``Inbound``)
and the Flask side (:mod:`packet.observability`) reads it when the response is closed — after
the last byte of a stream — to write the one log line and the metrics of the request.
Times are ``time.perf_counter()`` values.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Outcome:
    """``sent``: the first upstream attempt began; ``answered``: the upstream's headers came;
    ``received``: its whole answer was read (for a stream: the relay ended); ``first_token``:
    the first event (a stream) or the answer (otherwise)."""

    model: str | None = None
    endpoint: str | None = None
    status: int | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stream: bool = False
    sent: float | None = None
    answered: float | None = None
    received: float | None = None
    first_token: float | None = None
    disconnected: bool = False
    cache: str | None = None
    batch: str | None = None

    def upstream_seconds(self) -> float:
        """Time spent waiting on the upstream so far (0 when it was never asked)."""
        if self.sent is None:
            return 0.0
        end = self.received or self.answered
        return max(0.0, end - self.sent) if end is not None else 0.0
