"""A SIMULATED vLLM OpenAI server, for `make run` without a GPU, the tests and the benchmark.

It speaks vLLM's wire formats (models, health, chat and text completions, SSE with usage and
``continuous_usage_stats``, embeddings, the Responses API, Anthropic's Messages API, rerank and
score, tokenize and detokenize, audio transcriptions and translations, vLLM's error shapes) and
generates deterministic text, one word per token, with a configurable delay. It records what it
saw and sent per request under ``/_sim/requests`` (the counts equal the usage it reports) so
tests can compare the gateway's metering with the truth, and counts the ``/health`` and
``/v1/models`` calls (discovery probes) under ``/_sim/probes``. Switches make it behave like
servers that are not vLLM (``--no-health``, ``--no-stream-usage``, ``--sparse-cards``,
``--echo-model``).

    python -m packet.devserver --port 8001 --model simulated/demo --token-delay 0.02

The data flows down the modules: ``cli`` → ``server`` (gevent, the client socket) → ``app``
(routing, the key, records) → one module per API, each listing its ``ROUTES``:
``completions``, ``embeddings``, ``responses`` (and the stored responses), ``messages``
(Anthropic), ``scoring`` (rerank, score), ``tokenizer``, ``audio`` → ``request`` (bodies checked
like vLLM's schema, the ``x_sim_*`` knobs), ``streaming`` (paced tokens, the client leaving),
``protocol`` (wire shapes, errors, SSE frames) and ``tokens`` (the one-word-per-token tokenizer).
"""

from packet.devserver.app import Simulator
from packet.devserver.settings import DEFAULT_MODEL, Settings

__all__ = ["DEFAULT_MODEL", "Settings", "Simulator"]
