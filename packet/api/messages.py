"""Anthropic's Messages API (vLLM serves it); Anthropic's envelope on its errors."""

from ..gateway import routes
from . import bp
from .serving import proxy

proxy(bp, "/messages", routes.MESSAGES, "An Anthropic message; Anthropic's events when `stream`.")
proxy(bp, "/messages/count_tokens", routes.COUNT_TOKENS, "Tokens a message would take.")
