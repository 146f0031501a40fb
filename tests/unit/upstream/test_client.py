"""Endpoint URLs are validated when added, and redirects are never followed upstream."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from packet.upstream.client import UpstreamClient, validate_base_url
from packet.upstream.errors import BadGateway, ConnectFailed


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://10.0.0.5:8000", "http://10.0.0.5:8000"),
        ("https://pod.example.com/", "https://pod.example.com"),
        ("http://10.0.0.5:8000/v1/", "http://10.0.0.5:8000"),
        ("  http://[::1]:8000/prefix/v1 ", "http://[::1]:8000/prefix"),
    ],
)
def test_valid_urls_are_normalised(url: str, expected: str) -> None:
    assert validate_base_url(url) == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://10.0.0.5:8000", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("10.0.0.5:8000", "http:// or https://"),
        ("http://", "no host"),
        ("http://user:secret@10.0.0.5:8000", "credentials"),
        ("http://token@10.0.0.5:8000", "credentials"),
        ("http://10.0.0.5:8000/?next=http://evil", "query"),
        ("http://10.0.0.5:99999", "port"),
    ],
)
def test_invalid_urls_are_rejected(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        validate_base_url(url)


def test_cli_refuses_an_invalid_endpoint_url(runner) -> None:
    runner.invoke(args=["accounts", "create", "acme"])
    result = runner.invoke(args=["endpoints", "add", "acme", "http://u:p@10.0.0.5:8000"])
    assert result.exit_code != 0
    assert "credentials" in result.output
    listed = runner.invoke(args=["endpoints", "list", "acme"])
    assert listed.output == ""


class _Redirector(BaseHTTPRequestHandler):
    """Answers everything with a redirect and counts the hits on the redirect target."""

    hits: list[str] = []

    def do_GET(self) -> None:
        if self.path.startswith("/target"):
            _Redirector.hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            return
        self.send_response(307)
        self.send_header("Location", "/target" + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def redirector() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Redirector.hits.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_redirects_are_not_followed(redirector: str) -> None:
    client = UpstreamClient(connect_timeout=2, read_timeout=5, pool_maxsize=4)
    try:
        response = client.send("POST", f"{redirector}/v1/chat/completions", b"{}", {})
        assert response.status_code == 307
        response.close()
        assert client.get(f"{redirector}/health", {}, 2) == (307, None)
    finally:
        client.close()
    assert _Redirector.hits == []


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


def test_send_sends_body_and_headers_and_never_replays_cookies(upstream):
    client = _client()
    for _ in range(2):
        response = client.send(
            "POST", f"{upstream}/v1/chat/completions", b'{"a": 1}', {"X-Request-ID": "req_1"}
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
        client.send("POST", f"{closed}/v1/completions", b"{}", {})


def test_unusable_url_or_header_is_bad_gateway():
    client = _client()
    with pytest.raises(BadGateway):
        client.send("POST", "http://[::1/v1/completions", b"{}", {})
    with pytest.raises(BadGateway):
        client.send("POST", "http://127.0.0.1:9/v1/completions", b"{}", {"Authorization": "a\nb"})
