"""The gunicorn worker's pieces, without a server: its answers and its request-head timers."""

import subprocess
import sys
from types import SimpleNamespace

import orjson
import pytest
from gunicorn.http import errors as http
from processes import ROOT

from packet.server import (
    IdleConnection,
    RequestHead,
    SlowRequestHead,
    describe,
    error_response,
)

CFG = SimpleNamespace(
    limit_request_line=4094, limit_request_fields=100, limit_request_field_size=8190
)


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (http.InvalidRequestLine("GARBAGE"), 400, "invalid_request"),
        (http.InvalidHTTPVersion("HTTP/9.9"), 400, "invalid_request"),
        (http.InvalidHeaderName("Bad Header"), 400, "invalid_request"),
        (http.InvalidHeader("TRANSFER-ENCODING"), 400, "invalid_request"),
        (http.InvalidChunkSize(b"zz"), 400, "invalid_request"),
        (http.LimitRequestLine(9000, 4094), 414, "uri_too_long"),
        (
            http.LimitRequestHeaders("limit request headers fields size"),
            431,
            "request_header_fields_too_large",
        ),
        (http.ExpectationFailed("nothing"), 417, "expectation_failed"),
        (http.UnsupportedTransferCoding("foo"), 501, "not_implemented"),
        # The app's own answer was invalid, or gunicorn's configuration: not the client's fault.
        (http.InvalidResponseHeader("X\r\nY"), 500, "internal_error"),
        (http.ConfigurationProblem("forwarded"), 500, "internal_error"),
        (RuntimeError("secret at 10.0.0.1"), 500, "internal_error"),
    ],
)
def test_every_gunicorn_error_has_a_status_and_code(exc, status, code):
    got_status, got_code, message = describe(exc, CFG)
    assert (got_status, got_code) == (status, code)
    assert "10.0.0.1" not in message and "GARBAGE" not in message


def test_limits_are_named_in_the_message():
    assert "4094 bytes" in describe(http.LimitRequestLine(9000, 4094), CFG)[2]
    assert "8190 bytes" in describe(http.LimitRequestHeaders("x"), CFG)[2]


def test_error_response_is_json_in_the_envelope():
    answer = error_response(431, "request_header_fields_too_large", "Too large.")
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 431 Request Header Fields Too Large"
    assert "Content-Type: application/json" in lines
    assert "Connection: close" in lines
    assert f"Content-Length: {len(body)}" in lines
    assert orjson.loads(body) == {
        "error": {
            "message": "Too large.",
            "type": "invalid_request_error",
            "param": None,
            "code": "request_header_fields_too_large",
        }
    }
    assert (
        orjson.loads(error_response(500, "internal_error", "x").partition(b"\r\n\r\n")[2])["error"][
            "type"
        ]
        == "server_error"
    )


class Watcher:
    def __init__(self, kind, arg):
        self.kind, self.arg = kind, arg
        self.started = None
        self.closed = False

    def start(self, callback, *args):
        self.started = (callback, *args)

    def stop(self):
        self.started = None

    def close(self):
        self.closed = True


class Loop:
    """A stand-in for gevent's loop: records the watchers so a test can fire them."""

    def __init__(self):
        self.watchers = []

    def io(self, fd, events):
        self.watchers.append(Watcher("io", fd))
        return self.watchers[-1]

    def timer(self, seconds):
        self.watchers.append(Watcher("timer", seconds))
        return self.watchers[-1]


def test_request_head_waits_keepalive_for_a_first_byte_then_the_read_timeout():
    loop, greenlet = Loop(), SimpleNamespace(throw=object())
    head = RequestHead(loop, greenlet, 7, idle=5, read=30)
    first_byte, idle, read = loop.watchers
    assert (first_byte.arg, idle.arg, read.arg) == (7, 5, 30)

    head.arm()  # waiting for the next request: keepalive seconds, then closed without an answer
    assert idle.started == (greenlet.throw, IdleConnection)
    assert first_byte.started is not None and read.started is None

    first_byte.started[0]()  # its first byte arrived: the read timeout runs from now
    assert first_byte.started is None and idle.started is None
    assert read.started == (greenlet.throw, SlowRequestHead)

    head.disarm()  # the head is in
    assert not any(w.started for w in loop.watchers)
    head.arm()  # the next request starts idle again
    assert idle.started and not read.started
    head.close()
    assert all(w.closed for w in loop.watchers)


def test_importing_the_worker_leaves_flask_requests_and_drivers_out():
    """gunicorn imports the worker class in its master, before gevent patches anything."""
    probe = (
        "import sys, packet.server; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'flask', 'werkzeug', 'sqlalchemy', 'requests', 'urllib3', 'psycopg', 'redis'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "[]"
