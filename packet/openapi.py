"""The OpenAPI 3.1 document of the public API, built from the app's own routes.

Proxied views carry their :class:`~packet.gateway.inbound.Route` (its marshmallow schema is the
request body, its family the error envelope and key header); the few views the gateway answers
itself are described here. A public rule that is neither is left out, and the unit tests, which
compare the document with ``app.url_map``, fail until it is described.
"""

from __future__ import annotations

import re
from importlib import metadata
from typing import Any

import orjson
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import resolve_schema_cls
from apispec.ext.marshmallow.field_converter import FieldConverterMixin
from flask import Flask
from marshmallow import Schema, fields
from werkzeug.routing import Rule

from . import schemas
from .gateway import routes
from .gateway.inbound import ANTHROPIC, Route
from .protocol import messages, responses, scoring, tokenizer

TITLE = "Packet gateway"
FALLBACK_VERSION = "0.1.0"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# Not part of the public contract: operators' routes, metrics, static files, the docs themselves.
HIDDEN = re.compile(r"^/(admin|metrics|static|docs|openapi\.json)(/|$)")
_CONVERTED = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")

TAGS = {
    "Chat": "Chat and text completions (OpenAI).",
    "Embeddings": "Embeddings (OpenAI).",
    "Responses": "The Responses API (OpenAI); stored responses live on the replica that made them.",
    "Anthropic Messages": "Anthropic's Messages API as vLLM serves it; Anthropic's envelope.",
    "vLLM": "vLLM's own rerank, score and tokenizer routes.",
    "Models": "The models the caller's running endpoints serve.",
    "Health": "The gateway's readiness; with a key, the caller's endpoints too.",
}
_TAG_OF_ROUTE = {
    "chat": "Chat",
    "completions": "Chat",
    "embeddings": "Embeddings",
    "responses": "Responses",
}

_STRINGS = {"type": "array", "items": {"type": "string"}}
_TOKENS = {"type": "array", "items": {"type": "integer"}}
_OBJECTS = {"type": "array", "items": {"type": "object"}}
# JSON Schemas of the custom fields (plain marshmallow Fields, which apispec cannot see into).
FIELD_SHAPES: dict[type[fields.Field[Any]], dict[str, Any]] = {
    schemas.StrictBool: {"type": "boolean"},
    schemas.StopField: {"anyOf": [{"type": "string"}, {**_STRINGS, "maxItems": 4}]},
    schemas.ContentField: {
        "anyOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "object", "required": ["type"]}},
        ]
    },
    schemas.PromptField: {
        "anyOf": [
            {"type": "string"},
            {**_STRINGS, "minItems": 1},
            {**_TOKENS, "minItems": 1},
            {"type": "array", "items": {**_TOKENS, "minItems": 1}, "minItems": 1},
        ]
    },
    schemas.ToolChoiceField: {
        "anyOf": [
            {"type": "string", "enum": ["none", "auto", "required"]},
            {"type": "object", "required": ["function"]},
        ]
    },
    messages.SystemField: {"anyOf": [{"type": "string"}, _OBJECTS]},
    messages.ContentField: {"anyOf": [{"type": "string"}, _OBJECTS]},
    responses.InputField: {"anyOf": [{"type": "string"}, {"type": "array", "minItems": 1}]},
    scoring.DocumentsField: {
        "type": "array",
        "minItems": 1,
        "items": {"anyOf": [{"type": "string"}, {"type": "object"}]},
    },
    tokenizer.TokensField: _TOKENS,
}

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


def document(app: Flask) -> dict[str, Any]:
    """The app's document, built on first use: the routes are fixed once the app is built."""
    cached: dict[str, Any] | None = app.extensions.get("openapi")
    if cached is None:
        cached = app.extensions["openapi"] = build(app)
    return cached


def serialized(app: Flask) -> bytes:
    """:func:`document` as JSON, serialized once too."""
    cached: bytes | None = app.extensions.get("openapi.json")
    if cached is None:
        cached = app.extensions["openapi.json"] = orjson.dumps(document(app))
    return cached


def build(app: Flask) -> dict[str, Any]:
    """A fresh document of every public rule of ``app`` that is described."""
    plugin = MarshmallowPlugin(schema_name_resolver=_schema_name)
    spec = APISpec(
        title=TITLE,
        version=_version(),
        openapi_version="3.1.0",
        plugins=[plugin],
        servers=[{"url": "/"}],
    )
    assert plugin.converter is not None  # made by the spec
    plugin.converter.add_attribute_function(custom_field)
    _components(spec)
    for name, description in TAGS.items():
        spec.tag({"name": name, "description": description})
    for rule in app.url_map.iter_rules():
        if HIDDEN.match(rule.rule):
            continue
        view = app.view_functions[rule.endpoint]
        summary = (view.__doc__ or "").strip().split("\n")[0]
        route: Route | None = getattr(view, "route", None)
        describe = OWN.get(rule.endpoint)
        for method in sorted(set(rule.methods or ()) & set(METHODS)):
            if route is not None:
                operation = _proxied(route, summary)
            elif describe is not None:
                operation = describe(summary)
            else:
                continue
            operation["operationId"] = rule.endpoint.replace(".", "_")
            if rule.arguments:
                operation["parameters"] = [
                    {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                    for name in sorted(rule.arguments)
                ]
            spec.path(_openapi_path(rule), operations={method.lower(): operation})
    return spec.to_dict()


def _version() -> str:
    try:
        return metadata.version("packet-gateway")
    except metadata.PackageNotFoundError:
        return FALLBACK_VERSION


def _openapi_path(rule: Rule) -> str:
    return _CONVERTED.sub(r"{\1}", rule.rule)


def _components(spec: APISpec) -> None:
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
    for name, description in RATE_LIMIT_HEADERS.items():
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
        _error_response(spec, "OpenAI", status, status, description)
        _error_response(spec, "Anthropic", status, messages.anthropic_status(status), description)


def _error_response(spec: APISpec, family: str, ours: int, status: int, about: str) -> None:
    response: dict[str, Any] = {
        "description": about,
        "content": {"application/json": {"schema": f"{family}Error"}},
    }
    if status in _RETRY:
        response["headers"] = {"Retry-After": "Retry-After"}
    spec.components.response(f"{family}Error{status}", response)


def _errors(family: str, statuses: tuple[int, ...]) -> dict[int, str]:
    """The error responses of ``statuses`` (ours) in the family's envelope and statuses."""
    if family == ANTHROPIC:
        answered = sorted(messages.anthropic_status(s) for s in statuses)
        return {status: f"AnthropicError{status}" for status in answered}
    return {status: f"OpenAIError{status}" for status in sorted(statuses)}


def _ok(summary: str, schema: str | dict[str, Any], stream: bool = False) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    if stream:
        content["text/event-stream"] = {
            "schema": {"type": "string", "description": "Server-sent events, when `stream`."}
        }
    return {
        "description": summary or "OK",
        "content": content,
        "headers": {name: name for name in RATE_LIMIT_HEADERS},
    }


_PROXIED_ERRORS = (400, 401, 403, 404, 429, 502, 503, 504)
_BODY_ERRORS = (*_PROXIED_ERRORS, 413)


def _proxied(route: Route, summary: str) -> dict[str, Any]:
    """A proxied route's operation: its body schema, its family's key header and envelope."""
    anthropic = route.family == ANTHROPIC
    operation: dict[str, Any] = {
        "summary": summary,
        "tags": [
            "Anthropic Messages"
            if anthropic
            else _TAG_OF_ROUTE.get(route.name.split(".")[0], "vLLM")
        ],
        "security": [{"bearer": []}, {"x-api-key": []}] if anthropic else [{"bearer": []}],
        "responses": {
            200: _ok(summary, {"type": "object"}, stream=route.wire.stream is not None),
            **_errors(route.family, _BODY_ERRORS if route.schema else _PROXIED_ERRORS),
        },
    }
    if route.schema is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": type(route.schema)}},
        }
    return operation


def _models(summary: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "tags": ["Models"],
        "security": [{"bearer": []}],
        "responses": {200: _ok(summary, "ModelList"), **_errors("openai", (401, 429, 503))},
    }


def _model(summary: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "tags": ["Models"],
        "security": [{"bearer": []}],
        "responses": {200: _ok(summary, "Model"), **_errors("openai", (401, 404, 429, 503))},
    }


def _health(summary: str) -> dict[str, Any]:
    body = {"application/json": {"schema": "Health"}}
    return {
        "summary": summary,
        "description": "No key needed; with a Bearer key the caller's endpoints are reported.",
        "tags": ["Health"],
        "security": [{}, {"bearer": []}],
        "responses": {
            200: {"description": "Ready.", "content": body},
            503: {"description": "Not ready.", "content": body},
            **_errors("openai", (401, 429)),
        },
    }


# The views the gateway answers itself, by endpoint.
OWN = {"v1.list_models": _models, "v1.get_model": _model, "health.health": _health}


def _schema_name(schema: type[Schema] | Schema) -> str:
    """``ChatCompletionRequest`` for a route's body, ``Message`` for a nested schema; the
    Anthropic family's nested schemas are prefixed, their names clash with OpenAI's."""
    cls = resolve_schema_cls(schema)
    cls = cls[0] if isinstance(cls, list) else cls
    name = cls.__name__.removesuffix("Schema")
    if cls in _BODIES:
        return name + "Request"
    return "Anthropic" + name if cls.__module__ == messages.__name__ else name


# The schemas of request bodies (named ``…Request``): those of the declared routes.
_BODIES = {
    type(value.schema)
    for value in vars(routes).values()
    if isinstance(value, Route) and value.schema is not None
}


def custom_field(
    self: FieldConverterMixin, field: fields.Field[Any], **kwargs: Any
) -> dict[str, Any]:
    """apispec attribute function: the JSON Schema of our own field classes, null included."""
    if isinstance(field, schemas.StrictNumber):
        shape: dict[str, Any] = {"type": "integer" if field.integer else "number"}
        if field.minimum is not None:
            shape["minimum"] = field.minimum
        if field.maximum is not None:
            shape["maximum"] = field.maximum
    else:
        found = [s for cls, s in FIELD_SHAPES.items() if isinstance(field, cls)]
        if not found:
            return {}
        shape = dict(found[0])
    if field.allow_none:
        if "type" in shape:
            shape["type"] = [shape["type"], "null"]
        else:
            shape["anyOf"] = [*shape["anyOf"], {"type": "null"}]
    return shape
