"""The OpenAPI 3.1 document of the public API, built from the app's own routes.

Proxied views carry their :class:`~packet.gateway.inbound.Route` (its marshmallow schema is the
request body, its family the error envelope and key header); the few views the gateway answers
itself are described here. A public rule that is neither is left out, and the unit tests, which
compare the document with ``app.url_map``, fail until it is described.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import metadata
from typing import Any

import orjson
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask
from werkzeug.routing import Rule

from ..gateway.cache import ROUTES as CACHED_ROUTES
from ..gateway.inbound import ANTHROPIC, OPENAI, Route
from ..protocol import batches, messages
from ..runtime import runtime
from . import components
from .bodies import FILE, custom_field, schema_name

TITLE = "Packet gateway"
FALLBACK_VERSION = "0.1.0"  # pyproject.toml's, for a checkout that is not pip-installed
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
    "Audio": "Transcriptions and translations: a multipart upload (OpenAI).",
    "Models": "The models the caller's running endpoints serve.",
    "Health": "The gateway's readiness; with a key, the caller's endpoints too.",
    "Files": "Files of one account: batch input files and batch outputs (OpenAI).",
    "Batches": "Batches run by the gateway's workers on the account's endpoints (OpenAI).",
}
_TAG_OF_ROUTE = {
    "chat": "Chat",
    "completions": "Chat",
    "embeddings": "Embeddings",
    "responses": "Responses",
    "audio": "Audio",
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
    plugin = MarshmallowPlugin(schema_name_resolver=schema_name)
    spec = APISpec(
        title=TITLE,
        version=_version(),
        openapi_version="3.1.0",
        plugins=[plugin],
        servers=[{"url": _public_url(app) or "/"}],
    )
    assert plugin.converter is not None  # made by the spec
    plugin.converter.add_attribute_function(custom_field)
    components.register(spec)
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


def _public_url(app: Flask) -> str | None:
    with app.app_context():
        return runtime().settings.public_url


def _version() -> str:
    try:
        return metadata.version("packet-gateway")
    except metadata.PackageNotFoundError:
        return FALLBACK_VERSION


def _openapi_path(rule: Rule) -> str:
    return _CONVERTED.sub(r"{\1}", rule.rule)


def _errors(family: str, statuses: tuple[int, ...]) -> dict[int, str]:
    """The error responses of ``statuses`` (ours) in the family's envelope and statuses."""
    if family == ANTHROPIC:
        answered = sorted(messages.anthropic_status(s) for s in statuses)
        return {status: f"AnthropicError{status}" for status in answered}
    return {status: f"OpenAIError{status}" for status in sorted(statuses)}


def _ok(
    summary: str, schema: str | dict[str, Any], stream: bool = False, family: str = OPENAI
) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    if stream:
        content["text/event-stream"] = {
            "schema": {"type": "string", "description": "Server-sent events, when `stream`."}
        }
    headers = list(components.RATE_LIMIT_HEADERS)
    if family == ANTHROPIC:
        headers += components.ANTHROPIC_RATE_LIMIT_HEADERS
    return {
        "description": summary or "OK",
        "content": content,
        "headers": {name: name for name in headers},
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
            200: _ok(summary, {"type": "object"}, route.wire.stream is not None, route.family),
            **_errors(route.family, _BODY_ERRORS if route.schema else _PROXIED_ERRORS),
        },
    }
    if route.multipart:
        form = {"allOf": [type(route.schema), {"properties": {"file": FILE}, "required": ["file"]}]}
        operation["requestBody"] = {
            "required": True,
            "content": {"multipart/form-data": {"schema": form}},
        }
    elif route.schema is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": type(route.schema)}},
        }
    if route.name in CACHED_ROUTES:
        operation["parameters"] = [components.CACHE_PARAMETER]
        operation["responses"][200]["headers"] |= {name: name for name in components.CACHE_HEADERS}
    return operation


def _models(schema: str, statuses: tuple[int, ...]) -> Callable[[str], dict[str, Any]]:
    def describe(summary: str) -> dict[str, Any]:
        return {
            "summary": summary,
            "tags": ["Models"],
            "security": [{"bearer": []}],
            "responses": {200: _ok(summary, schema), **_errors(OPENAI, statuses)},
        }

    return describe


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
            **_errors(OPENAI, (401, 429)),
        },
    }


def _own(
    tag: str,
    statuses: tuple[int, ...],
    body: Any = None,
    kind: str = "application/json",
    binary: bool = False,
) -> Callable[[str], dict[str, Any]]:
    """A Files or Batches operation: its body (a schema, or a form), an object (or, with
    ``binary``, a file's bytes) answered."""

    def describe(summary: str) -> dict[str, Any]:
        ok = _ok(summary, {"type": "object"})
        if binary:
            raw = {"type": "string", "format": "binary"}
            ok["content"] = {"application/octet-stream": {"schema": raw}}
        operation: dict[str, Any] = {
            "summary": summary,
            "tags": [tag],
            "security": [{"bearer": []}],
            "responses": {200: ok, **_errors(OPENAI, (401, 429, *statuses))},
        }
        if body is not None:
            operation["requestBody"] = {"required": True, "content": {kind: {"schema": body}}}
        return operation

    return describe


_UPLOAD = {
    "type": "object",
    "properties": {"purpose": {"type": "string", "enum": ["batch", "user_data"]}, "file": FILE},
    "required": ["purpose", "file"],
}

# The views the gateway answers itself, by endpoint.
OWN = {
    "v1.list_models": _models("ModelList", (401, 429, 503)),
    "v1.get_model": _models("Model", (401, 404, 429, 503)),
    "health.health": _health,
    "v1.create_file": _own("Files", (400, 413), _UPLOAD, "multipart/form-data"),
    "v1.list_files": _own("Files", (400,)),
    "v1.retrieve_file": _own("Files", (404,)),
    "v1.file_content": _own("Files", (404,), binary=True),
    "v1.delete_file": _own("Files", (404,)),
    "v1.create_batch": _own("Batches", (400,), batches.CreateSchema),
    "v1.list_batches": _own("Batches", (400,)),
    "v1.retrieve_batch": _own("Batches", (404,)),
    "v1.cancel_batch": _own("Batches", (404,)),
}
