"""gunicorn's own answers and request-head limits, against the real worker (raw sockets).

These requests are malformed on purpose, so no client library would send them.
"""

import socket
import time

import orjson
import pytest
from helpers import raw_request, trickle

pytestmark = pytest.mark.live

READ_TIMEOUT = 2.0
KEEPALIVE = 10  # well above READ_TIMEOUT + 5: gunicorn's own timer cannot pass these tests


@pytest.fixture(scope="module")
def live_env():
    return {
        "PACKET_REQUEST_READ_TIMEOUT": str(READ_TIMEOUT),
        "GUNICORN_KEEPALIVE": str(KEEPALIVE),
    }


def assert_envelope(answer, status, code):
    assert answer.status == status, answer.data[:300]
    assert answer.headers["content-type"] == "application/json"
    assert b"<html" not in answer.data.lower() and b"Traceback" not in answer.data
    error = orjson.loads(answer.body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    return error


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        pytest.param(b"GARBAGE\r\n\r\n", 400, "invalid_request", id="request-line"),
        pytest.param(
            b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n", 400, "invalid_request", id="version"
        ),
        pytest.param(
            b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
            400,
            "invalid_request",
            id="header-name",
        ),
        pytest.param(
            b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long", id="414"
        ),
        pytest.param(
            b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + b"a" * 12_000
            + b"\r\n\r\n",
            431,
            "request_header_fields_too_large",
            id="431",
        ),
        pytest.param(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: foo\r\n\r\n",
            501,
            "not_implemented",
            id="501",
        ),
        pytest.param(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
            b"Expect: a-miracle\r\n\r\n{}",
            417,
            "expectation_failed",
            id="417",
        ),
    ],
)
def test_gunicorns_own_answers_are_in_the_envelope(live, request_bytes, status, code):
    answer = raw_request(live.gateway.url, request_bytes)
    assert_envelope(answer, status, code)
    assert answer.closed


def test_repeated_slashes_are_a_404_never_a_redirect_to_the_host(live):
    answer = raw_request(
        live.gateway.url,
        b"GET /v1//models HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    )
    assert_envelope(answer, 404, "not_found")
    assert "location" not in answer.headers and b"evil.example" not in answer.data


def test_a_trickled_request_head_is_cut_off_within_the_read_timeout(live):
    head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100 + b"\r\n\r\n"
    answer = trickle(live.gateway.url, b"", head, interval=0.5, limit=READ_TIMEOUT + 5)
    assert answer.closed, f"still open after {answer.elapsed:.1f}s"
    assert answer.data == b""  # the bytes might have been the rest of a body: no answer


class KeptConnection:
    """One kept-alive connection, for GET requests with small answers."""

    def __init__(self, url):
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)

    def get(self, path):
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        for _ in range(100):
            if b"\r\n\r\n" in data:
                head, _, body = data.partition(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                if len(body) >= length:
                    return int(head.split()[1])
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed the kept-alive connection"
            data += chunk
        raise AssertionError("no complete answer")

    def closed_within(self, seconds):
        self.sock.settimeout(seconds)
        try:
            return self.sock.recv(65536) == b""
        except TimeoutError:
            return False


def test_an_idle_kept_alive_connection_lasts_keepalive_not_the_read_timeout(live):
    connection = KeptConnection(live.gateway.url)
    try:
        assert connection.get("/health") == 200
        time.sleep(READ_TIMEOUT + 1)  # idle longer than the read timeout, well within keepalive
        assert connection.get("/health") == 200
        assert connection.get("/v1/models") == 401
        # ... and an idle connection is still closed after keepalive, as gunicorn does.
        assert connection.closed_within(KEEPALIVE + 5)
    finally:
        connection.sock.close()
