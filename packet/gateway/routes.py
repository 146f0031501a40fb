"""The proxied routes, one declarative entry each."""

from __future__ import annotations

from .. import schemas
from .inbound import Route

CHAT = Route("chat.completions", "/v1/chat/completions", schemas.CHAT)
COMPLETIONS = Route("completions", "/v1/completions", schemas.COMPLETION)
