"""How many tokens a request may use, and how many it is billed for.

Admission needs two estimates before the upstream answers: the tokens reserved against the
tier's tokens/min and the most the request can cost (the money hold). Both are bounded by the
model's context length, so no body can make a hold or a counter arbitrarily large.

An endpoint belongs to the account that pays for it, so the usage it reports is untrusted
input: a count is billed only when it is an integer ≥ 0 within what the request could have
produced; otherwise the gateway's own count is billed and the usage row says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Where usage came from (the usage row's ``usage_source``).
UPSTREAM, COUNTED = "upstream", "counted"
# Longer contexts in a model card are not believed (the card comes from the upstream too).
_MAX_CONTEXT = 2**31 - 1


@dataclass(frozen=True)
class Bounds:
    """The most tokens one request can have: its prompt(s) and its completion(s)."""

    prompt: int
    completion: int


@dataclass(frozen=True)
class Usage:
    """Tokens to bill, and whether the upstream's own report was used."""

    prompt: int
    completion: int
    source: str = UPSTREAM

    @property
    def total(self) -> int:
        return self.prompt + self.completion


def context_length(card: dict[str, Any] | None, assumed: int) -> int:
    """The model's ``max_model_len``, or ``assumed`` when the model card does not say."""
    limit = (card or {}).get("max_model_len")
    return limit if type(limit) is int and 0 < limit <= _MAX_CONTEXT else assumed


def prompt_estimate(body_bytes: int) -> int:
    """Prompt tokens guessed from the body's size (a token is about four bytes of JSON)."""
    return body_bytes // 4 + 1


def prompt_count(body: dict[str, Any]) -> int:
    """How many prompts a request carries: a completions ``prompt`` may be a list of them."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int):
        return len(prompt)
    return 1


def choices(body: dict[str, Any]) -> int:
    """Sequences generated per prompt (``n``, or ``best_of`` when larger)."""
    return max(body.get("n") or 1, body.get("best_of") or 1)


def requested_tokens(body: dict[str, Any]) -> int | None:
    """The completion length the client asked for, if any."""
    return body.get("max_completion_tokens") or body.get("max_tokens")


def reservation(body: dict[str, Any], prompt: int, context: int, default_max: int) -> int:
    """Tokens reserved against tokens/min: the prompt plus one choice's completion.

    Unlike :func:`completion_cap`, an unset ``max_tokens`` counts as ``default_max``: the
    reservation is settled to the real usage within the minute, and reserving a whole context
    length would refuse callers far from their budget.
    """
    return prompt + min(requested_tokens(body) or default_max, context)


def completion_cap(body: dict[str, Any], context: int) -> int:
    """The most completion tokens a request can be billed for (every prompt, every choice).

    vLLM generates up to the context length when ``max_tokens`` is unset, and never past it.
    """
    per_choice = min(requested_tokens(body) or context, context)
    return per_choice * choices(body) * prompt_count(body)


def bounds(body: dict[str, Any], body_bytes: int, context: int) -> Bounds:
    """What a well-behaved upstream can report for this request."""
    prompts = prompt_count(body)
    # Token ids in JSON take at least two bytes each; text and images may take more tokens
    # than bytes, but never more than the context length.
    return Bounds(max(body_bytes, context * prompts), completion_cap(body, context))


def _reported(report: Any, name: str, bound: int) -> int | None:
    value = report.get(name) if isinstance(report, dict) else None
    return value if type(value) is int and 0 <= value <= bound else None


def checked(
    report: Any, limits: Bounds, *, counted_prompt: int, counted_completion: int, floor: int = 0
) -> Usage:
    """The usage to bill: the upstream's ``report`` where it is plausible, else our count.

    ``floor`` is the fewest completion tokens the answer can have had (each non-empty streamed
    delta carries at least one): a report below it is not believed either.
    """
    prompt = _reported(report, "prompt_tokens", limits.prompt)
    completion = _reported(report, "completion_tokens", limits.completion)
    if completion is not None and completion < min(floor, limits.completion):
        completion = None
    if prompt is not None and completion is not None:
        return Usage(prompt, completion)
    return Usage(
        min(counted_prompt, limits.prompt) if prompt is None else prompt,
        min(counted_completion, limits.completion) if completion is None else completion,
        COUNTED,
    )


def count_answer(answer: Any) -> int:
    """Completion tokens guessed from a JSON answer's text (four characters a token)."""
    chars = 0
    for choice in (answer.get("choices") if isinstance(answer, dict) else None) or ():
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        if isinstance(message, dict):
            chars += _text_length(message.get("content"))
            chars += _text_length(message.get("reasoning_content"))
            for call in message.get("tool_calls") or ():
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict):
                    chars += _text_length(function.get("arguments"))
        chars += _text_length(choice.get("text"))
    return -(-chars // 4)


MESSAGE_TOKENS = 4  # what a chat template adds around each message, about


def count_prompt(body: dict[str, Any]) -> int:
    """Prompt tokens guessed from a chat's messages or a completion's prompt (four characters
    a token, token ids one each): what is billed when the upstream reports no usage."""
    chars, tokens = 0, 0
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else ():
        if not isinstance(message, dict):
            continue
        tokens += MESSAGE_TOKENS
        content = message.get("content")
        if isinstance(content, list):
            chars += sum(_text_length(p.get("text")) for p in content if isinstance(p, dict))
        else:
            chars += _text_length(content)
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                chars += _text_length(function.get("arguments"))
    prompt = body.get("prompt")
    for part in prompt if isinstance(prompt, list) else [prompt]:
        if isinstance(part, int):
            tokens += 1
        elif isinstance(part, list):
            tokens += len(part)
        else:
            chars += _text_length(part)
    return max(1, tokens + -(-chars // 4))


def _text_length(value: Any) -> int:
    return len(value) if isinstance(value, str) else 0
