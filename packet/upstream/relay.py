"""Relay an upstream Server-Sent Events stream to the client, event by event.

Pure gevent + bytes, no Flask. A reader greenlet pulls from the upstream socket into a queue
so the relay can send ``: ping`` comments while vLLM is silent (long prefill) — which also
lets the server notice a client that went away and close the upstream at once.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any

import gevent
from gevent.queue import Empty, Queue

from .sse import PING, StreamFormat, StreamResult

_DRAIN_SECONDS = 0.5


class _End:
    """The reader's last item when the upstream closed the stream."""


_EOF = _End()
# What the reader greenlet hands the relay: bytes read, the error that ended reading, or _EOF.
_Item = bytes | BaseException | _End


def _pump(raw: Any, queue: Queue[_Item], read_size: int) -> None:
    """Reader greenlet: move bytes from the upstream socket to the queue until EOF or error."""
    try:
        while True:
            data = raw.read1(read_size)
            if not data:
                break
            queue.put(data)
        queue.put(_EOF)
    except Exception as exc:  # noqa: BLE001 - every failure is reported in-band
        queue.put(exc)


class SSERelay:
    """The streamed body: iterates :func:`_relay`; ``on_finish`` runs in ``close``.

    WSGI servers call ``close`` once a response is over, whatever happened (PEP 3333) — gunicorn
    after it has written the final chunk — so metering there keeps it out of the time the
    client waits for the end of the response (and, on a kept-alive connection, for its next
    request). A body closed before its first ``next()`` never runs its generator's ``finally``:
    ``close`` then ends the stream itself (upstream closed, client gone).
    """

    def __init__(
        self, response: Any, on_finish: Callable[[StreamResult], None], **options: Any
    ) -> None:
        self._response = response
        self._on_finish = on_finish
        self._result: StreamResult | None = None
        # What the relay knows so far, readable while the stream runs (usage checkpoints).
        self.progress = StreamResult()
        self._body = _relay(response, self.progress, on_finish=self._ended, **options)
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        return self._body

    def _ended(self, result: StreamResult) -> None:
        self._result = result

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._body.close()
        result = self._result
        if result is None:  # never started
            result = StreamResult(disconnected=True)
            with contextlib.suppress(Exception):  # closing must never skip metering
                self._response.close()
        self._on_finish(result)


def relay_sse(
    response: Any,
    fmt: StreamFormat,
    *,
    keepalive: float,
    on_finish: Callable[[StreamResult], None],
    first_byte_timeout: float = 0.0,
    idle_timeout: float = 0.0,
    read_size: int = 65536,
) -> SSERelay:
    """The client's SSE body in ``fmt``; ``close()`` calls ``on_finish`` once.

    The upstream may stay silent ``first_byte_timeout`` seconds before its first bytes (prefill,
    a queue) and ``idle_timeout`` seconds between bytes after that (0: no bound); past either
    the stream ends with an ``upstream_timeout`` error event. Meanwhile ``: ping`` comments go
    to the client every ``keepalive`` seconds.
    """
    return SSERelay(
        response,
        on_finish,
        fmt=fmt,
        keepalive=keepalive,
        first_byte_timeout=first_byte_timeout,
        idle_timeout=idle_timeout,
        read_size=read_size,
    )


class Silence(Exception):
    """The upstream sent nothing for longer than the stream's bound."""


def _wait(keepalive: float, limit: float, silent_for: float) -> float | None:
    """How long the relay may wait for the upstream before it must ping or give up."""
    if limit > 0:
        left = max(0.0, limit - silent_for)
        return min(keepalive, left) if keepalive > 0 else left
    return keepalive if keepalive > 0 else None


def _relay(
    response: Any,
    result: StreamResult,
    *,
    fmt: StreamFormat,
    keepalive: float,
    on_finish: Callable[[StreamResult], None],
    first_byte_timeout: float,
    idle_timeout: float,
    read_size: int,
) -> Generator[bytes, None, None]:
    queue: Queue[_Item] = Queue()
    inspect = fmt.inspect
    reader = gevent.spawn(_pump, response.raw, queue, read_size)
    buffer = b""
    heard, limit = time.monotonic(), first_byte_timeout
    try:
        while True:
            try:
                item = queue.get(timeout=_wait(keepalive, limit, time.monotonic() - heard))
            except Empty:
                silent_for = time.monotonic() - heard
                if limit > 0 and silent_for >= limit:
                    raise Silence(
                        f"The inference endpoint sent nothing for {silent_for:.0f}s."
                    ) from None
                yield PING
                continue
            heard, limit = time.monotonic(), idle_timeout
            if isinstance(item, _End):
                break
            if isinstance(item, BaseException):
                raise item
            buffer += item
            out = []
            # Walk the events with an index and cut the remainder once: slicing the rest off
            # after each event copied a large read over and over (quadratic in its events).
            start = 0
            while (end := buffer.find(b"\n\n", start)) >= 0:
                kept = inspect(buffer[start : end + 2], result)
                start = end + 2
                if kept is not None:
                    out.append(kept)
            buffer = buffer[start:]
            if out:
                yield b"".join(out)
            if result.done:
                break
        if not result.done:
            result.error = "The inference endpoint closed the stream before it finished."
            yield fmt.error_event(result.error, "upstream_error") + fmt.end
    except GeneratorExit:
        result.disconnected = True
        _hang_up(response)
        reader.join(timeout=_DRAIN_SECONDS)
        _count_unsent(queue, buffer, result, inspect)
        raise
    except gevent.GreenletExit:
        # The worker is being stopped (gunicorn's graceful timeout ran out): still metered.
        result.error = "The gateway stopped before the stream finished."
        raise
    except Exception as exc:  # noqa: BLE001 - after the first byte, errors go in-band
        result.error = _describe(exc)
        yield fmt.error_event(result.error, _code(exc)) + fmt.end
    finally:
        try:
            if result.done:
                # The answer is whole: read the upstream to EOF (so its connection is reused)
                # in the background rather than keep the client's connection waiting for it.
                gevent.spawn(_close, reader, response, _DRAIN_SECONDS)
            else:
                _close(reader, response, 0)
        finally:
            on_finish(result)


def _hang_up(response: Any) -> None:
    """The client left: half-close the upstream connection. The server sees the end of its
    input and stops generating (vLLM aborts the request), and what it sent before that still
    arrives, to be metered; the connection is closed, never pooled, afterwards."""
    raw = response.raw
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if sock is not None:
        # Read to its end, urllib3 would hand the half-closed connection back to the pool.
        raw.release_conn = lambda: None
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)


def _count_unsent(
    queue: Queue[_Item],
    buffer: bytes,
    result: StreamResult,
    inspect: Callable[[bytes, StreamResult], bytes | None],
) -> None:
    """The client left: what the upstream had already sent is metered all the same."""
    while True:
        try:
            item = queue.get_nowait()
        except Empty:
            break
        if isinstance(item, bytes):
            buffer += item
    start = 0
    while (end := buffer.find(b"\n\n", start)) >= 0:
        inspect(buffer[start : end + 2], result)
        start = end + 2


def _close(reader: gevent.Greenlet[..., Any], response: Any, drain: float) -> None:
    """Stop the reader (after ``drain`` seconds at most) and close the upstream response."""
    try:
        if drain:
            reader.join(timeout=drain)
        # Wait for the reader to leave read1(): closing a reader mid-read raises
        # "reentrant call".
        reader.kill(timeout=1)
        response.close()
    except Exception:  # noqa: BLE001 - closing the upstream must never skip metering
        pass


def _describe(exc: BaseException) -> str:
    if isinstance(exc, Silence):
        return str(exc)
    if _code(exc) == "upstream_timeout":
        return "The inference endpoint stopped sending tokens (read timeout)."
    return "The connection to the inference endpoint failed mid-stream."


def _code(exc: BaseException) -> str:
    if isinstance(exc, Silence) or "timeout" in type(exc).__name__.lower():
        return "upstream_timeout"
    return "upstream_error"
