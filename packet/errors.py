"""The error hierarchy, and the renderer of every error the app sees as OpenAI's envelope.

Views and services raise :class:`APIError` subclasses, which are werkzeug HTTP exceptions
(``code`` is the status, ``description`` the message); werkzeug's own HTTP errors, marshmallow's
validation errors and anything unexpected are converted here, so a client only ever sees
``{"error": {"message", "type", "param", "code"}}`` — never HTML or a traceback. Two writers
outside the app build the same envelope from :mod:`packet.envelope`: the SSE relay's in-band
errors and the gunicorn worker's own answers (:mod:`packet.server`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from .envelope import INTERNAL_ERROR, error_body
from .exchange import current
from .protocol import messages
from .schemas import first_error

log = logging.getLogger("packet.errors")

NO_ENDPOINT_HINT = (
    "No running inference endpoint found. Make sure your GPU pod is running, vLLM is deployed "
    "and port 8000 is exposed as a service, then wait for the model to finish loading."
)


class APIError(HTTPException):
    """An HTTP error (werkzeug's ``code`` and ``description``) with OpenAI's envelope fields:
    ``type``, ``error_code`` (the envelope's ``code``) and ``param``."""

    code = 500
    description = INTERNAL_ERROR
    type = "server_error"
    error_code = "internal_error"

    def __init__(
        self,
        message: str | None = None,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message or None)  # None keeps the class's description
        self.param = param
        self.headers = headers or {}

    @property
    def message(self) -> str:
        return self.description or INTERNAL_ERROR

    def body(self) -> dict[str, Any]:
        """The JSON envelope, as OpenAI sends it."""
        return error_body(self.message, self.type, self.error_code, self.param)


class InvalidRequest(APIError):
    code, type, error_code = 400, "invalid_request_error", "invalid_request"
    description = "The request body is not valid."


class InvalidAPIKey(APIError):
    code, type, error_code = 401, "invalid_request_error", "invalid_api_key"
    description = (
        "Invalid API key. Send 'Authorization: Bearer pk_live_...' with a key that has not "
        "been revoked."
    )


class InsufficientQuota(APIError):
    code, type, error_code = 403, "insufficient_quota", "insufficient_quota"
    description = "Your account balance is depleted. Add funds in the Billing section."


class ModelNotAllowed(APIError):
    """A key's allow-list does not include the model (see packet.key_controls)."""

    code, type, error_code = 403, "invalid_request_error", "model_not_allowed"


class NotFound(APIError):
    code, type, error_code = 404, "invalid_request_error", "not_found"
    description = "Not found."


class ModelNotFound(APIError):
    code, type, error_code = 404, "invalid_request_error", "model_not_found"


class MethodNotAllowed(APIError):
    code, type, error_code = 405, "invalid_request_error", "method_not_allowed"


class Conflict(APIError):
    code, type, error_code = 409, "invalid_request_error", "conflict"


class RequestTimeout(APIError):
    code, type, error_code = 408, "invalid_request_error", "request_timeout"
    description = "The request was not received in time."


class PayloadTooLarge(APIError):
    code, type, error_code = 413, "invalid_request_error", "request_too_large"
    description = "The request body is too large."


class RateLimitExceeded(APIError):
    code, type, error_code = 429, "requests", "rate_limit_exceeded"

    def __init__(self, message: str, *, limit_type: str = "requests", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.type = limit_type


class InternalError(APIError):
    pass


class UpstreamError(APIError):
    code, type, error_code = 502, "server_error", "upstream_error"
    description = "The inference endpoint returned an invalid response."


class EndpointBlocked(APIError):
    """The gateway's endpoint policy refuses the endpoint's address; which rule, and the
    address, stay in the gateway's log and the admin's answers, not the client's."""

    code, type, error_code = 502, "server_error", "endpoint_blocked"
    description = (
        "Your inference endpoint's address is not allowed by the gateway's endpoint policy, so "
        "the gateway did not connect to it. Point the endpoint at an address the gateway's "
        "operator allows (GET /health with your key shows which endpoints are blocked)."
    )


class ServiceUnavailable(APIError):
    code, type, error_code = 503, "server_error", "service_unavailable"
    description = NO_ENDPOINT_HINT


class UpstreamTimeout(APIError):
    code, type, error_code = 504, "server_error", "upstream_timeout"
    description = "The inference endpoint did not answer in time."


class UpstreamClientError(APIError):
    """An upstream 4xx relayed with its own message (e.g. context length exceeded)."""

    type = "invalid_request_error"

    def __init__(self, status: int, message: str, *, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.code = status
        self.error_code = {404: "model_not_found", 429: "rate_limit_exceeded"}.get(
            status, "invalid_request"
        )


def from_http_exception(exc: HTTPException) -> APIError:
    """Translate werkzeug's HTTP errors (404, 405, 413, …) into the envelope's terms."""
    status = exc.code or 500
    if status == 400:
        return InvalidRequest(exc.description)
    if status == 404:
        return NotFound(f"Invalid URL ({request.method} {request.path}).")
    if status == 405:
        return MethodNotAllowed(f"Method {request.method} is not allowed for {request.path}.")
    if status == 413:
        return PayloadTooLarge()
    error = APIError(exc.description)
    error.code = status
    error.type = "invalid_request_error" if status < 500 else "server_error"
    error.error_code = (exc.name or "error").lower().replace(" ", "_")
    return error


def from_validation(messages: Any) -> InvalidRequest:
    """marshmallow's error messages as a 400 naming the first offending param."""
    param, message = first_error(messages)
    return InvalidRequest(f"Invalid value for '{param}': {message}", param=param or None)


def from_upstream(exc: Exception) -> APIError:
    """Translate :mod:`packet.upstream.errors` into the envelope's terms."""
    from .upstream import errors as up

    if isinstance(exc, up.ModelNotServed):
        served = ", ".join(exc.available) or "none"
        return ModelNotFound(
            f"The model '{exc.model}' does not exist or is not served by your running "
            f"endpoints. Available models: {served}.",
            param="model",
        )
    if isinstance(exc, up.Blocked):
        return EndpointBlocked()
    if isinstance(exc, up.NoEndpoint):
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        return ServiceUnavailable(NO_ENDPOINT_HINT, headers=headers)
    if isinstance(exc, up.ConnectFailed):
        return ServiceUnavailable(NO_ENDPOINT_HINT, headers={"Retry-After": "5"})
    if isinstance(exc, up.TimedOut):
        return UpstreamTimeout()
    return UpstreamError()


def render(error: APIError) -> Response:
    """The one function that turns an error into the app's HTTP response: OpenAI's envelope,
    or Anthropic's on the Anthropic routes."""
    body, status = error.body(), error.code
    if request.path.startswith(messages.PATHS):
        status = messages.anthropic_status(status)
        body = messages.error_body(status, error.message)
    response = Response(orjson.dumps(body), status=status, mimetype="application/json")
    for name, value in error.headers.items():
        response.headers[name] = value
    current().error = error
    return response


def http_error(exc: HTTPException) -> Response:
    """Ours as they are; werkzeug's (routing, body size, …) translated first."""
    return render(exc if isinstance(exc, APIError) else from_http_exception(exc))


DATABASE_DOWN = "The gateway's database is unreachable; try again shortly."


def register_error_handlers(app: Flask) -> None:
    """Route every exception Flask can see through :func:`render`."""
    from sqlalchemy.exc import SQLAlchemyError

    from . import metrics
    from .store import is_outage
    from .upstream.errors import UpstreamFailure

    # One handler for every HTTP exception: Flask looks an HTTPException subclass's handler up
    # by its status first, so one registered for APIError would only ever catch 500s.
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(UpstreamFailure, lambda exc: render(from_upstream(exc)))

    logged_at = [0.0]

    def database(exc: SQLAlchemyError) -> Response:
        if is_outage(exc):
            metrics.database_error(type(exc).__name__)
            if time.monotonic() - logged_at[0] > 10:  # once per outage, not once per request
                logged_at[0] = time.monotonic()
                log.warning("database unreachable (%s): answering 503", type(exc).__name__)
            return render(ServiceUnavailable(DATABASE_DOWN, headers={"Retry-After": "5"}))
        return unexpected(exc)

    def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error: %s", type(exc).__name__)
        return render(InternalError())

    app.register_error_handler(SQLAlchemyError, database)
    app.register_error_handler(Exception, unexpected)
