"""What the simulated server is told at start: its models, pacing, limits and failures."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MODEL = "simulated/vllm-demo"


@dataclass(frozen=True)
class Settings:
    """The simulator's configuration, fixed for the life of the process (the CLI's flags)."""

    models: tuple[str, ...] = (DEFAULT_MODEL,)
    token_delay: float = 0.0
    first_token_delay: float = 0.0
    default_tokens: int = 16
    max_model_len: int = 4096
    api_key: str | None = None
    loading_seconds: float = 0.0
    fail_status: int | None = None
    # Behaviours of servers that are not vLLM, for the gateway's sake:
    no_health: bool = False  # GET /health is a 404 (llama.cpp, Ollama)
    no_stream_usage: bool = False  # streams never carry usage, whatever the client asked
    sparse_cards: bool = False  # model cards with only id, object and owned_by
    echo_model: bool = False  # any model name is served, and echoed back
