"""The simulator's WSGI app: routing, the open and keyed paths, and the per-request records.

Each API module (``completions``, ``embeddings``, ...) lists its own ``ROUTES``; the router
checks the key, the loading state and the failure switch once for all of them.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import Any

from packet.devserver import (
    audio,
    completions,
    embeddings,
    messages,
    responses,
    scoring,
    tokenizer,
)
from packet.devserver.protocol import ApiError, model_card, respond
from packet.devserver.settings import Settings

Handler = Callable[["Simulator", dict[str, Any], Any], Iterable[bytes]]
GENERATING = ("/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages")
STORED_RESPONSES = 1000  # the Responses API's store, per process, oldest dropped first


def _sleep(seconds: float) -> None:
    time.sleep(seconds)  # looked up per call: gevent's once main() has monkey-patched


class Simulator:
    """The simulated server's state (records, probe counts, stored responses) and its WSGI
    entry point. ``sleep`` paces prefill and tokens; tests pass one that does not wait.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        history: int = 20000,
        sleep: Callable[[float], None] = _sleep,
    ) -> None:
        self.settings = settings
        self.sleep = sleep
        self.ready_at = time.monotonic() + settings.loading_seconds
        self.started = int(time.time())
        self.requests: deque[dict[str, Any]] = deque(maxlen=history)
        self.ids = itertools.count(1)
        self.probes = {"health": 0, "models": 0}
        self.responses: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.routes: dict[tuple[str, str], Handler] = {
            ("GET", "/v1/models"): Simulator.models,
            **completions.ROUTES,
            **embeddings.ROUTES,
            **responses.ROUTES,
            **messages.ROUTES,
            **scoring.ROUTES,
            **tokenizer.ROUTES,
            **audio.ROUTES,
        }

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        try:
            return self._route(environ, start_response)
        except ApiError as error:
            anthropic = environ.get("PATH_INFO", "").startswith(messages.PREFIX)
            body = error.anthropic_body() if anthropic else error.body()
            return respond(start_response, error.status, body)

    def _route(self, environ: dict[str, Any], start_response: Any) -> Any:
        path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
        loading = time.monotonic() < self.ready_at
        if path == "/health":
            self.probes["health"] += 1  # asked, even of a server that has no such route
        if path == "/health" and not self.settings.no_health:
            start_response("503 Service Unavailable" if loading else "200 OK", [])
            return [b""]
        if path == "/version" and not self.settings.no_health:  # vLLM's, open like /health
            return respond(start_response, 200, {"version": "simulated"})
        if path == "/_sim/requests":
            return respond(start_response, 200, {"data": list(self.requests)})
        if path == "/_sim/probes":
            return respond(start_response, 200, self.probes)
        if path == "/_sim/reset" and method == "POST":
            self.requests.clear()
            return respond(start_response, 200, {"ok": True})
        handler = self.routes.get((method, path)) or responses.follow_up(method, path)
        if handler is None and not path.startswith("/v1/"):
            raise ApiError(404, "Not Found", "NotFoundError")
        if not self._authorized(environ, path):
            if path.startswith(messages.PREFIX):
                raise ApiError(401, "Unauthorized")  # in Anthropic's envelope
            return respond(start_response, 401, {"error": "Unauthorized"})  # vLLM's own shape
        if loading:
            raise ApiError(503, "The model is still loading.", "ServiceUnavailableError")
        if handler is None:
            raise ApiError(404, f"Not Found: {method} {path}", "NotFoundError")
        if self.settings.fail_status and path in GENERATING:
            raise ApiError(
                self.settings.fail_status, "Simulated failure.", "ServiceUnavailableError"
            )
        return handler(self, environ, start_response)

    def _authorized(self, environ: dict[str, Any], path: str) -> bool:
        """``--api-key`` as a Bearer token; on Anthropic's path also as ``x-api-key``."""
        key = self.settings.api_key
        if not key or environ.get("HTTP_AUTHORIZATION") == f"Bearer {key}":
            return True
        return path.startswith(messages.PREFIX) and environ.get("HTTP_X_API_KEY") == key

    def models(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        """``GET /v1/models``: a discovery probe, counted."""
        self.probes["models"] += 1
        settings = self.settings
        cards = [
            model_card(m, self.started, settings.max_model_len, sparse=settings.sparse_cards)
            for m in settings.models
        ]
        return respond(start_response, 200, {"object": "list", "data": cards})

    def record(
        self,
        environ: dict[str, Any],
        body: Any,
        *,
        model: str | None,
        stream: bool = False,
        prompt_tokens: int = 0,
        finished: bool = False,
    ) -> dict[str, Any]:
        """What the request asked for; the answer fills in the counts as it goes."""
        record = {
            "seq": next(self.ids),
            "request_id": environ.get("HTTP_X_REQUEST_ID"),
            "authorization": environ.get("HTTP_AUTHORIZATION"),
            "traceparent": environ.get("HTTP_TRACEPARENT"),
            "path": environ["PATH_INFO"],
            "model": model,
            "stream": stream,
            "stream_options": (body.get("stream_options") if isinstance(body, dict) else None)
            or {},
            "body": body,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": 0,
            "finished": finished,
            "disconnected": False,
            "disconnected_at": None,
        }
        self.requests.append(record)
        return record

    def store(self, response_id: str, stored: dict[str, Any]) -> None:
        """Keep a response for ``previous_response_id`` and ``GET``, within the bound."""
        self.responses[response_id] = stored
        while len(self.responses) > STORED_RESPONSES:
            self.responses.popitem(last=False)
