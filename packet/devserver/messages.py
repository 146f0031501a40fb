"""Anthropic's Messages API as vLLM serves it: ``POST /v1/messages`` (whole, or streamed as
named events with no ``[DONE]``) and ``POST /v1/messages/count_tokens``; errors on these paths
are in Anthropic's envelope, and the key may come as ``x-api-key``.

Usage is ``{"input_tokens": N, "output_tokens": M}`` (streamed: N in ``message_start``, M in
``message_delta``); the record's prompt_tokens is N, its completion_tokens M (the deltas sent,
when the client leaves). N counts the words of the system prompt and the messages plus the
chat template's tokens per message. ``count_tokens`` answers N and records it, with M = 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from packet.devserver import tokens
from packet.devserver.completions import generate
from packet.devserver.protocol import ApiError, named_frame, new_id, respond, sse
from packet.devserver.request import (
    BOOLEAN,
    COUNT,
    KNOBS,
    MODEL,
    Check,
    Generation,
    an_object,
    check_fields,
    check_messages,
    fits,
    generation,
    invalid,
    read_json,
    served_model,
)
from packet.devserver.server import break_connection
from packet.devserver.streaming import Stream, disconnected, paced, prefill

if TYPE_CHECKING:
    from packet.devserver.app import Handler, Simulator

PREFIX = "/v1/messages"
FIELDS: dict[str, Check] = {"model": MODEL, "stream": BOOLEAN, "max_tokens": COUNT, **KNOBS}


def create(app: Simulator, environ: dict[str, Any], start_response: Any) -> Any:
    """``POST /v1/messages``: ``max_tokens`` is required, as Anthropic's API has it."""
    body, model, prompt = _checked(app, environ)
    if body.get("max_tokens") is None:
        raise ApiError(400, "max_tokens: Field required", param="max_tokens")
    fits(prompt, body["max_tokens"], app.settings.max_model_len)
    gen = generation(
        body,
        app.settings,
        model=model,
        prompt_tokens=prompt,
        max_tokens=body["max_tokens"],
        stream=body.get("stream") is True,
        id=new_id("msg_"),
    )
    record = app.record(environ, body, model=model, stream=gen.stream, prompt_tokens=prompt)
    client = environ.get("sim.socket")
    if gen.break_how:
        return break_connection(client, gen.break_how)
    if not gen.stream:
        text = generate(gen, record, app.sleep)
        answer = _message(gen, [{"type": "text", "text": text}], "max_tokens")
        return respond(start_response, 200, answer | {"usage": gen.usage or _usage(gen)})
    return sse(start_response, _events(Stream(gen, record, client, app.sleep)))


def count_tokens(app: Simulator, environ: dict[str, Any], start_response: Any) -> Any:
    """``POST /v1/messages/count_tokens``: the prompt's tokens, nothing generated."""
    body, model, prompt = _checked(app, environ)
    app.record(environ, body, model=model, prompt_tokens=prompt, finished=True)
    return respond(start_response, 200, {"input_tokens": prompt})


def _checked(app: Simulator, environ: dict[str, Any]) -> tuple[dict[str, Any], str, int]:
    """The body, its model and its prompt's tokens: ``messages`` (required, not empty) and
    ``system`` (a string or text blocks)."""
    body = an_object(read_json(environ))
    check_fields(body, FIELDS, "")
    messages = body.get("messages")
    if messages is None:
        raise ApiError(400, "messages: Field required", param="messages")
    check_messages(messages)
    if not messages:
        raise ApiError(400, "messages: at least one message is required", param="messages")
    system = body.get("system")
    if system is not None and not isinstance(system, str):
        check_messages([{"content": system}])
        if not isinstance(system, list):
            invalid("system", "Input should be a valid string or list")
    model = served_model(body, app.settings)
    prompt = tokens.chat_prompt_tokens(messages) + tokens.content_words(system)
    return body, model, prompt


def _message(gen: Generation, content: list[dict[str, Any]], stop: str | None) -> dict[str, Any]:
    return {
        "id": gen.id,
        "type": "message",
        "role": "assistant",
        "model": gen.model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
    }


def _usage(gen: Generation) -> dict[str, int]:
    return {"input_tokens": gen.prompt_tokens, "output_tokens": gen.max_tokens}


def _events(stream: Stream) -> Iterator[bytes]:
    """``message_start``, the text block's start, deltas and stop, ``message_delta`` (the
    stop reason and output tokens), ``message_stop``."""
    gen, record = stream.gen, stream.record

    def event(kind: str, **fields: Any) -> bytes:
        return named_frame({"type": kind, **fields})

    try:
        start = gen.usage or {"input_tokens": gen.prompt_tokens, "output_tokens": 1}
        yield event("message_start", message=_message(gen, [], None) | {"usage": start})
        yield event("content_block_start", index=0, content_block={"type": "text", "text": ""})
        yield event("ping")
        prefill(stream)
        for _, piece in paced(stream):
            yield event("content_block_delta", index=0, delta={"type": "text_delta", "text": piece})
        if record["disconnected"]:
            return
        yield event("content_block_stop", index=0)
        stop = {"stop_reason": "max_tokens", "stop_sequence": None}
        final = gen.usage or {"output_tokens": gen.max_tokens}
        yield event("message_delta", delta=stop, usage=final)
        yield event("message_stop")
        record["finished"] = True
    except GeneratorExit:
        disconnected(record)
        raise


ROUTES: dict[tuple[str, str], Handler] = {
    ("POST", PREFIX): create,
    ("POST", f"{PREFIX}/count_tokens"): count_tokens,
}
