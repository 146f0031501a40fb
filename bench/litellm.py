"""The LiteLLM proxy as a fourth target (``make bench-litellm``): a peer figure for the table.

LiteLLM comes from PyPI, pinned in ``bench/requirements-litellm.txt``, into its own venv
(``.venv-litellm``), so its hundred-odd dependencies never meet the gateway's and neither CI
nor ``make test`` installs it. It runs as its CLI starts it by default — uvicorn with one
worker, inside the ``litellm`` process itself — with no database, a master key (requests carry
a Bearer key, as the gateway's do) and the simulated vLLM as an OpenAI-compatible upstream.

It must only talk to 127.0.0.1: the model cost map is read from the package instead of GitHub,
telemetry is vetoed, proxy variables are dropped and the repository's ``.env`` is not read.
"""

from __future__ import annotations

import json
from pathlib import Path

from .procs import ROOT, Server, base_env, child_pids

VENV = ROOT / ".venv-litellm"
MASTER_KEY = "sk-bench-litellm"
READY = "/health/readiness"
# The proxy was ready 6–15 s after start here (imports); allow for a busy machine.
START_SECONDS = 120.0
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")


def version() -> str:
    """The installed version, from its dist-info (importing LiteLLM would take seconds)."""
    for info in VENV.glob("lib/python*/site-packages/litellm-*.dist-info"):
        return info.name.removeprefix("litellm-").removesuffix(".dist-info")
    raise RuntimeError(f"LiteLLM is not installed in {VENV}: run `make bench-litellm`")


def prepare(folder: Path, model: str, upstream: str, port: int) -> list[str]:
    """Write the proxy's config into ``folder``; return the command that serves it on
    127.0.0.1:``port``."""
    config = {
        "model_list": [
            {
                "model_name": model,
                "litellm_params": {
                    "model": f"openai/{model}",
                    "api_base": f"{upstream}/v1",
                    "api_key": "unused",
                },
            }
        ],
        "general_settings": {"master_key": MASTER_KEY},
    }
    path = folder / "litellm-config.yaml"
    path.write_text(json.dumps(config, indent=1))  # JSON is YAML
    return [
        *(str(VENV / "bin" / "litellm"), "--config", str(path)),
        *("--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"),
    ]


def environment() -> dict[str, str]:
    """This environment without LiteLLM or proxy settings, plus what keeps it off the network."""
    env = {
        k: v
        for k, v in base_env().items()
        if not k.startswith("LITELLM_") and k.lower() not in _PROXY_VARIABLES
    }
    env.update(
        LITELLM_MODE="PRODUCTION",  # DEV, the default, loads a .env from the working directory
        LITELLM_LOCAL_MODEL_COST_MAP="True",  # else it fetches the cost map from GitHub
        LITELLM_TELEMETRY_DISABLED="True",  # telemetry is opt-in in this version; veto it anyway
    )
    return env


def serving_pid(server: Server) -> int:
    """The process whose CPU a request costs: with one worker, uvicorn serves inside the
    ``litellm`` process. A forked worker would make that figure wrong, so refuse one."""
    children = child_pids(server.proc.pid)
    if children:
        raise RuntimeError(f"litellm: expected no worker processes, found {children}")
    return server.proc.pid
