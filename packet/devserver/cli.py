"""``python -m packet.devserver``: the flags, then the server."""

from __future__ import annotations

import argparse
import os
import time

from packet.devserver.app import Simulator
from packet.devserver.server import serve
from packet.devserver.settings import DEFAULT_MODEL, Settings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; ``--port`` defaults to ``$SIM_PORT`` (``make run``), else 8001."""
    parser = argparse.ArgumentParser(
        prog="python -m packet.devserver",
        description="Simulated vLLM OpenAI server (for development and tests).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SIM_PORT", "8001")))
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        help=f"model id to serve (repeatable; default {DEFAULT_MODEL})",
    )
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds between tokens")
    parser.add_argument(
        "--first-token-delay", type=float, default=0.0, help="simulated prefill time"
    )
    parser.add_argument(
        "--default-tokens", type=int, default=16, help="tokens when max_tokens is not set"
    )
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument(
        "--api-key", default=None, help="require this Bearer key on /v1 (like vllm --api-key)"
    )
    parser.add_argument(
        "--loading-seconds",
        type=float,
        default=0.0,
        help="answer 503 (model loading) for this long after start",
    )
    parser.add_argument(
        "--listen-delay",
        type=float,
        default=0.0,
        help="refuse connections for this long after start (vLLM before it binds)",
    )
    parser.add_argument(
        "--fail-status",
        type=int,
        default=None,
        help="answer every completion with this HTTP status (e.g. 503, an overloaded engine)",
    )
    unlike = parser.add_argument_group("servers that are not vLLM")
    unlike.add_argument("--no-health", action="store_true", help="GET /health is a 404")
    unlike.add_argument(
        "--no-stream-usage", action="store_true", help="never send usage in stream chunks"
    )
    unlike.add_argument(
        "--sparse-cards", action="store_true", help="model cards with only id, object, owned_by"
    )
    unlike.add_argument(
        "--echo-model", action="store_true", help="accept any model name and echo it back"
    )
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    """The flags as ``Settings``; the 503s of loading also cover the time before listening."""
    return Settings(
        models=tuple(args.models or [DEFAULT_MODEL]),
        token_delay=args.token_delay,
        first_token_delay=args.first_token_delay,
        default_tokens=args.default_tokens,
        max_model_len=args.max_model_len,
        api_key=args.api_key,
        loading_seconds=args.loading_seconds + args.listen_delay,
        fail_status=args.fail_status,
        no_health=args.no_health,
        no_stream_usage=args.no_stream_usage,
        sparse_cards=args.sparse_cards,
        echo_model=args.echo_model,
    )


def main(argv: list[str] | None = None) -> None:
    """Patch for gevent first (before any socket or sleep is used), then serve forever."""
    from gevent import monkey

    monkey.patch_all()
    args = parse_args(argv)
    settings = settings_from(args)
    app = Simulator(settings)
    if args.listen_delay:
        time.sleep(args.listen_delay)
    serve(args.host, args.port, app, settings.models)
