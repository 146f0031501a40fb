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
    body = an_object(body)
    _check(body, chat)
    model = served_model(body, settings)
    stream = body.get("stream") is True
    options = body.get("stream_options") or {}
    if options and not stream:
        raise ApiError(400, "Stream options can only be defined when `stream=True`.")
    if chat:
        prompt = tokens.chat_prompt_tokens(body.get("messages"))
    else:
        prompt = tokens.text_prompt_tokens(body.get("prompt"))
    wanted = body.get("max_completion_tokens") or body.get("max_tokens") or settings.default_tokens
    fits(prompt, wanted, settings.max_model_len)
    include = bool(options.get("include_usage")) and not settings.no_stream_usage
    return generation(
        body,
        settings,
        chat=chat,
        model=model,
        prompt_tokens=prompt,
        max_tokens=wanted,
        stream=stream,
        include_usage=include,
        continuous_usage=include and bool(options.get("continuous_usage_stats")),
        id=f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}",
    )


def generation(
    body: dict[str, Any],
    settings: Settings,
    *,
    model: str,
    prompt_tokens: int,
    max_tokens: int,
    stream: bool,
    id: str,
    chat: bool = True,
    include_usage: bool = False,
    continuous_usage: bool = False,
) -> Generation:
    """A ``Generation`` with the ``x_sim_*`` knobs of ``body`` (checked: ``KNOBS``) applied."""
    return Generation(
        chat=chat,
        model=model,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        stream=stream,
        include_usage=include_usage,
        continuous_usage=continuous_usage,
        token_delay=_given(body, "x_sim_token_delay", settings.token_delay),
        first_token_delay=_given(body, "x_sim_first_token_delay", settings.first_token_delay),
        fail_after=body.get("x_sim_fail_after"),
        stall_after=body.get("x_sim_stall_after"),
        usage=body.get("x_sim_usage") or None,
        break_how=body.get("x_sim_break"),
        id=id,
        created=int(time.time()),
    )


def an_object(body: Any) -> dict[str, Any]:
    """A JSON body must be an object."""
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid JSON body.")
    return body


def served_model(body: dict[str, Any], settings: Settings) -> str:
    """The body's ``model`` (a checked string or absent), the first served one by default;
    a model not served is a 404, unless the server echoes any name (``--echo-model``)."""
    model = body.get("model") or settings.models[0]
    if model not in settings.models and not settings.echo_model:
        raise ApiError(404, f"The model `{model}` does not exist.", "NotFoundError", "model")
    return str(model)


def fits(prompt: int, wanted: int, max_model_len: int) -> None:
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


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return is_int(value) or isinstance(value, float)


def at_least_one(value: int) -> str | None:
    return None if value >= 1 else f"must be at least 1, got {value}."


def _a_delay(value: float) -> str | None:
    return None if 0 <= value <= MAX_DELAY else f"must be between 0 and {MAX_DELAY:g} seconds."


# name → (type test, what it should be, value test giving the complaint). None is always allowed.
Check = tuple[Callable[[Any], bool], str, Callable[[Any], str | None] | None]
KNOBS: dict[str, Check] = {
    "x_sim_token_delay": (is_number, "a valid number", _a_delay),
    "x_sim_first_token_delay": (is_number, "a valid number", _a_delay),
    "x_sim_fail_after": (is_int, "a valid integer", None),
    "x_sim_stall_after": (is_int, "a valid integer", None),
    "x_sim_break": (lambda v: v in BREAKS, "'close' or 'garbage'", None),
}
MODEL: Check = (lambda v: isinstance(v, str), "a valid string", None)
BOOLEAN: Check = (lambda v: isinstance(v, bool), "a valid boolean", None)
COUNT: Check = (is_int, "a valid integer", at_least_one)
FIELDS: dict[str, Check] = {
    "model": MODEL,
    "stream": BOOLEAN,
    "stream_options": (lambda v: isinstance(v, dict), "a valid dictionary", None),
    "max_tokens": COUNT,
    "max_completion_tokens": COUNT,
    "n": COUNT,
    **KNOBS,
}
OPTIONS: dict[str, Check] = {
    "include_usage": BOOLEAN,
    "continuous_usage_stats": BOOLEAN,
}


def _check(body: dict[str, Any], chat: bool) -> None:
    check_fields(body, FIELDS, "")
    if isinstance(body.get("stream_options"), dict):
        check_fields(body["stream_options"], OPTIONS, "stream_options.")
    if chat:
        check_messages(body.get("messages"))
    else:
        _check_prompt(body.get("prompt"))


def check_fields(body: dict[str, Any], checks: dict[str, Check], prefix: str) -> None:
    for name, (is_type, expected, complaint) in checks.items():
        value = body.get(name)
        if value is None:
            continue
        if not is_type(value):
            invalid(prefix + name, f"Input should be {expected}")
        problem = complaint(value) if complaint else None
        if problem:
            raise ApiError(400, f"{prefix + name} {problem}", param=prefix + name)


def check_messages(messages: Any) -> None:
    """A list of message objects whose content is a string, a list of parts or null."""
    if messages is None:
        return
    if not isinstance(messages, list):
        invalid("messages", "Input should be a valid list")
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(message, dict):
            invalid(where, "Input should be a valid dictionary")
        content = message.get("content")
        if content is None or isinstance(content, str):
            continue
        if not isinstance(content, list):
            invalid(f"{where}.content", "Input should be a valid string or list")
        for j, part in enumerate(content):
            if not isinstance(part, dict):
                invalid(f"{where}.content.{j}", "Input should be a valid dictionary")
            if not isinstance(part.get("text", ""), str | None):
                invalid(f"{where}.content.{j}.text", "Input should be a valid string")


def _check_prompt(prompt: Any) -> None:
    """A string, or a list of strings, token ids or lists of token ids."""
    if prompt is None or isinstance(prompt, str):
        return
    if not isinstance(prompt, list):
        invalid("prompt", "Input should be a valid string or list")
    for i, part in enumerate(prompt):
        if not (isinstance(part, str) or is_int(part) or _token_ids(part)):
            invalid(f"prompt.{i}", "Input should be a string, a token id or a list of token ids")


def _token_ids(value: Any) -> bool:
    return isinstance(value, list) and all(is_int(token) for token in value)


def invalid(where: str, message: str) -> NoReturn:
    """A wrong type, worded like pydantic's (vLLM's) validation error."""
    raise ApiError(400, f"1 validation error: {where}: {message}", param=where)
