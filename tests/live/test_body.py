"""Reading request bodies under the real gunicorn worker: broken chunked framing, a chunked
body over the limit, and a body trickled in (raw sockets: no client library sends these)."""

import orjson
import pytest
from helpers import raw_request, trickle

pytestmark = pytest.mark.live

LIMIT = 2000
READ_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def live_env():
    return {"PACKET_MAX_BODY_BYTES": str(LIMIT), "PACKET_REQUEST_READ_TIMEOUT": str(READ_TIMEOUT)}


def head(key, framing=b"Transfer-Encoding: chunked"):
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + key.encode() + b"\r\n" + framing + b"\r\n\r\n"
    )


def chunked(body, size=500):
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def chat_body(length):
    """A valid chat request of exactly ``length`` bytes."""
    start = b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "pad": "'
    return start + b"x" * (length - len(start) - 2) + b'"}'


def error_code(answer, status):
    assert answer.status == status, answer.data[:300]
    assert answer.headers["content-type"] == "application/json"
    return orjson.loads(answer.body)["error"]["code"]


@pytest.mark.parametrize(
    ("body", "half_close"),
    [
        pytest.param(b"zz\r\nabc\r\n0\r\n\r\n", False, id="size-zz"),
        pytest.param(b"-5\r\nabc\r\n0\r\n\r\n", False, id="size-negative"),
        pytest.param(b"3\r\nabcdef\r\n0\r\n\r\n", False, id="chunk-longer-than-its-size"),
        pytest.param(b'40\r\n{"messages": ', True, id="cut-in-a-chunk"),
        pytest.param(b"2\r\n{}\r\n0\r\n", True, id="cut-before-the-last-crlf"),
    ],
)
def test_broken_chunked_bodies_are_400(live, body, half_close):
    database, gateway = live.database, live.gateway
    _, key = database.account()
    answer = raw_request(gateway.url, head(key) + body, half_close=half_close)
    assert error_code(answer, 400) == "invalid_request"
    assert answer.closed  # where the next request would start is unknown


def test_a_chunked_body_over_the_limit_is_413(live):
    database, gateway = live.database, live.gateway
    _, key = database.account()
    answer = raw_request(gateway.url, head(key) + chunked(chat_body(LIMIT + 1)), timeout=5)
    assert error_code(answer, 413) == "request_too_large"


def test_a_chunked_body_at_the_limit_is_served(live):
    database, gateway = live.database, live.gateway
    _, key = database.account()
    answer = raw_request(
        gateway.url,
        head(key, b"Transfer-Encoding: chunked\r\nConnection: close") + chunked(chat_body(LIMIT)),
    )
    assert answer.status == 200, answer.data[:300]


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_trickled_body_is_408_within_the_read_timeout(live, framing):
    database, gateway = live.database, live.gateway
    _, key = database.account()
    body = chat_body(200)
    if framing == "chunked":
        start, drip = head(key), chunked(body)
    else:
        start, drip = head(key, b"Content-Length: %d" % len(body)), body
    answer = trickle(gateway.url, start, drip, interval=0.5, limit=READ_TIMEOUT + 5)
    assert answer.closed, f"still open after {answer.elapsed:.1f}s"
    assert error_code(answer, 408) == "request_timeout"
