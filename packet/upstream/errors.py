"""Upstream failures, raised by the client and discovery and rendered by ``packet.errors``."""

from __future__ import annotations

import orjson


class UpstreamFailure(Exception):
    """Base class. Which failures move on to another replica is decided by the proxy's
    failover (:func:`packet.gateway.failover.send`), by type."""


class ConnectFailed(UpstreamFailure):
    """No connection (refused, DNS, connect timeout) or it dropped before any answer: no byte
    came back, so the request may go to another replica."""


class TimedOut(UpstreamFailure):
    """The endpoint accepted the request but did not answer within the read timeout."""


class BadGateway(UpstreamFailure):
    """The endpoint answered with something unusable (5xx, broken body)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Dropped(BadGateway):
    """The endpoint took the connection, then closed it without an answer or sent something
    that is not HTTP. It is up (so not cooled off), but this attempt got nothing back, so the
    request may go to another replica."""


class NoEndpoint(UpstreamFailure):
    """The caller has no endpoint that is ready (none configured, all down or still loading)."""

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ModelNotServed(UpstreamFailure):
    """A named model that none of the caller's ready endpoints serves."""

    def __init__(self, model: str, available: list[str]) -> None:
        super().__init__(model)
        self.model = model
        self.available = available


class Blocked(UpstreamFailure):
    """The gateway's endpoint policy (``PACKET_ENDPOINT_ALLOW`` / ``_DENY`` and the built-in
    denials) refuses the endpoint's host or an address it resolves to: nothing was sent to it.

    The message names the rule and the address, for the operator and the logs; a client is
    told only that its endpoint's address is not allowed (see :mod:`packet.errors`).
    """


def error_message(content: bytes) -> tuple[str | None, str | None]:
    """Message and param from an upstream's error body (vLLM's nested one, a flat one or a
    bare string)."""
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    error = data.get("error", data)
    if isinstance(error, str):
        return error, None
    if isinstance(error, dict):
        param = error.get("param")
        return error.get("message"), param if isinstance(param, str) else None
    return None, None
