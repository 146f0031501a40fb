"""The gunicorn worker: gevent's, with gunicorn's own answers in the envelope and a bounded
request head.

gunicorn answers some requests before the app sees them (a malformed request line or header,
a request line or header over its limits, an unsupported Transfer-Encoding) with an HTML page:
:meth:`GeventWorker.handle_error` writes those answers in the JSON envelope instead. gunicorn
also bounds the head of a request only by the one ``keepalive`` timer that covers the idle wait
before it, and not at all with ``keepalive = 0``, so a client trickling its headers holds the
connection as long as that allows. :class:`RequestHead` gives the idle wait ``keepalive``
seconds, as before, and the request line and headers ``PACKET_REQUEST_READ_TIMEOUT`` seconds
from their first byte; the app bounds the body (packet.body).

gunicorn imports this module in its master process, before the worker patches anything with
gevent: it imports gunicorn, gevent, orjson and the package's standard-library modules only,
never Flask, requests or a database driver.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from http import HTTPStatus
from typing import Any

import gevent
import orjson
from gunicorn import util
from gunicorn.http import errors as http
from gunicorn.workers import ggevent

from .config import request_read_timeout
from .envelope import INTERNAL_ERROR, error_body

_READABLE = 1  # READ, in gevent's loops (libev and libuv alike)
_UNTIMED = contextlib.nullcontext()

# Faults gunicorn finds in the app's answer or its own configuration: a 500, like any bug.
# (types-gunicorn 26.2 predates these two, added in gunicorn 27.)
_SERVER_FAULTS = (
    http.InvalidResponseHeader,  # type: ignore[attr-defined]
    http.InvalidResponseHeaderName,  # type: ignore[attr-defined]
    http.ConfigurationProblem,
)
# The client's faults, first match wins: (exceptions, status, code, message).
_CLIENT_FAULTS: tuple[tuple[Any, int, str, str], ...] = (
    (
        http.LimitRequestLine,
        414,
        "uri_too_long",
        "The request line is longer than {cfg.limit_request_line} bytes.",
    ),
    (
        http.LimitRequestHeaders,
        431,
        "request_header_fields_too_large",
        "The request headers are too large: at most {cfg.limit_request_fields} fields of at "
        "most {cfg.limit_request_field_size} bytes each.",
    ),
    (
        http.UnsupportedTransferCoding,
        501,
        "not_implemented",
        "This Transfer-Encoding is not supported: send the body with Content-Length or chunked.",
    ),
    (
        http.ExpectationFailed,
        417,
        "expectation_failed",
        "Only 'Expect: 100-continue' is supported.",
    ),
    (
        (http.InvalidRequestLine, http.InvalidRequestMethod, http.InvalidHTTPVersion),
        400,
        "invalid_request",
        "The request line is malformed: send 'METHOD /path HTTP/1.1'.",
    ),
    (
        (http.InvalidChunkSize, http.ChunkMissingTerminator, http.InvalidChunkExtension),
        400,
        "invalid_request",
        "The chunked request body is malformed.",
    ),
    (
        (http.ParseException, ssl.SSLError),
        400,
        "invalid_request",
        "The request is malformed (a header, its framing or the connection's TLS).",
    ),
)


class IdleConnection(Exception):
    """No byte of a next request within ``keepalive`` seconds: closed without an answer."""


class SlowRequestHead(Exception):
    """The request line and headers took longer than the read timeout from their first byte."""


def describe(exc: BaseException, cfg: Any) -> tuple[int, str, str]:
    """Status, code and message for an error gunicorn met outside the app (``cfg``: its limits)."""
    if not isinstance(exc, _SERVER_FAULTS):
        for kinds, status, code, message in _CLIENT_FAULTS:
            if isinstance(exc, kinds):
                return status, code, message.format(cfg=cfg)
    return 500, "internal_error", INTERNAL_ERROR


def error_response(status: int, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 answer carrying the envelope; the connection closes after it."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    body = orjson.dumps(error_body(message, kind, code))
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


class RequestHead:
    """The time limits on a connection's next request head, armed while gunicorn reads it.

    ``idle`` seconds for its first byte (the keep-alive wait), then ``read`` seconds for the rest
    of the request line and headers; on expiry the exception is thrown into ``greenlet``. Raw
    libev watchers made once per connection: arming and disarming them costs less than the
    gevent.Timeout gunicorn creates around each request instead.
    """

    def __init__(self, loop: Any, greenlet: Any, fd: int, *, idle: float, read: float) -> None:
        self._throw = greenlet.throw
        self._first_byte = loop.io(fd, _READABLE)
        self._idle = loop.timer(idle)
        self._read = loop.timer(read)

    def arm(self) -> None:
        self._first_byte.start(self._reading)
        self._idle.start(self._throw, IdleConnection)

    def _reading(self) -> None:
        self._first_byte.stop()
        self._idle.stop()
        self._read.start(self._throw, SlowRequestHead)

    def disarm(self) -> None:
        self._first_byte.stop()
        self._idle.stop()
        self._read.stop()

    def close(self) -> None:
        for watcher in (self._first_byte, self._idle, self._read):
            watcher.close()


class GeventWorker(ggevent.GeventWorker):
    """gunicorn's gevent worker, answering in the envelope and bounding each request head."""

    def run(self) -> None:
        # gunicorn has applied its `env` setting to os.environ by now (init_process); the app's
        # Settings do not exist in the worker itself, so it reads the variable the same way.
        self.read_timeout = request_read_timeout()
        self.heads: dict[socket.socket, RequestHead] = {}
        super().run()

    def handle(self, listener: socket.socket, client: socket.socket, addr: Any) -> None:
        head = RequestHead(
            gevent.get_hub().loop,
            gevent.getcurrent(),
            client.fileno(),
            # Without keep-alive, gunicorn waits for the one request with no limit at all.
            idle=self.cfg.keepalive or self.read_timeout,
            read=self.read_timeout,
        )
        self.heads[client] = head
        head.arm()
        try:
            super().handle(listener, client, addr)
        finally:
            head.close()
            del self.heads[client]

    # types-gunicorn says timeout_ctx returns None; gunicorn enters it as a context manager
    # (GeventWorker returns a gevent.Timeout).
    def timeout_ctx(self) -> contextlib.nullcontext[None]:  # type: ignore[override]
        """No timer of gunicorn's around reading a request: the connection's RequestHead."""
        return _UNTIMED

    # types-gunicorn says bool; GeventWorker.handle_request returns None (no caller reads it).
    def handle_request(  # type: ignore[override]
        self, listener_name: Any, req: Any, sock: socket.socket, addr: Any
    ) -> None:
        head = self.heads[sock]
        head.disarm()  # the head is in; reading the body is the app's to bound
        try:
            super().handle_request(listener_name, req, sock, addr)
        finally:
            head.arm()  # the next request (and the drain of what is left of this body)

    def handle_http2(
        self, listener: socket.socket, client: socket.socket, addr: Any, *args: Any, **kwargs: Any
    ) -> None:
        # One HTTP/2 connection carries many requests: the HTTP/1 head limits do not apply.
        self.heads[client].disarm()
        super().handle_http2(listener, client, addr, *args, **kwargs)

    def handle_error(self, req: Any, client: socket.socket, addr: Any, exc: BaseException) -> None:
        """Answer in the envelope where gunicorn writes an HTML page; close slow clients."""
        ip = addr[0] if addr else ""
        if isinstance(exc, IdleConnection):
            return  # closed without an answer, as gunicorn's keep-alive timeout does
        if isinstance(exc, SlowRequestHead):
            # No answer either: the bytes may be the rest of an unread body, not a new request.
            self.log.info("Request head not received in %gs from ip=%s", self.read_timeout, ip)
            return
        status, code, message = describe(exc, self.cfg)
        if status < 500:
            self.log.warning("Invalid request from ip=%s: %s", ip, exc)
        else:
            self.log.exception("Error handling request")
        try:
            util.write_nonblock(client, error_response(status, code, message))
        except OSError:
            self.log.debug("Failed to send error message.")
