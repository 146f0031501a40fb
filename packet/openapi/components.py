"""The document's shared components: key schemes, both error envelopes and the error answers
in each, the rate-limit headers, and the schemas of the answers the gateway makes itself."""

from __future__ import annotations

from typing import Any

from apispec import APISpec

from ..protocol import messages

RATE_LIMIT_HEADERS = {
    "X-RateLimit-Limit": "Requests per minute of the caller's tier.",
    "X-RateLimit-Remaining": "Requests left in the current window.",
    "X-RateLimit-Reset": "When the window resets, in Unix seconds.",
    "x-ratelimit-limit-requests": "Requests per minute (OpenAI's spelling).",
    "x-ratelimit-remaining-requests": "Requests left in the current window.",
    "x-ratelimit-reset-requests": "Time until the request window resets, e.g. `42s`.",
    "x-ratelimit-limit-tokens": "Tokens per minute of the caller's tier.",
    "x-ratelimit-remaining-tokens": "Tokens left in the current window.",
    "x-ratelimit-reset-tokens": "Time until the token window resets, e.g. `42s`.",
}
# Anthropic's spelling, on the Messages routes (beside the above); resets are RFC 3339 times.
ANTHROPIC_RATE_LIMIT_HEADERS = {
    "anthropic-ratelimit-requests-limit": "Requests per minute of the caller's tier.",
    "anthropic-ratelimit-requests-remaining": "Requests left in the current window.",
    "anthropic-ratelimit-requests-reset": "When the request window resets (RFC 3339).",
    "anthropic-ratelimit-tokens-limit": "Tokens per minute of the caller's tier.",
    "anthropic-ratelimit-tokens-remaining": "Tokens left in the current window.",
    "anthropic-ratelimit-tokens-reset": "When the token window resets (RFC 3339).",
}
# The response cache's answer headers, on the routes it serves (see packet.gateway.cache).
CACHE_HEADERS = {
    "X-Packet-Cache": "What the response cache did: `hit`, `miss` or `skip` (absent: not asked).",
    "Age": "Seconds since a cache hit's entry was stored.",
}
CACHE_PARAMETER = {
    "name": "X-Packet-Cache",
    "in": "header",
    "required": False,
    "description": "`use` the response cache, `refresh` its entry, or `skip` it (default: the "
    "account's setting). `Cache-Control: no-cache` refreshes, `no-store` skips.",
    "schema": {"type": "string", "enum": ["use", "refresh", "skip"]},
}
# The statuses the gateway itself answers with, in OpenAI's terms (Anthropic's differ: 503→529).
ERRORS = {
    400: "The request is not valid; `param` names the offending field.",
    401: "Missing, malformed or revoked API key.",
    403: "The account's balance is depleted.",
    404: "Unknown model (the message lists the served ones) or stored response.",
    413: "The request body is too large.",
    429: "Over the tier's requests or tokens per minute; retry after `Retry-After` seconds.",
    502: "The inference endpoint answered badly or its address is not allowed.",
    503: "No running inference endpoint (or the gateway's database is down).",
    504: "The inference endpoint did not answer in time.",
}
_RETRY = (429, 503, 529)

OPENAI_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
ANTHROPIC_ERROR = {
    "type": "object",
    "required": ["type", "error"],
    "properties": {
        "type": {"const": "error"},
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {
                "type": {"enum": sorted({*messages.ERROR_TYPES.values(), "api_error"})},
                "message": {"type": "string"},
            },
        },
    },
}
MODEL = {
    "type": "object",
    "required": ["id", "object"],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "model"},
        "created": {"type": "integer"},
        "owned_by": {"type": "string"},
        "max_model_len": {"type": "integer"},
    },
    "additionalProperties": True,
}
HEALTH = {
    "type": "object",
    "required": ["status", "database", "limit_storage"],
    "properties": {
        "status": {"enum": ["ok", "unavailable"]},
        "database": {"enum": ["ok", "unavailable"]},
        "limit_storage": {"enum": ["ok", "unavailable"]},
        "ready": {"type": "boolean", "description": "With a key: an endpoint is ready."},
        "endpoints": {"type": "array", "items": {"type": "object"}},
    },
}


def register(spec: APISpec) -> None:
    """Add the shared components to ``spec``; operations refer to them by name."""
    components = spec.components
    components.security_scheme(
        "bearer",
        {"type": "http", "scheme": "bearer", "description": "A Packet API key, `pk_live_…`."},
    )
    components.security_scheme(
        "x-api-key",
        {
            "type": "apiKey",
            "in": "header",
            "name": "x-api-key",
            "description": "The same key as the Anthropic SDK sends it (Anthropic routes only).",
        },
    )
    headers = RATE_LIMIT_HEADERS | ANTHROPIC_RATE_LIMIT_HEADERS | CACHE_HEADERS
    for name, description in headers.items():
        components.header(name, {"description": description, "schema": {"type": "string"}})
    components.header(
        "Retry-After",
        {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}},
    )
    components.schema("OpenAIError", OPENAI_ERROR)
    components.schema("AnthropicError", ANTHROPIC_ERROR)
    components.schema("Model", MODEL)
    components.schema(
        "ModelList",
        {
            "type": "object",
            "required": ["object", "data"],
            "properties": {
                "object": {"const": "list"},
                "data": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}},
            },
        },
    )
    components.schema("Health", HEALTH)
    for status, description in ERRORS.items():
        _error_response(spec, "OpenAI", status, description)
        _error_response(spec, "Anthropic", messages.anthropic_status(status), description)


def _error_response(spec: APISpec, family: str, status: int, about: str) -> None:
    response: dict[str, Any] = {
        "description": about,
        "content": {"application/json": {"schema": f"{family}Error"}},
    }
    if status in _RETRY:
        response["headers"] = {"Retry-After": "Retry-After"}
    spec.components.response(f"{family}Error{status}", response)
