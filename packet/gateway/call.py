"""One admitted call, carried to its end: the journal entry, the settlement, the usage row."""

from __future__ import annotations

import time
from dataclasses import KW_ONLY, dataclass, field

from .. import usage
from ..auth import Principal
from ..journal import OpenCall
from ..limits import TokenReservation
from ..metering import Hold
from ..money import cost_micros, discounted
from ..outcome import Outcome
from ..protocol import Estimate, Wire
from ..runtime import Runtime
from ..upstream.discovery import Target
from .inbound import BatchTerms

NOTHING = usage.Usage(0, 0)


@dataclass
class Call:
    """Everything known about one proxied request, carried to its end."""

    rt: Runtime
    principal: Principal
    route: str
    request_id: str
    started: float
    target: Target
    stream: bool
    _: KW_ONLY
    hold: Hold
    tokens: TokenReservation | None
    estimate: Estimate
    wire: Wire
    journal: OpenCall | None = None
    outcome: Outcome = field(default_factory=Outcome)
    holds_endpoint: bool = False
    done: bool = False
    batch: BatchTerms | None = None

    def begin(self) -> None:
        """Note the call in the worker's journal, so a worker killed mid-call bills it (a
        batch line is not: its claim's lease is its journal, see packet.batch)."""
        if self.batch is not None:
            return
        self.journal = self.rt.meter.begin(
            {
                "request_id": self.request_id,
                "account_id": self.principal.account_id,
                "key_id": self.principal.key_id,
                "endpoint_url": self.target.state.label,
                "model": self.target.model,
                "route": self.route,
                "stream": self.stream,
            },
            self.hold,
        )

    def finish(
        self,
        status: int,
        used: usage.Usage = NOTHING,
        *,
        ttft: float | None = None,
        disconnected: bool = False,
    ) -> None:
        """Release the endpoint, settle tokens and money, queue the usage row. Once."""
        if self.done:
            return
        self.done = True
        if self.holds_endpoint:
            self.target.state.inflight -= 1
        model = self.target.model
        cost = cost_micros(self.rt.settings, model, used.prompt, used.completion)
        self.rt.limits.settle(self.tokens, used.total, cost)
        now = time.perf_counter()
        latency = now - self.started
        row = {
            "request_id": self.request_id,
            "account_id": self.principal.account_id,
            "key_id": self.principal.key_id,
            "endpoint_url": self.target.state.label,
            "model": model,
            "route": self.route,
            "stream": self.stream,
            "status": status,
            "prompt_tokens": used.prompt,
            "completion_tokens": used.completion,
            "total_tokens": used.total,
            "cost_micros": cost,
            "ttft_ms": None if ttft is None else int((ttft - self.started) * 1000),
            "latency_ms": int(latency * 1000),
            "client_disconnected": disconnected,
            "usage_source": used.source,
        }
        if self.batch is not None:  # the batch worker writes it with the line's result
            row["route"], row["batch_id"] = "batch", self.batch.batch_id
            row["cost_micros"] = discounted(cost, self.batch.discount_ppm)
            self.batch.usage = row
        else:
            self.rt.meter.record(row, self.hold, self.journal)
        outcome = self.outcome
        outcome.model, outcome.endpoint, outcome.status = model, self.target.state.ident, status
        outcome.prompt_tokens, outcome.completion_tokens = used.prompt, used.completion
        outcome.first_token, outcome.disconnected = ttft, disconnected
        if outcome.received is None and outcome.sent is not None:
            outcome.received = now
