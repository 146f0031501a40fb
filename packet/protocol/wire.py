"""What the pipeline needs to know of a family's wire format, as one value per family."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..upstream.sse import StreamFormat
from ..usage import Bounds


@dataclass(frozen=True)
class Estimate:
    """A request's cost before it runs: tokens reserved against tokens/min (None: the request
    is counted, no tokens), the prompt tokens guessed (high: the money held), the most
    completion tokens billable, the most a well-behaved upstream can report
    (:class:`~packet.usage.Bounds`), and how to count the prompt billed when the upstream
    reports none (``count_prompt``, only called then; None: ``prompt``)."""

    reserve: int | None
    prompt: int
    completion_cap: int
    bounds: Bounds
    count_prompt: Callable[[], int | None] | None = None

    @property
    def billed_prompt(self) -> int:
        """The prompt tokens billed without a report from the upstream (never above the
        estimate the money was held for; the estimate where the prompt cannot be counted)."""
        counted = None if self.count_prompt is None else self.count_prompt()
        return self.prompt if counted is None else min(self.prompt, counted)


OnId = Callable[[str], None]
# Estimates read (body, body size in bytes, the model's context length, default max_tokens).
Estimator = Callable[[dict[str, Any], int, int, int], Estimate]


@dataclass(frozen=True)
class Wire:
    """One family: ``estimate`` before the call; ``usage`` reads a JSON answer's report as
    ``{"prompt_tokens", "completion_tokens"}`` (checked by :func:`packet.usage.checked`);
    ``count`` guesses the completion tokens of a JSON answer whose report is not believed;
    ``stream`` (None: never streams) asks the upstream for usage in the body and gives the
    format its events are read in; it hears the id of the answer as soon as an event names it
    (``on_id``: stored responses are remembered by their id); ``text_answers``: a success may
    be plain text (a transcript as text, srt or vtt), relayed as it is, its tokens counted."""

    estimate: Estimator
    usage: Callable[[dict[str, Any]], Any]
    count: Callable[[dict[str, Any]], int]
    stream: Callable[[dict[str, Any], OnId | None], StreamFormat] | None = None
    text_answers: bool = False


NO_TOKENS = {"prompt_tokens": 0, "completion_tokens": 0}


def _free(_body: dict[str, Any], _size: int, _context: int, _default: int) -> Estimate:
    return Estimate(None, 0, 0, Bounds(0, 0))


# Routes that are counted against requests/min and charge no tokens (tokenize, count_tokens,
# reading a stored response).
FREE = Wire(_free, lambda _answer: NO_TOKENS, lambda _answer: 0)


def prompt_only(inputs: Callable[[dict[str, Any]], int]) -> Estimator:
    """The estimate of a route that bills its input only (embeddings, rerank, score);
    ``inputs`` counts the texts in a body, each of which may fill a context."""

    def estimate(body: dict[str, Any], size: int, context: int, _default: int) -> Estimate:
        prompt = size // 4 + 1
        return Estimate(prompt, prompt, 0, Bounds(max(size, context * inputs(body)), 0))

    return estimate


def generation(
    max_tokens: Callable[[dict[str, Any]], int | None],
    count_prompt: Callable[[dict[str, Any]], int | None],
) -> Estimator:
    """The estimate of a route that generates one answer (Responses, Anthropic Messages):
    ``max_tokens`` reads the body's completion limit, ``count_prompt`` counts its prompt from
    the texts (None: it cannot, e.g. a previous response's context). The prompt may be longer
    than the body, never longer than the model's context."""

    def estimate(body: dict[str, Any], size: int, context: int, default: int) -> Estimate:
        prompt = size // 4 + 1
        wanted = max_tokens(body)
        cap = min(wanted or context, context)
        return Estimate(
            prompt + min(wanted or default, context),
            prompt,
            cap,
            Bounds(max(size, context), cap),
            lambda: count_prompt(body),
        )

    return estimate


def input_output(report: Any) -> Any:
    """A usage report counted in ``input_tokens``/``output_tokens`` (Responses, Anthropic) in
    the meter's terms."""
    if not isinstance(report, dict):
        return None
    return {
        "prompt_tokens": report.get("input_tokens"),
        "completion_tokens": report.get("output_tokens"),
    }


def answer_input_output(answer: dict[str, Any]) -> Any:
    """The ``usage`` of a whole answer, counted in ``input_tokens``/``output_tokens``."""
    return input_output(answer.get("usage"))


def text_tokens(texts: Any) -> int:
    """Tokens guessed from answer texts (four characters a token)."""
    return -(-sum(len(text) for text in texts if isinstance(text, str)) // 4)


def as_dicts(value: Any) -> list[dict[str, Any]]:
    """The dict items of a list that came over the wire (anything else: none)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
