"""OpenAI's Responses API as vLLM serves it: ``POST /v1/responses`` (whole or streamed as
named events), and the stored responses' ``GET``, ``DELETE``, ``cancel`` and ``input_items``.

Usage is ``{"input_tokens": P, "input_tokens_details": {"cached_tokens": 0},
"output_tokens": M, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": P+M}``
(in ``response.completed`` when streamed); the record's prompt_tokens is P, its
completion_tokens M (the deltas sent, when the client leaves). P counts the words of the input
and the instructions, plus the input and output of the ``previous_response_id`` chained to.
The follow-up calls are recorded with no tokens.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from functools import partial
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
    is_number,
    read_json,
    served_model,
)
from packet.devserver.server import break_connection
from packet.devserver.streaming import Stream, disconnected, paced, prefill

if TYPE_CHECKING:
    from packet.devserver.app import Handler, Simulator

STRING: Check = (lambda v: isinstance(v, str), "a valid string", None)
NUMBER: Check = (is_number, "a valid number", None)
FIELDS: dict[str, Check] = {
    "model": MODEL,
    "instructions": STRING,
    "max_output_tokens": COUNT,
    "stream": BOOLEAN,
    "store": BOOLEAN,
    "previous_response_id": STRING,
    "temperature": NUMBER,
    "top_p": NUMBER,
    **KNOBS,
}
FOLLOW_UP = re.compile(r"/v1/responses/([^/]+)(/cancel|/input_items)?")


def create(app: Simulator, environ: dict[str, Any], start_response: Any) -> Any:
    """``POST /v1/responses``: check, count the prompt (chained to a stored response), answer."""
    body = an_object(read_json(environ))
    check_fields(body, FIELDS, "")
    model = served_model(body, app.settings)
    items = _items(body.get("input"))
    prompt = sum(tokens.content_words(item.get("content")) for item in items)
    prompt += tokens.count(body.get("instructions") or "")
    if body.get("previous_response_id") is not None:
        prompt += _previous(app, body["previous_response_id"])["tokens"]
    wanted = body.get("max_output_tokens") or app.settings.default_tokens
    fits(max(1, prompt), wanted, app.settings.max_model_len)
    gen = generation(
        body,
        app.settings,
        model=model,
        prompt_tokens=max(1, prompt),
        max_tokens=wanted,
        stream=body.get("stream") is True,
        id=new_id("resp_"),
    )
    record = app.record(
        environ, body, model=model, stream=gen.stream, prompt_tokens=gen.prompt_tokens
    )
    client = environ.get("sim.socket")
    if gen.break_how:
        return break_connection(client, gen.break_how)
    answer = Answer(app, gen, body, items, new_id("msg_"))
    if not gen.stream:
        return respond(start_response, 200, answer.done(generate(gen, record, app.sleep)))
    return sse(start_response, _events(Stream(gen, record, client, app.sleep), answer))


class Answer:
    """The response being made: its shape in every state, and its keeping once done."""

    def __init__(
        self,
        app: Simulator,
        gen: Generation,
        body: dict[str, Any],
        items: list[dict[str, Any]],
        message_id: str,
    ) -> None:
        self.app, self.gen, self.body, self.items, self.message_id = (
            app,
            gen,
            body,
            items,
            message_id,
        )

    def message(self, text: str | None) -> dict[str, Any]:
        """The one output item; ``text=None``: just added, no content yet."""
        content = [] if text is None else [_text_part(text) | {"logprobs": []}]
        return {
            "type": "message",
            "id": self.message_id,
            "status": "in_progress" if text is None else "completed",
            "role": "assistant",
            "content": content,
        }

    def response(self, text: str | None) -> dict[str, Any]:
        """The ``Response`` object: in progress (no output, no usage), or completed."""
        gen, body = self.gen, self.body
        usage = None
        if text is not None:
            usage = gen.usage or {
                "input_tokens": gen.prompt_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": gen.max_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": gen.prompt_tokens + gen.max_tokens,
            }
        return {
            "id": gen.id,
            "object": "response",
            "created_at": gen.created,
            "status": "in_progress" if text is None else "completed",
            "background": False,
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "max_output_tokens": gen.max_tokens,
            "metadata": {},
            "model": gen.model,
            "output": [] if text is None else [self.message(text)],
            "parallel_tool_calls": True,
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": None,
            "store": body.get("store") is not False,
            "temperature": body.get("temperature", 1.0),
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": usage,
            "user": None,
        }

    def done(self, text: str) -> dict[str, Any]:
        """The completed response, stored (``store``, the default) with its input items."""
        response = self.response(text)
        if response["store"]:
            tokens_used = self.gen.prompt_tokens + self.gen.max_tokens  # the truth, not x_sim_usage
            self.app.store(
                self.gen.id, {"response": response, "items": self.items, "tokens": tokens_used}
            )
        return response


def _events(stream: Stream, answer: Answer) -> Iterator[bytes]:
    """vLLM's named events, each with a ``sequence_number``; no ``[DONE]`` after them."""
    record, numbers = stream.record, itertools.count()
    where = {"item_id": answer.message_id, "output_index": 0, "content_index": 0}

    def event(kind: str, **fields: Any) -> bytes:
        return named_frame({"type": kind, "sequence_number": next(numbers), **fields})

    try:
        yield event("response.created", response=answer.response(None))
        yield event("response.in_progress", response=answer.response(None))
        yield event("response.output_item.added", output_index=0, item=answer.message(None))
        yield event("response.content_part.added", **where, part=_text_part(""))
        prefill(stream)
        pieces = []
        for _, piece in paced(stream):
            pieces.append(piece)
            yield event("response.output_text.delta", **where, delta=piece, logprobs=[])
        if record["disconnected"]:
            return
        text = "".join(pieces)
        yield event("response.output_text.done", **where, text=text, logprobs=[])
        yield event("response.content_part.done", **where, part=_text_part(text))
        yield event("response.output_item.done", output_index=0, item=answer.message(text))
        yield event("response.completed", response=answer.done(text))
        record["finished"] = True
    except GeneratorExit:
        disconnected(record)
        raise


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": []}


def _items(value: Any) -> list[dict[str, Any]]:
    """``input`` as message items with ids: a string is one user message; items are messages
    (``{"role", "content"}``, ``type`` "message") or other items, kept as they are."""
    if isinstance(value, str):
        value = [{"role": "user", "content": value}]
    if not isinstance(value, list):
        invalid("input", "Input should be a valid string or list")
    check_messages(value)  # every item an object; content a string or a list of text parts
    items = []
    for i, item in enumerate(value):
        for name in ("id", "role", "type"):
            if not isinstance(item.get(name, ""), str):
                invalid(f"input.{i}.{name}", "Input should be a valid string")
        items.append(_item(item))
    return items


def _item(item: dict[str, Any]) -> dict[str, Any]:
    kept = item | {"id": item.get("id") or new_id("msg_")}
    if item.get("type", "message") != "message":
        return kept
    content = item.get("content")
    if isinstance(content, str):
        content = [{"type": "input_text", "text": content}]
    return kept | {"type": "message", "role": item.get("role") or "user", "content": content}


def _previous(app: Simulator, response_id: str) -> dict[str, Any]:
    stored = app.responses.get(response_id)
    if stored is None:
        raise ApiError(
            404,
            f"Response with id '{response_id}' not found.",
            "NotFoundError",
            "previous_response_id",
        )
    return stored


# --- the stored responses ----------------------------------------------------------------------


def follow_up(method: str, path: str) -> Handler | None:
    """The handler of ``/v1/responses/{id}[/cancel|/input_items]``, if ``path`` is one."""
    match = FOLLOW_UP.fullmatch(path)
    action = ACTIONS.get((method, match.group(2) or "")) if match else None
    return partial(action, response_id=match.group(1)) if match and action else None


def _stored(app: Simulator, environ: dict[str, Any], response_id: str) -> dict[str, Any]:
    """The response kept in this process, the call recorded (no tokens) either way."""
    stored = app.responses.get(response_id)
    model = stored["response"]["model"] if stored else None
    app.record(environ, None, model=model, finished=True)
    if stored is None:
        raise ApiError(
            404, f"Response with id '{response_id}' not found.", "NotFoundError", "response_id"
        )
    return stored


def _get(app: Simulator, environ: dict[str, Any], start_response: Any, *, response_id: str) -> Any:
    return respond(start_response, 200, _stored(app, environ, response_id)["response"])


def _delete(
    app: Simulator, environ: dict[str, Any], start_response: Any, *, response_id: str
) -> Any:
    _stored(app, environ, response_id)
    del app.responses[response_id]
    return respond(
        start_response, 200, {"id": response_id, "object": "response.deleted", "deleted": True}
    )


def _cancel(
    app: Simulator, environ: dict[str, Any], start_response: Any, *, response_id: str
) -> Any:
    """Only a background response in progress can be cancelled: the simulator keeps none."""
    _stored(app, environ, response_id)
    raise ApiError(400, "Cannot cancel a synchronous response.")


def _input_items(
    app: Simulator, environ: dict[str, Any], start_response: Any, *, response_id: str
) -> Any:
    items = _stored(app, environ, response_id)["items"]
    return respond(
        start_response,
        200,
        {
            "object": "list",
            "data": items,
            "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None,
            "has_more": False,
        },
    )


ACTIONS = {
    ("GET", ""): _get,
    ("DELETE", ""): _delete,
    ("POST", "/cancel"): _cancel,
    ("GET", "/input_items"): _input_items,
}
ROUTES: dict[tuple[str, str], Handler] = {("POST", "/v1/responses"): create}
