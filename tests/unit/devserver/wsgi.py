"""Calling the simulator's WSGI app in process, with a clock that does not wait."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

from packet.devserver import Settings, Simulator

MODELS = ("simulated/vllm-demo", "other/model")


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    aborted: bool = False  # the stream died mid-way (the x_sim_fail_after knob)
    writes: list[bytes] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body)

    def events(self) -> list[tuple[str | None, Any]]:
        """The SSE events as (name, data), ``[DONE]`` kept as the string."""
        found = []
        for block in self.body.decode().split("\n\n"):
            if not block:
                continue
            name, data = None, None
            for line in block.split("\n"):
                if line.startswith("event: "):
                    name = line[len("event: ") :]
                elif line.startswith("data: "):
                    raw = line[len("data: ") :]
                    data = raw if raw == "[DONE]" else json.loads(raw)
            found.append((name, data))
        return found


def call(
    app: Simulator,
    method: str,
    path: str,
    raw: bytes = b"",
    *,
    stream: Any = None,
    **headers: str,
) -> Answer:
    """One request straight into the WSGI app, its body read to the end (as a server would);
    ``headers`` are environ keys (``HTTP_X_API_KEY``, ``CONTENT_TYPE``)."""
    started: list[Any] = []
    writes: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]]) -> Any:
        started[:] = [int(status.split()[0]), headers]
        return writes.append

    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "CONTENT_LENGTH": str(len(raw)),
        "wsgi.input": stream or io.BytesIO(raw),
        **headers,
    }
    chunks, aborted = [], False
    try:
        chunks.extend(app(environ, start_response))
    except ConnectionAbortedError:
        aborted = True
    return Answer(started[0], started[1], b"".join(chunks), aborted, writes)


def post(app: Simulator, path: str, raw: bytes) -> Answer:
    return call(app, "POST", path, raw)


def post_json(app: Simulator, path: str, body: Any, **headers: str) -> Answer:
    return call(app, "POST", path, json.dumps(body).encode(), **headers)


def simulator(**settings: Any) -> Simulator:
    return Simulator(Settings(models=MODELS, **settings), sleep=lambda _: None)


def assert_vllm_error(answer: Answer) -> None:
    assert 400 <= answer.status < 500, answer
    assert ("Content-Type", "application/json") in answer.headers
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert error["code"] == answer.status
    assert error["type"] in ("BadRequestError", "NotFoundError")


def last_record(app: Simulator) -> dict[str, Any]:
    return app.requests[-1]
