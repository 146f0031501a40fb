"""The simulator's WSGI app: routing, the open and keyed paths, and the per-request records."""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from packet.devserver.completions import complete
from packet.devserver.protocol import SSE_HEADERS, ApiError, model_card, respond
from packet.devserver.request import Generation, parse, read_json
from packet.devserver.server import break_connection
from packet.devserver.settings import Settings
from packet.devserver.streaming import Stream, events

COMPLETIONS = {"/v1/chat/completions": True, "/v1/completions": False}  # path → chat


def _sleep(seconds: float) -> None:
    time.sleep(seconds)  # looked up per call: gevent's once main() has monkey-patched


class Simulator:
    """The simulated server's state (records, probe counts) and its WSGI entry point.

    ``sleep`` paces prefill and tokens; tests pass one that does not wait.
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

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        try:
            return self._route(environ, start_response)
        except ApiError as error:
            return respond(start_response, error.status, error.body())

    def _route(self, environ: dict[str, Any], start_response: Any) -> Any:
        path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
        loading = time.monotonic() < self.ready_at
        if path == "/health":
            self.probes["health"] += 1
            start_response("503 Service Unavailable" if loading else "200 OK", [])
            return [b""]
        if path == "/_sim/requests":
            return respond(start_response, 200, {"data": list(self.requests)})
        if path == "/_sim/probes":
            return respond(start_response, 200, self.probes)
        if path == "/_sim/reset" and method == "POST":
            self.requests.clear()
            return respond(start_response, 200, {"ok": True})
        if not path.startswith("/v1/"):
            raise ApiError(404, "Not Found", "NotFoundError")
        key = self.settings.api_key
        if key and environ.get("HTTP_AUTHORIZATION") != f"Bearer {key}":
            return respond(start_response, 401, {"error": "Unauthorized"})  # vLLM's own shape
        if loading:
            raise ApiError(503, "The model is still loading.", "ServiceUnavailableError")
        if path == "/v1/models" and method == "GET":
            return self._models(start_response)
        if path in COMPLETIONS and method == "POST":
            return self._complete(environ, start_response, chat=COMPLETIONS[path])
        raise ApiError(404, f"Not Found: {method} {path}", "NotFoundError")

    def _models(self, start_response: Any) -> list[bytes]:
        self.probes["models"] += 1
        cards = [
            model_card(m, self.started, self.settings.max_model_len) for m in self.settings.models
        ]
        return respond(start_response, 200, {"object": "list", "data": cards})

    def _complete(self, environ: dict[str, Any], start_response: Any, *, chat: bool) -> Any:
        if self.settings.fail_status:
            raise ApiError(
                self.settings.fail_status, "Simulated failure.", "ServiceUnavailableError"
            )
        body = read_json(environ)
        gen = parse(body, chat=chat, settings=self.settings)
        record = self._record(environ, body, gen)
        client = environ.get("sim.socket")
        if gen.break_how:
            return break_connection(client, gen.break_how)
        if not gen.stream:
            return respond(start_response, 200, complete(gen, record, self.sleep))
        write = start_response("200 OK", SSE_HEADERS)
        write(b"")  # headers now, like vLLM (Starlette): the silence of prefill comes after them
        return events(Stream(gen, record, client, self.sleep))

    def _record(
        self, environ: dict[str, Any], body: dict[str, Any], gen: Generation
    ) -> dict[str, Any]:
        """What the request asked for; the answer fills in the counts as it goes."""
        record = {
            "seq": next(self.ids),
            "request_id": environ.get("HTTP_X_REQUEST_ID"),
            "authorization": environ.get("HTTP_AUTHORIZATION"),
            "path": environ["PATH_INFO"],
            "model": gen.model,
            "stream": gen.stream,
            "stream_options": body.get("stream_options") or {},
            "body": body,
            "prompt_tokens": gen.prompt_tokens,
            "completion_tokens": 0,
            "finished": False,
            "disconnected": False,
            "disconnected_at": None,
        }
        self.requests.append(record)
        return record
