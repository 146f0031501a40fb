"""A whole (non-streamed) chat or text completion."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from packet.devserver.protocol import usage
from packet.devserver.request import Generation
from packet.devserver.tokens import words


def complete(
    gen: Generation, record: dict[str, Any], sleep: Callable[[float], None]
) -> dict[str, Any]:
    """Take as long as the stream would (prefill, then every token), then answer at once."""
    if gen.first_token_delay:
        sleep(gen.first_token_delay)
    if gen.token_delay:
        sleep(gen.token_delay * gen.max_tokens)
    text = " ".join(words(gen.max_tokens))
    record["completion_tokens"], record["finished"] = gen.max_tokens, True
    return {
        "id": gen.id,
        "object": "chat.completion" if gen.chat else "text_completion",
        "created": gen.created,
        "model": gen.model,
        "choices": [_choice(gen.chat, text)],
        "usage": gen.usage or usage(gen.prompt_tokens, gen.max_tokens),
    }


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
