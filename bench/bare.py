"""The floor: a bare Flask + gevent + requests passthrough, no auth, limits or metering.

Run under the gateway's own gunicorn config (gevent worker, the same GC tuning) and with the
gateway's stack-level techniques — each request prepared from a URL and headers normalised once
and sent through the adapter, not ``Session.post``, which merges settings, cookies and hooks on
every call — so the table shows what the gateway's features cost, not what the stack does:

    BARE_UPSTREAM=http://127.0.0.1:8001 gunicorn -c gunicorn.conf.py 'bench.bare:create_app()'
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import requests
from flask import Flask, Response, request
from requests.adapters import HTTPAdapter
from requests.models import PreparedRequest


def create_app() -> Flask:
    """One pooled adapter; every POST goes to the same path of ``BARE_UPSTREAM`` unchanged."""
    upstream = os.environ["BARE_UPSTREAM"].rstrip("/")
    session = requests.Session()
    session.trust_env = False
    adapter = HTTPAdapter(pool_maxsize=1000, max_retries=0)
    session.mount("http://", adapter)
    headers = dict(session.headers) | {"Content-Type": "application/json"}
    urls: dict[str, str] = {}
    app = Flask(__name__)

    def prepared_url(path: str) -> str:
        url = urls.get(path)
        if url is None:
            request = PreparedRequest()
            request.prepare_url(f"{upstream}/{path}", None)
            url = urls[path] = str(request.url)
        return url

    @app.post("/<path:path>")
    def passthrough(path: str) -> Response:
        prepared = PreparedRequest()
        prepared.prepare_method("POST")
        prepared.url = prepared_url(path)
        prepared.prepare_headers(headers)
        prepared.prepare_body(request.get_data(), None)
        answer = adapter.send(prepared, stream=True, timeout=(5, 600))
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
