"""The input file's checks, before any line runs: JSON lines ``{custom_id, method, url,
body}``, ``custom_id`` unique, ``url`` the batch's endpoint, each body accepted by its route's
own schema, at most ``MAX_LINES`` lines."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from ..gateway import routes
from ..gateway.inbound import Route
from ..protocol.batches import MAX_LINES, input_error
from ..schemas import errors_for, first_error

ROUTES: dict[str, Route] = {
    "/v1/chat/completions": routes.CHAT,
    "/v1/completions": routes.COMPLETIONS,
    "/v1/embeddings": routes.EMBEDDINGS,
    "/v1/responses": routes.RESPONSES,
}
MAX_ERRORS = 100
ErrorList = list[dict[str, Any]]


def lines_of(chunks: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """(line number from 1, content) of every non-blank line, across chunk boundaries."""
    number, rest = 0, b""
    for chunk in chunks:
        parts = (rest + chunk).split(b"\n")
        rest = parts.pop()
        for part in parts:
            number += 1
            if part.strip():
                yield number, part
    if rest.strip():
        yield number + 1, rest


def check(chunks: Iterable[bytes], endpoint: str) -> ErrorList:
    """Every problem of the file (the first ``MAX_ERRORS``), with its line number."""
    errors: ErrorList = []
    seen: set[str] = set()
    count = 0
    for number, content in lines_of(chunks):
        count += 1
        if count > MAX_LINES:
            errors.append(input_error(number, f"A batch holds at most {MAX_LINES} requests."))
            break
        problem = _problem(content, endpoint, seen)
        if problem is not None:
            errors.append(input_error(number, *problem))
            if len(errors) >= MAX_ERRORS:
                break
    if not count and not errors:
        errors.append(input_error(None, "The input file holds no request."))
    return errors


def requests_of(chunks: Iterable[bytes]) -> Iterator[tuple[int, str, str]]:
    """(line number, custom_id, body as JSON) of a file :func:`check` accepted."""
    for number, content in lines_of(chunks):
        line = orjson.loads(content)
        yield number, line["custom_id"], orjson.dumps(line["body"]).decode()


def _problem(content: bytes, endpoint: str, seen: set[str]) -> tuple[str, str | None] | None:
    try:
        line = orjson.loads(content)
    except orjson.JSONDecodeError:
        return "The line is not valid JSON.", None
    if not isinstance(line, dict):
        return "The line must be a JSON object.", None
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id or len(custom_id) > 512:
        return "'custom_id' must be a string of 1 to 512 characters.", "custom_id"
    if custom_id in seen:
        return f"The custom_id {custom_id!r} is used by an earlier line.", "custom_id"
    seen.add(custom_id)
    if line.get("method") != "POST":
        return "'method' must be 'POST'.", "method"
    if line.get("url") != endpoint:
        return f"'url' must be the batch's endpoint, {endpoint}.", "url"
    body = line.get("body")
    if not isinstance(body, dict):
        return "'body' must be a JSON object.", "body"
    if body.get("stream") is True:
        return "Batch requests cannot be streamed: leave out 'stream'.", "body.stream"
    schema = ROUTES[endpoint].schema
    errors = errors_for(schema, body) if schema is not None else {}
    if errors:
        param, message = first_error(errors)
        return f"Invalid value for '{param}': {message}", f"body.{param}"
    return None
