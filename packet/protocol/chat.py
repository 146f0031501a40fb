"""Chat and text completions: OpenAI's chunked streams, usage in ``usage``."""

from __future__ import annotations

from typing import Any

from .. import usage
from ..upstream.sse import CHAT_FORMATS, StreamFormat
from .wire import Estimate, OnId, Wire

ASK_USAGE = {"include_usage": True, "continuous_usage_stats": True}


def estimate(body: dict[str, Any], size: int, context: int, default_max: int) -> Estimate:
    """The tokens/min reservation, the money hold's completion cap and the report's bounds."""
    prompt = usage.prompt_estimate(size)
    return Estimate(
        usage.reservation(body, prompt, context, default_max),
        prompt,
        usage.completion_cap(body, context),
        usage.bounds(body, size, context),
        lambda: usage.count_prompt(body),
    )


def stream(body: dict[str, Any], _on_id: OnId | None = None) -> StreamFormat:
    """Ask vLLM for usage on every chunk; the relay strips it back to what the client asked."""
    options = body.get("stream_options") or {}
    body["stream_options"] = ASK_USAGE
    return CHAT_FORMATS[
        bool(options.get("include_usage")), bool(options.get("continuous_usage_stats"))
    ]


def _usage(answer: dict[str, Any]) -> Any:
    return answer.get("usage")


COMPLETIONS = Wire(estimate, _usage, usage.count_answer, stream)
