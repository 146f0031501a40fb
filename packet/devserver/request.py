"""A completion request body, checked the way vLLM's schema checks it, as a ``Generation``.

vLLM answers a body of the wrong shape with a 400 (pydantic), never a 500: so does the
simulator, for every field it reads. Unknown fields are ignored, as vLLM ignores them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import orjson

from packet.devserver import tokens
from packet.devserver.protocol import ApiError
from packet.devserver.settings import Settings

MAX_DELAY = 3600.0  # seconds: a bound on the x_sim_*_delay knobs (time.sleep overflows)
BREAKS = ("close", "garbage")


@dataclass(frozen=True)
class Generation:
    """What to generate for one request, how to pace it, and the test knobs that bend it."""

    chat: bool
    model: str
    prompt_tokens: int
    max_tokens: int
    stream: bool
    include_usage: bool
    continuous_usage: bool
    token_delay: float
    first_token_delay: float
    fail_after: int | None  # x_sim_fail_after: the engine dies after this many tokens
    stall_after: int | None  # x_sim_stall_after: the engine hangs after this many tokens
    usage: Any  # x_sim_usage: reported instead of the truth, whatever it is (None: the truth)
    break_how: str | None  # x_sim_break: answer like a broken server
    id: str
    created: int


def read_json(environ: dict[str, Any]) -> Any:
    """The request body as JSON; a body that is not JSON is a 400."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        return orjson.loads(environ["wsgi.input"].read(length))
    except (ValueError, OSError):
        raise ApiError(400, "Invalid JSON body.")


def parse(body: Any, *, chat: bool, settings: Settings) -> Generation:
    """Check ``body`` and resolve its defaults; a 400 or 404 ``ApiError`` if vLLM would refuse it."""
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid JSON body.")
    _check(body, chat)
    model = body.get("model") or settings.models[0]
    if model not in settings.models:
        raise ApiError(404, f"The model `{model}` does not exist.", "NotFoundError", "model")
    stream = body.get("stream") is True
    options = body.get("stream_options") or {}
    if options and not stream:
        raise ApiError(400, "Stream options can only be defined when `stream=True`.")
    if chat:
        prompt = tokens.chat_prompt_tokens(body.get("messages"))
    else:
        prompt = tokens.text_prompt_tokens(body.get("prompt"))
    wanted = body.get("max_completion_tokens") or body.get("max_tokens") or settings.default_tokens
    _fits(prompt, wanted, settings.max_model_len)
    include = bool(options.get("include_usage"))
    return Generation(
        chat=chat,
        model=model,
        prompt_tokens=prompt,
        max_tokens=wanted,
        stream=stream,
        include_usage=include,
        continuous_usage=include and bool(options.get("continuous_usage_stats")),
        token_delay=_given(body, "x_sim_token_delay", settings.token_delay),
        first_token_delay=_given(body, "x_sim_first_token_delay", settings.first_token_delay),
        fail_after=body.get("x_sim_fail_after"),
        stall_after=body.get("x_sim_stall_after"),
        usage=body.get("x_sim_usage") or None,
        break_how=body.get("x_sim_break"),
        id=f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}",
        created=int(time.time()),
    )


def _fits(prompt: int, wanted: int, max_model_len: int) -> None:
    if prompt + wanted > max_model_len:
        raise ApiError(
            400,
            f"This model's maximum context length is {max_model_len} tokens. However, you "
            f"requested {prompt + wanted} tokens ({prompt} in the messages, {wanted} in the "
            "completion). Please reduce the length of the messages or completion.",
        )


def _given(body: dict[str, Any], name: str, default: float) -> float:
    value = body.get(name)
    return default if value is None else float(value)


# --- the checks --------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return _is_int(value) or isinstance(value, float)


def _at_least_one(value: int) -> str | None:
    return None if value >= 1 else f"must be at least 1, got {value}."


def _a_delay(value: float) -> str | None:
    return None if 0 <= value <= MAX_DELAY else f"must be between 0 and {MAX_DELAY:g} seconds."


# name → (type test, what it should be, value test giving the complaint). None is always allowed.
Check = tuple[Callable[[Any], bool], str, Callable[[Any], str | None] | None]
FIELDS: dict[str, Check] = {
    "model": (lambda v: isinstance(v, str), "a valid string", None),
    "stream": (lambda v: isinstance(v, bool), "a valid boolean", None),
    "stream_options": (lambda v: isinstance(v, dict), "a valid dictionary", None),
    "max_tokens": (_is_int, "a valid integer", _at_least_one),
    "max_completion_tokens": (_is_int, "a valid integer", _at_least_one),
    "n": (_is_int, "a valid integer", _at_least_one),
    "x_sim_token_delay": (_is_number, "a valid number", _a_delay),
    "x_sim_first_token_delay": (_is_number, "a valid number", _a_delay),
    "x_sim_fail_after": (_is_int, "a valid integer", None),
    "x_sim_stall_after": (_is_int, "a valid integer", None),
    "x_sim_break": (lambda v: v in BREAKS, "'close' or 'garbage'", None),
}
OPTIONS: dict[str, Check] = {
    "include_usage": FIELDS["stream"],
    "continuous_usage_stats": FIELDS["stream"],
}


def _check(body: dict[str, Any], chat: bool) -> None:
    _check_fields(body, FIELDS, "")
    if isinstance(body.get("stream_options"), dict):
        _check_fields(body["stream_options"], OPTIONS, "stream_options.")
    if chat:
        _check_messages(body.get("messages"))
    else:
        _check_prompt(body.get("prompt"))


def _check_fields(body: dict[str, Any], checks: dict[str, Check], prefix: str) -> None:
    for name, (is_type, expected, complaint) in checks.items():
        value = body.get(name)
        if value is None:
            continue
        if not is_type(value):
            _invalid(prefix + name, f"Input should be {expected}")
        problem = complaint(value) if complaint else None
        if problem:
            raise ApiError(400, f"{prefix + name} {problem}", param=prefix + name)


def _check_messages(messages: Any) -> None:
    """A list of message objects whose content is a string, a list of parts or null."""
    if messages is None:
        return
    if not isinstance(messages, list):
        _invalid("messages", "Input should be a valid list")
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(message, dict):
            _invalid(where, "Input should be a valid dictionary")
        content = message.get("content")
        if content is None or isinstance(content, str):
            continue
        if not isinstance(content, list):
            _invalid(f"{where}.content", "Input should be a valid string or list")
        for j, part in enumerate(content):
            if not isinstance(part, dict):
                _invalid(f"{where}.content.{j}", "Input should be a valid dictionary")
            if not isinstance(part.get("text", ""), str | None):
                _invalid(f"{where}.content.{j}.text", "Input should be a valid string")


def _check_prompt(prompt: Any) -> None:
    """A string, or a list of strings, token ids or lists of token ids."""
    if prompt is None or isinstance(prompt, str):
        return
    if not isinstance(prompt, list):
        _invalid("prompt", "Input should be a valid string or list")
    for i, part in enumerate(prompt):
        if not (isinstance(part, str) or _is_int(part) or _token_ids(part)):
            _invalid(f"prompt.{i}", "Input should be a string, a token id or a list of token ids")


def _token_ids(value: Any) -> bool:
    return isinstance(value, list) and all(_is_int(token) for token in value)


def _invalid(where: str, message: str) -> NoReturn:
    """A wrong type, worded like pydantic's (vLLM's) validation error."""
    raise ApiError(400, f"1 validation error: {where}: {message}", param=where)
