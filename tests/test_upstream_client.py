"""UpstreamClient against a tiny local HTTP server: what goes on the wire, how failures map."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from packet.upstream.client import UpstreamClient
from packet.upstream.errors import BadGateway, ConnectFailed


class _Recorder(BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append(dict(self.headers) | {"body": body.decode(), "path": self.path})
        self.send_response(200)
        self.send_header("Set-Cookie", "session=upstream-a")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[str]:
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _client() -> UpstreamClient:
    return UpstreamClient(connect_timeout=1, read_timeout=5, pool_maxsize=4)


def test_post_sends_body_and_headers_and_never_replays_cookies(upstream):
    client = _client()
    for _ in range(2):
        response = client.post(
            f"{upstream}/v1/chat/completions", b'{"a": 1}', {"X-Request-ID": "req_1"}
        )
        assert response.status_code == 200 and response.content == b"{}"
        response.close()
    first, second = _Recorder.seen
    assert first["path"] == "/v1/chat/completions" and first["body"] == '{"a": 1}'
    assert first["X-Request-ID"] == "req_1"
    assert first["User-Agent"].startswith("python-requests/")
    assert "Cookie" not in second


def test_connection_refused_is_connect_failed(upstream):
    client = _client()
    closed = upstream.rsplit(":", 1)[0] + ":9"
    with pytest.raises(ConnectFailed):
        client.post(f"{closed}/v1/completions", b"{}", {})


def test_unusable_url_or_header_is_bad_gateway():
    client = _client()
    with pytest.raises(BadGateway):
        client.post("http://[::1/v1/completions", b"{}", {})
    with pytest.raises(BadGateway):
        client.post("http://127.0.0.1:9/v1/completions", b"{}", {"Authorization": "a\nb"})
