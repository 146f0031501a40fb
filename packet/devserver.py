"""A SIMULATED vLLM OpenAI server, for `make run` without a GPU, the tests and the benchmark.

It speaks vLLM's wire formats (models, health, chat and text completions, SSE with usage and
``continuous_usage_stats``, vLLM's error shapes) and generates deterministic text, one word per
token, with a configurable delay. It records what it saw and sent per request under
``/_sim/requests`` so tests can compare the gateway's metering with the truth, and counts the
``/health`` and ``/v1/models`` calls (discovery probes) under ``/_sim/probes``.

    python -m packet.devserver --port 8001 --model simulated/demo --token-delay 0.02
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import select
import socket
import sys
import time
import uuid
from collections import deque
from collections.abc import Iterator
from typing import Any

import orjson

log = logging.getLogger("packet.devserver")

DEFAULT_MODEL = "simulated/vllm-demo"
WORDS = [
    "This",
    "reply",
    "comes",
    "from",
    "the",
    "simulated",
    "vLLM",
    "server",
    "that",
    "ships",
    "with",
    "Packet",
    "gateway",
    "for",
    "local",
    "development",
    "and",
    "tests",
    "so",
    "every",
    "endpoint",
    "can",
    "be",
    "tried",
    "without",
    "a",
    "GPU",
]
JSON = [("Content-Type", "application/json")]


class Simulator:
    """The simulated server's state and WSGI entry point."""

    def __init__(
        self,
        models: list[str],
        *,
        token_delay: float = 0.0,
        first_token_delay: float = 0.0,
        default_tokens: int = 16,
        max_model_len: int = 4096,
        api_key: str | None = None,
        loading_seconds: float = 0.0,
        fail_status: int | None = None,
        history: int = 20000,
    ) -> None:
        self.models = models
        self.token_delay = token_delay
        self.first_token_delay = first_token_delay
        self.default_tokens = default_tokens
        self.max_model_len = max_model_len
        self.api_key = api_key
        self.ready_at = time.monotonic() + loading_seconds
        self.fail_status = fail_status
        self.started = int(time.time())
        self.requests: deque[dict[str, Any]] = deque(maxlen=history)
        self.ids = itertools.count(1)
        self.probes = {"health": 0, "models": 0}

    # --- WSGI ---------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
        loading = time.monotonic() < self.ready_at
        if path == "/health":
            self.probes["health"] += 1
            start_response("503 Service Unavailable" if loading else "200 OK", [])
            return [b""]
        if path == "/_sim/requests":
            return self._json(start_response, 200, {"data": list(self.requests)})
        if path == "/_sim/probes":
            return self._json(start_response, 200, self.probes)
        if path == "/_sim/reset" and method == "POST":
            self.requests.clear()
            return self._json(start_response, 200, {"ok": True})
        if not path.startswith("/v1/"):
            return self._error(start_response, 404, "Not Found", "NotFoundError")
        if self.api_key and environ.get("HTTP_AUTHORIZATION") != f"Bearer {self.api_key}":
            return self._json(start_response, 401, {"error": "Unauthorized"})
        if loading:
            return self._error(
                start_response, 503, "The model is still loading.", "ServiceUnavailableError"
            )
        if path == "/v1/models" and method == "GET":
            self.probes["models"] += 1
            return self._json(
                start_response,
                200,
                {"object": "list", "data": [self._card(m) for m in self.models]},
            )
        if path in ("/v1/chat/completions", "/v1/completions") and method == "POST":
            if self.fail_status:
                return self._error(
                    start_response,
                    self.fail_status,
                    "Simulated failure.",
                    "ServiceUnavailableError",
                )
            return self._complete(environ, start_response, chat=path == "/v1/chat/completions")
        return self._error(start_response, 404, f"Not Found: {method} {path}", "NotFoundError")

    # --- helpers ------------------------------------------------------------------------------

    def _card(self, model: str) -> dict[str, Any]:
        return {
            "id": model,
            "object": "model",
            "created": self.started,
            "owned_by": "vllm",
            "root": model,
            "parent": None,
            "max_model_len": self.max_model_len,
            "permission": [
                {
                    "id": f"modelperm-{model}",
                    "object": "model_permission",
                    "created": self.started,
                    "allow_sampling": True,
                }
            ],
            "simulated": True,
        }

    @staticmethod
    def _json(start_response: Any, status: int, body: Any) -> list[bytes]:
        start_response(f"{status} {_REASONS.get(status, 'Error')}", JSON)
        return [orjson.dumps(body)]

    def _error(
        self, start_response: Any, status: int, message: str, kind: str, param: str | None = None
    ) -> list[bytes]:
        return self._json(
            start_response,
            status,
            {"error": {"message": message, "type": kind, "param": param, "code": status}},
        )

    def _complete(self, environ: dict[str, Any], start_response: Any, *, chat: bool) -> Any:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = orjson.loads(environ["wsgi.input"].read(length))
            assert isinstance(body, dict)
        except Exception:  # noqa: BLE001
            return self._error(start_response, 400, "Invalid JSON body.", "BadRequestError")
        model = body.get("model") or self.models[0]
        if model not in self.models:
            return self._error(
                start_response,
                404,
                f"The model `{model}` does not exist.",
                "NotFoundError",
                "model",
            )
        stream = body.get("stream") is True
        options = body.get("stream_options") or {}
        if options and not stream:
            return self._error(
                start_response,
                400,
                "Stream options can only be defined when `stream=True`.",
                "BadRequestError",
            )
        prompt = _prompt_tokens(body, chat)
        wanted = body.get("max_completion_tokens") or body.get("max_tokens") or self.default_tokens
        if prompt + wanted > self.max_model_len:
            return self._error(
                start_response,
                400,
                f"This model's maximum context length is {self.max_model_len} tokens. However, you "
                f"requested {prompt + wanted} tokens ({prompt} in the messages, {wanted} in the "
                "completion). Please reduce the length of the messages or completion.",
                "BadRequestError",
            )
        record = {
            "seq": next(self.ids),
            "request_id": environ.get("HTTP_X_REQUEST_ID"),
            "authorization": environ.get("HTTP_AUTHORIZATION"),
            "path": environ["PATH_INFO"],
            "model": model,
            "stream": stream,
            "stream_options": options,
            "body": body,
            "prompt_tokens": prompt,
            "completion_tokens": 0,
            "finished": False,
            "disconnected": False,
            "disconnected_at": None,
        }
        self.requests.append(record)
        broken = body.get("x_sim_break")
        if broken in ("close", "garbage"):
            return _break(environ.get("sim.socket"), broken)
        delay = float(body.get("x_sim_token_delay", self.token_delay))
        prefill = float(body.get("x_sim_first_token_delay", self.first_token_delay))
        fail_after = body.get("x_sim_fail_after")
        created = int(time.time())
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        if not stream:
            if prefill:
                time.sleep(prefill)
            if delay:
                time.sleep(delay * wanted)
            text = " ".join(_words(wanted))
            record["completion_tokens"], record["finished"] = wanted, True
            usage = body.get("x_sim_usage") or {
                "prompt_tokens": prompt,
                "total_tokens": prompt + wanted,
                "completion_tokens": wanted,
            }
            if chat:
                choice = {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "tool_calls": []},
                    "logprobs": None,
                    "finish_reason": "length",
                    "stop_reason": None,
                }
            else:
                choice = {
                    "index": 0,
                    "text": text,
                    "logprobs": None,
                    "finish_reason": "length",
                    "stop_reason": None,
                }
            return self._json(
                start_response,
                200,
                {
                    "id": rid,
                    "object": "chat.completion" if chat else "text_completion",
                    "created": created,
                    "model": model,
                    "choices": [choice],
                    "usage": usage,
                },
            )
        write = start_response(
            "200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")]
        )
        write(b"")  # headers now, like vLLM (Starlette): the silence of prefill comes after them
        return self._stream(
            record,
            rid,
            created,
            model,
            chat,
            wanted,
            prompt,
            options,
            delay,
            prefill,
            fail_after,
            environ.get("sim.socket"),
        )

    def _stream(
        self,
        record: dict[str, Any],
        rid: str,
        created: int,
        model: str,
        chat: bool,
        wanted: int,
        prompt: int,
        options: dict[str, Any],
        delay: float,
        prefill: float,
        fail_after: int | None,
        client: Any = None,
    ) -> Iterator[bytes]:
        include = bool(options.get("include_usage"))
        continuous = include and bool(options.get("continuous_usage_stats"))
        kind = "chat.completion.chunk" if chat else "text_completion"
        # Test knobs: the usage to report instead of the truth, a stall after N tokens.
        override = record["body"].get("x_sim_usage")
        stall_after = record["body"].get("x_sim_stall_after")

        def chunk(piece: str | None, finish: str | None, sent: int, role: bool = False) -> bytes:
            if chat:
                delta: dict[str, Any] = (
                    {"role": "assistant", "content": ""}
                    if role
                    else ({"content": piece} if piece is not None else {"content": ""})
                )
                choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            else:
                choice = {
                    "index": 0,
                    "text": piece or "",
                    "logprobs": None,
                    "finish_reason": finish,
                    "stop_reason": None,
                }
            obj: dict[str, Any] = {
                "id": rid,
                "object": kind,
                "created": created,
                "model": model,
                "choices": [choice],
            }
            if continuous:
                obj["usage"] = override or {
                    "prompt_tokens": prompt,
                    "total_tokens": prompt + sent,
                    "completion_tokens": sent,
                }
            return b"data: " + orjson.dumps(obj) + b"\n\n"

        try:
            if prefill:
                time.sleep(prefill)
            if chat:
                yield chunk(None, None, 0, role=True)
            words = _words(wanted)
            for sent, word in enumerate(words, 1):
                if delay:
                    time.sleep(delay)
                if _peer_closed(client):
                    # Like vLLM aborting on disconnect: nothing more is generated or counted,
                    # so ``completion_tokens`` is what was sent before the client went away.
                    record["disconnected"], record["disconnected_at"] = True, time.time()
                    return
                if fail_after is not None and sent > fail_after:
                    raise ConnectionAbortedError("simulated engine failure")
                if stall_after is not None and sent > stall_after:
                    time.sleep(600)  # a hung engine: the gateway's bounds must end this
                record["completion_tokens"] = sent
                yield chunk(word if sent == 1 else " " + word, None, sent)
            yield chunk("", "length", wanted)
            if include:
                usage = override or {
                    "prompt_tokens": prompt,
                    "total_tokens": prompt + wanted,
                    "completion_tokens": wanted,
                }
                yield (
                    b"data: "
                    + orjson.dumps(
                        {
                            "id": rid,
                            "object": kind,
                            "created": created,
                            "model": model,
                            "choices": [],
                            "usage": usage,
                        }
                    )
                    + b"\n\n"
                )
            yield b"data: [DONE]\n\n"
            record["finished"] = True
        except GeneratorExit:
            record["disconnected"], record["disconnected_at"] = True, time.time()
            raise


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def _peer_closed(sock: Any) -> bool:
    """True when the client has closed its end (EOF or a reset is waiting on the socket)."""
    if sock is None:
        return False
    try:
        poller = select.poll()  # not select(): it fails for descriptors above 1023
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0)) and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _break(sock: Any, how: str) -> list[bytes]:
    """Answer like a broken server: close at once, or send something that is not HTTP."""
    if sock is not None:
        if how == "garbage":
            sock.sendall(b"this is not HTTP\r\n\r\n")
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
    return []


def _words(count: int) -> list[str]:
    return [WORDS[i % len(WORDS)] for i in range(count)]


def _count(text: Any) -> int:
    if isinstance(text, str):
        return len(text.split())
    if isinstance(text, list):
        total = 0
        for part in text:
            if isinstance(part, str):
                total += len(part.split())
            elif isinstance(part, int):
                total += 1
            elif isinstance(part, list):
                total += len(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                total += len(part["text"].split())
        return total
    return 0


def _prompt_tokens(body: dict[str, Any], chat: bool) -> int:
    """The simulator's tokenizer: one token per word, plus 3 per chat message (the template)."""
    if chat:
        return (
            sum(
                3 + _count(m.get("content"))
                for m in body.get("messages") or []
                if isinstance(m, dict)
            )
            or 1
        )
    return max(1, _count(body.get("prompt")))


def serve(host: str, port: int, app: Simulator) -> None:
    """Serve forever with gevent's WSGI server."""
    from gevent.pywsgi import WSGIHandler, WSGIServer

    class Handler(WSGIHandler):
        """Exposes the client socket, so a stream can notice the client has gone."""

        def get_environ(self) -> dict[str, Any]:
            environ = super().get_environ()
            environ["sim.socket"] = self.socket
            return environ

    # Like vLLM's uvicorn (and gunicorn): no Nagle delay between a response's header and body
    # writes on a kept-alive connection (40 ms with the client's delayed ACK); a backlog that
    # takes a thousand connections at once.
    listener = socket.create_server((host, port), backlog=2048)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    server = WSGIServer(listener, app, log=None, error_log=None, handler_class=Handler)
    print(
        f"SIMULATED vLLM server (not a real model) on http://{host}:{port} serving "
        f"{', '.join(app.models)}",
        file=sys.stderr,
        flush=True,
    )
    server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    from gevent import monkey

    monkey.patch_all()
    parser = argparse.ArgumentParser(
        description="Simulated vLLM OpenAI server (for development and tests)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SIM_PORT", "8001")))
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        help=f"model id to serve (repeatable; default {DEFAULT_MODEL})",
    )
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds between tokens")
    parser.add_argument(
        "--first-token-delay", type=float, default=0.0, help="simulated prefill time"
    )
    parser.add_argument(
        "--default-tokens", type=int, default=16, help="tokens when max_tokens is not set"
    )
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument(
        "--api-key", default=None, help="require this Bearer key on /v1 (like vllm --api-key)"
    )
    parser.add_argument(
        "--loading-seconds",
        type=float,
        default=0.0,
        help="answer 503 (model loading) for this long after start",
    )
    parser.add_argument(
        "--listen-delay",
        type=float,
        default=0.0,
        help="refuse connections for this long after start (vLLM before it binds)",
    )
    parser.add_argument(
        "--fail-status",
        type=int,
        default=None,
        help="answer every completion with this HTTP status (e.g. 503, an overloaded engine)",
    )
    args = parser.parse_args(argv)
    app = Simulator(
        args.models or [DEFAULT_MODEL],
        token_delay=args.token_delay,
        first_token_delay=args.first_token_delay,
        default_tokens=args.default_tokens,
        max_model_len=args.max_model_len,
        api_key=args.api_key,
        loading_seconds=args.loading_seconds + args.listen_delay,
        fail_status=args.fail_status,
    )
    if args.listen_delay:
        time.sleep(args.listen_delay)
    serve(args.host, args.port, app)


if __name__ == "__main__":
    main()
