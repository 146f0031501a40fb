"""A SIMULATED vLLM OpenAI server, for `make run` without a GPU, the tests and the benchmark.

It speaks vLLM's wire formats (models, health, chat and text completions, SSE with usage and
``continuous_usage_stats``, vLLM's error shapes) and generates deterministic text, one word per
token, with a configurable delay. It records what it saw and sent per request under
``/_sim/requests`` so tests can compare the gateway's metering with the truth, and counts the
``/health`` and ``/v1/models`` calls (discovery probes) under ``/_sim/probes``.

    python -m packet.devserver --port 8001 --model simulated/demo --token-delay 0.02

The data flows down the modules: ``cli`` → ``server`` (gevent, the client socket) → ``app``
(routing, records) → ``request`` (the body checked like vLLM's schema) → ``completions`` or
``streaming`` → ``protocol`` (wire shapes) and ``tokens`` (the one-word-per-token tokenizer).
"""

from packet.devserver.app import Simulator
from packet.devserver.settings import DEFAULT_MODEL, Settings

__all__ = ["DEFAULT_MODEL", "Settings", "Simulator"]
