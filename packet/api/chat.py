"""POST /v1/chat/completions and /v1/completions."""

from ..gateway import routes
from . import bp
from .serving import proxy

proxy(bp, "/chat/completions", routes.CHAT, "Chat completion, streamed as SSE when `stream`.")
proxy(bp, "/completions", routes.COMPLETIONS, "Text completion, streamed as SSE when `stream`.")
