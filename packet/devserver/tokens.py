"""The simulator's tokenizer and its text: one word is one token, both ways.

The counters take bodies already checked by ``request`` (their shapes are known).
"""

from __future__ import annotations

from typing import Any

WORDS = [
    "This",
    "reply",
    "comes",
    "from",
    "the",
    "simulated",
    "vLLM",
    "server",
    "that",
    "ships",
    "with",
    "Packet",
    "gateway",
    "for",
    "local",
    "development",
    "and",
    "tests",
    "so",
    "every",
    "endpoint",
    "can",
    "be",
    "tried",
    "without",
    "a",
    "GPU",
]
CHAT_TEMPLATE_TOKENS = 3  # what a chat template adds per message


def words(count: int) -> list[str]:
    """The deterministic generated text: ``count`` words, one per token."""
    return [WORDS[i % len(WORDS)] for i in range(count)]


def chat_prompt_tokens(messages: list[dict[str, Any]] | None) -> int:
    """Words in the messages plus the template's tokens per message; never 0."""
    return sum(CHAT_TEMPLATE_TOKENS + content_words(m.get("content")) for m in messages or []) or 1


def text_prompt_tokens(prompt: str | list[Any] | None) -> int:
    """Words of a text prompt, or one token per id of a tokenized one; never 0."""
    if prompt is None:
        return 1
    if isinstance(prompt, str):
        return max(1, count(prompt))
    return max(1, sum(_piece(part) for part in prompt))


def count(text: str) -> int:
    """Words of a text: its tokens."""
    return len(text.split())


def content_words(content: str | list[dict[str, Any]] | None) -> int:
    """A message's content: a string, or parts of which only ``text`` counts."""
    if content is None:
        return 0
    if isinstance(content, str):
        return count(content)
    return sum(count(part.get("text") or "") for part in content)


def _piece(part: str | int | list[int]) -> int:
    """One element of a batched or tokenized prompt: a string, a token id, or a list of ids."""
    if isinstance(part, str):
        return count(part)
    if isinstance(part, int):
        return 1
    return len(part)
