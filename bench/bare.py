"""The floor: a bare Flask + gevent + requests passthrough, no auth, limits or metering.

Run under the gateway's own gunicorn config (gevent worker) so the table can show what the
gateway's features cost on top of the stack itself:

    BARE_UPSTREAM=http://127.0.0.1:8001 gunicorn -c gunicorn.conf.py 'bench.bare:create_app()'
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import requests
from flask import Flask, Response, request
from requests.adapters import HTTPAdapter


def create_app() -> Flask:
    """One pooled session; every POST goes to the same path of ``BARE_UPSTREAM`` unchanged."""
    upstream = os.environ["BARE_UPSTREAM"].rstrip("/")
    session = requests.Session()
    session.trust_env = False
    session.mount("http://", HTTPAdapter(pool_maxsize=1000, max_retries=0))
    app = Flask(__name__)

    @app.post("/<path:path>")
    def passthrough(path: str) -> Response:
        answer = session.post(
            f"{upstream}/{path}",
            data=request.get_data(),
            headers={"Content-Type": "application/json"},
            stream=True,
            timeout=(5, 600),
        )
        if answer.headers.get("Content-Type", "").startswith("text/event-stream"):
            return Response(_relay(answer), answer.status_code, mimetype="text/event-stream")
        content = answer.content
        answer.close()
        return Response(content, answer.status_code, mimetype="application/json")

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _relay(answer: requests.Response) -> Iterator[bytes]:
    """Bytes as they arrive; the upstream is closed when the client goes away."""
    try:
        while chunk := answer.raw.read1(65536):
            yield chunk
    finally:
        answer.close()
