"""A streamed completion: vLLM's SSE chunks, paced token by token, and what the client saw.

The record is updated as tokens go out, so ``completion_tokens`` is exactly what was sent
when the client leaves, the engine fails or the stream ends.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from packet.devserver.protocol import DONE, frame, usage
from packet.devserver.request import Generation
from packet.devserver.server import peer_closed
from packet.devserver.tokens import words

STALL_SECONDS = 600  # x_sim_stall_after: a hung engine; the gateway's bounds must end it


@dataclass(frozen=True)
class Stream:
    """One stream: the generation, its record, the client's socket and the clock to pace it."""

    gen: Generation
    record: dict[str, Any]
    client: socket.socket | None
    sleep: Callable[[float], None]


def events(stream: Stream) -> Iterator[bytes]:
    """The SSE body: (chat) the role chunk, one chunk per word, the finish, usage, ``[DONE]``."""
    gen, record = stream.gen, stream.record
    try:
        prefill(stream)
        if gen.chat:
            yield _chunk(gen, None, None, 0)
        for sent, piece in paced(stream):
            yield _chunk(gen, piece, None, sent)
        if record["disconnected"]:
            return
        yield _chunk(gen, "", "length", gen.max_tokens)
        if gen.include_usage:
            final = usage(gen.prompt_tokens, gen.max_tokens)
            yield frame(_head(gen) | {"choices": [], "usage": gen.usage or final})
        yield DONE
        record["finished"] = True
    except GeneratorExit:
        disconnected(record)
        raise


def prefill(stream: Stream) -> None:
    """The silence before the first token."""
    if stream.gen.first_token_delay:
        stream.sleep(stream.gen.first_token_delay)


def paced(stream: Stream) -> Iterator[tuple[int, str]]:
    """Each token as it is due, as (tokens sent, text piece), counted in the record as it goes;
    it ends early, the record marked disconnected, if the client has gone."""
    for sent, word in enumerate(words(stream.gen.max_tokens), 1):
        if not _next_token(stream, sent):
            return
        stream.record["completion_tokens"] = sent
        yield sent, word if sent == 1 else " " + word


def _next_token(stream: Stream, sent: int) -> bool:
    """Wait for token ``sent``; False if the client has gone (vLLM then aborts the request)."""
    gen = stream.gen
    if gen.token_delay:
        stream.sleep(gen.token_delay)
    if peer_closed(stream.client):
        # Nothing more is generated or counted: ``completion_tokens`` stays what was sent.
        disconnected(stream.record)
        return False
    if gen.fail_after is not None and sent > gen.fail_after:
        raise ConnectionAbortedError("simulated engine failure")
    if gen.stall_after is not None and sent > gen.stall_after:
        stream.sleep(STALL_SECONDS)
    return True


def disconnected(record: dict[str, Any]) -> None:
    """The client left mid-answer: when, for the tests."""
    record["disconnected"], record["disconnected_at"] = True, time.time()


def _head(gen: Generation) -> dict[str, Any]:
    kind = "chat.completion.chunk" if gen.chat else "text_completion"
    return {"id": gen.id, "object": kind, "created": gen.created, "model": gen.model}


def _chunk(gen: Generation, piece: str | None, finish: str | None, sent: int) -> bytes:
    """One chunk of the single choice; ``piece=None`` is the chat role chunk."""
    if gen.chat:
        delta = {"role": "assistant", "content": ""} if piece is None else {"content": piece}
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    else:
        choice = {
            "index": 0,
            "text": piece,
            "logprobs": None,
            "finish_reason": finish,
            "stop_reason": None,
        }
    event = _head(gen) | {"choices": [choice]}
    if gen.continuous_usage:
        event["usage"] = gen.usage or usage(gen.prompt_tokens, sent)
    return frame(event)
