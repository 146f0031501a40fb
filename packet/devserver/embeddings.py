"""``POST /v1/embeddings``: deterministic unit vectors, one per input, in vLLM's shape.

Usage is ``{"prompt_tokens": N, "total_tokens": N, "completion_tokens": 0}``, N being the
words of each string or the ids of each token list (``tokens``); the record says the same.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import struct
import time
from typing import TYPE_CHECKING, Any

from packet.devserver import tokens
from packet.devserver.protocol import ApiError, new_id, respond, usage
from packet.devserver.request import (
    MODEL,
    Check,
    an_object,
    check_fields,
    fits,
    invalid,
    is_int,
    read_json,
    served_model,
)

if TYPE_CHECKING:
    from packet.devserver.app import Handler, Simulator

DEFAULT_DIMENSIONS = 8
MAX_DIMENSIONS = 4096  # a bound, so a body cannot ask for a gigabyte of floats


def _dimensions(value: int) -> str | None:
    return None if 1 <= value <= MAX_DIMENSIONS else f"must be between 1 and {MAX_DIMENSIONS}."


FIELDS: dict[str, Check] = {
    "model": MODEL,
    "encoding_format": (lambda v: v in ("float", "base64"), "'float' or 'base64'", None),
    "dimensions": (is_int, "a valid integer", _dimensions),
}


def embed(app: Simulator, environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Check the body, then answer every input at once (embeddings are not streamed)."""
    body = an_object(read_json(environ))
    check_fields(body, FIELDS, "")
    model = served_model(body, app.settings)
    inputs = _inputs(body.get("input"))
    counts = [_tokens(one) for one in inputs]
    for count in counts:
        fits(count, 0, app.settings.max_model_len)
    prompt = sum(counts)
    app.record(environ, body, model=model, prompt_tokens=prompt, finished=True)
    size = body.get("dimensions") or DEFAULT_DIMENSIONS
    b64 = body.get("encoding_format") == "base64"
    data = [
        {"index": i, "object": "embedding", "embedding": _encoded(_vector(one, size), b64)}
        for i, one in enumerate(inputs)
    ]
    answer = {
        "id": new_id("embd-"),
        "object": "list",
        "created": int(time.time()),
        "model": model,
        "data": data,
        "usage": usage(prompt, 0),
    }
    return respond(start_response, 200, answer)


def _inputs(value: Any) -> list[str | list[int]]:
    """``input`` as a list of strings or token lists: vLLM's union of a string, a list of
    strings, one token list or a list of token lists; nothing empty."""
    single_ids = isinstance(value, list) and value and all(is_int(v) for v in value)
    if isinstance(value, str) or single_ids:
        value = [value]
    if not isinstance(value, list):
        invalid("input", "Input should be a valid string or list")
    if not value:
        raise ApiError(400, "input must not be empty.", param="input")
    for i, one in enumerate(value):
        if not (isinstance(one, str) or (isinstance(one, list) and all(map(is_int, one)))):
            invalid(f"input.{i}", "Input should be a string or a list of token ids")
        if not one or (isinstance(one, str) and not one.strip()):
            raise ApiError(400, f"input.{i} must not be empty.", param=f"input.{i}")
    kinds = {type(one) for one in value}
    if len(kinds) > 1:
        invalid("input", "Input should be all strings or all token lists")
    return value


def _tokens(one: str | list[int]) -> int:
    return tokens.text_prompt_tokens(one) if isinstance(one, str) else len(one)


def _vector(one: str | list[int], size: int) -> list[float]:
    """A unit vector seeded by the input, so the same input always embeds the same."""
    rng = random.Random(hashlib.sha256(repr(one).encode()).digest())
    values = [rng.uniform(-1.0, 1.0) for _ in range(size)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def _encoded(vector: list[float], b64: bool) -> list[float] | str:
    """Floats, or (``base64``) their little-endian float32 bytes in base64, as vLLM sends."""
    if not b64:
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


ROUTES: dict[tuple[str, str], Handler] = {("POST", "/v1/embeddings"): embed}
