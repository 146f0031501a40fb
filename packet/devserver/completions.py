"""Chat and text completions: the routes, and a whole (non-streamed) answer."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from packet.devserver.protocol import respond, sse, usage
from packet.devserver.request import Generation, parse, read_json
from packet.devserver.server import break_connection
from packet.devserver.streaming import Stream, events
from packet.devserver.tokens import words

if TYPE_CHECKING:
    from packet.devserver.app import Handler, Simulator


def complete(
    gen: Generation, record: dict[str, Any], sleep: Callable[[float], None]
) -> dict[str, Any]:
    """Take as long as the stream would (prefill, then every token), then answer at once."""
    text = generate(gen, record, sleep)
    return {
        "id": gen.id,
        "object": "chat.completion" if gen.chat else "text_completion",
        "created": gen.created,
        "model": gen.model,
        "choices": [_choice(gen.chat, text)],
        "usage": gen.usage or usage(gen.prompt_tokens, gen.max_tokens),
    }


def generate(gen: Generation, record: dict[str, Any], sleep: Callable[[float], None]) -> str:
    """The whole text, after the time the stream would take; the record counts all of it."""
    if gen.first_token_delay:
        sleep(gen.first_token_delay)
    if gen.token_delay:
        sleep(gen.token_delay * gen.max_tokens)
    record["completion_tokens"], record["finished"] = gen.max_tokens, True
    return " ".join(words(gen.max_tokens))


def _choice(chat: bool, text: str) -> dict[str, Any]:
    if chat:
        return {
            "index": 0,
            "message": {"role": "assistant", "content": text, "tool_calls": []},
            "logprobs": None,
            "finish_reason": "length",
            "stop_reason": None,
        }
    return {
        "index": 0,
        "text": text,
        "logprobs": None,
        "finish_reason": "length",
        "stop_reason": None,
    }


def serve(app: Simulator, environ: dict[str, Any], start_response: Any, *, chat: bool) -> Any:
    """``POST /v1/chat/completions`` or ``/v1/completions``: whole, streamed or broken."""
    body = read_json(environ)
    gen = parse(body, chat=chat, settings=app.settings)
    record = app.record(
        environ, body, model=gen.model, stream=gen.stream, prompt_tokens=gen.prompt_tokens
    )
    client = environ.get("sim.socket")
    if gen.break_how:
        return break_connection(client, gen.break_how)
    if not gen.stream:
        return respond(start_response, 200, complete(gen, record, app.sleep))
    return sse(start_response, events(Stream(gen, record, client, app.sleep)))


ROUTES: dict[tuple[str, str], Handler] = {
    ("POST", "/v1/chat/completions"): partial(serve, chat=True),
    ("POST", "/v1/completions"): partial(serve, chat=False),
}
