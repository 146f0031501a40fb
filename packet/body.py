"""Reading a request body: the client's framing faults, oversize and slowness become errors.

Under gunicorn, werkzeug's ``get_data`` leaves three cases unhandled. A malformed chunked body
(a size of ``zz`` or ``-5``, a missing terminator) raises gunicorn's parse errors, which would
be a 500. A chunked body over ``MAX_CONTENT_LENGTH`` is cut at the limit without an error:
gunicorn sets ``wsgi.input_terminated``, so werkzeug wraps the stream in a ``LimitedStream``
whose ``readall`` stops once the limit is reached rather than reading past it (the 413 for a
``Content-Length`` over the limit comes before any read). And nothing bounds the time a client
may take to trickle its body in.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import gevent
from flask import request
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import ClientDisconnected

from .errors import InvalidRequest, PayloadTooLarge, RequestTimeout


class _TimedOut(Exception):
    """Thrown into the reading greenlet. An Exception, where gevent.Timeout is a BaseException,
    so that gunicorn's body reader marks the connection as not reusable and closes it."""


@contextmanager
def receiving(timeout: float) -> Iterator[None]:
    """Reading the body within ``timeout`` seconds: 408 beyond that, 400 when its framing is
    broken or it ends early."""
    try:
        with gevent.Timeout(timeout, _TimedOut):
            yield
    except _TimedOut:
        raise RequestTimeout(
            f"The request body was not received within {timeout:g} seconds."
        ) from None
    except (ParseException, ClientDisconnected):
        raise InvalidRequest(
            "The request body could not be read: its chunked encoding is malformed or it "
            "ended before it was complete."
        ) from None


def read_body(timeout: float) -> bytes:
    """The whole body (cached on the request), received within ``timeout`` seconds; 413 over
    the size limit."""
    with receiving(timeout):
        raw = request.get_data(cache=True)
        limit = request.max_content_length
        # A body exactly at the limit may have been cut there: any byte left means too large.
        if limit is not None and len(raw) == limit and request.input_stream.read(1):
            raise PayloadTooLarge()
    return raw
