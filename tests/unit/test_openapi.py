"""The OpenAPI document describes every public route, and /docs renders it from local assets."""

import re
from collections import Counter

import pytest
from openapi_spec_validator import validate
from sqlalchemy import event

from packet.extensions import db
from packet.openapi import build, document

VERBS = {"GET", "POST", "PUT", "PATCH", "DELETE"}
NOT_PUBLIC = ("/admin", "/metrics", "/static", "/docs", "/openapi.json")
ROOT_VLLM = ("/rerank", "/v2/rerank", "/score", "/tokenize", "/detokenize")
STREAMING = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/responses",
    "/v1/messages",
    "/v1/audio/transcriptions",
    "/v1/audio/translations",
)


@pytest.fixture
def app(make_app):
    """With the admin API on, so its routes exist (and must stay out of the document)."""
    return make_app(PACKET_ADMIN_TOKEN="t" * 32)


@pytest.fixture
def doc(app):
    return document(app)


def public_rules(app):
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(NOT_PUBLIC):
            path = re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule.rule)
            yield path, sorted((rule.methods or set()) & VERBS)


def body_schema(doc, path):
    ref = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return ref["$ref"].rsplit("/", 1)[1], doc["components"]["schemas"][ref["$ref"].rsplit("/")[-1]]


def test_document_is_valid_openapi_3_1(doc):
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"] == "Packet gateway"
    assert doc["servers"] == [{"url": "/"}]
    validate(doc)


def test_the_public_url_is_the_server_when_configured(make_app):
    app = make_app(PACKET_PUBLIC_URL="https://api.example.com/")
    assert document(app)["servers"] == [{"url": "https://api.example.com"}]


def test_every_public_rule_is_documented_with_its_methods(app, doc):
    rules = list(public_rules(app))
    assert {path for path, _ in rules} >= {*ROOT_VLLM, "/v1/chat/completions", "/health"}
    for path, methods in rules:
        assert path in doc["paths"], f"{path} is not in the OpenAPI document"
        for method in methods:
            assert method.lower() in doc["paths"][path], f"{method} {path} is not documented"


def test_operator_and_docs_routes_are_left_out(app, doc):
    assert any(rule.rule.startswith("/admin") for rule in app.url_map.iter_rules())
    assert not [path for path in doc["paths"] if path.startswith(NOT_PUBLIC)]


def test_operation_ids_are_unique(doc):
    ids = Counter(op["operationId"] for item in doc["paths"].values() for op in item.values())
    assert ids and max(ids.values()) == 1


def test_path_parameters(doc):
    item = doc["paths"]["/v1/responses/{id}"]
    assert set(item) == {"get", "delete"}
    for operation in item.values():
        assert operation["parameters"] == [
            {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
        ]
    assert "requestBody" not in item["get"]


@pytest.mark.parametrize(
    ("path", "name", "required"),
    [
        ("/v1/chat/completions", "ChatCompletionRequest", {"messages"}),
        ("/v1/completions", "CompletionRequest", {"prompt"}),
        ("/v1/embeddings", "EmbeddingRequest", {"input"}),
        ("/v1/messages", "MessagesRequest", {"max_tokens", "messages"}),
        ("/v1/messages/count_tokens", "CountTokensRequest", {"messages"}),
        ("/v1/responses", "ResponseRequest", {"input"}),
        ("/detokenize", "DetokenizeRequest", {"tokens"}),
    ],
)
def test_request_bodies_reference_their_schemas(doc, path, name, required):
    got, schema = body_schema(doc, path)
    assert got == name
    assert set(schema["required"]) == required
    # Open schemas: vLLM's extra parameters pass through.
    assert schema["additionalProperties"] is True


def test_custom_fields_have_meaningful_schemas(doc):
    schemas = doc["components"]["schemas"]
    chat = schemas["ChatCompletionRequest"]["properties"]
    assert chat["temperature"] == {"type": ["number", "null"], "minimum": 0, "maximum": 2}
    assert chat["stream"] == {"type": ["boolean", "null"]}
    assert {"type": "array", "items": {"type": "string"}, "maxItems": 4} in chat["stop"]["anyOf"]
    assert schemas["MessagesRequest"]["properties"]["max_tokens"]["type"] == "integer"
    assert {"type": "string"} in schemas["EmbeddingRequest"]["properties"]["input"]["anyOf"]
    # Every property says something, but a query that may be anything.
    empty = [
        (name, field)
        for name, schema in schemas.items()
        for field, prop in schema.get("properties", {}).items()
        if not prop
    ]
    assert empty == [("RerankRequest", "query")]


def test_audio_routes_take_a_multipart_form_with_a_file(doc):
    body = doc["paths"]["/v1/audio/transcriptions"]["post"]["requestBody"]
    form = body["content"]["multipart/form-data"]["schema"]
    ref, upload = form["allOf"]
    assert ref == {"$ref": "#/components/schemas/TranscriptionRequest"}
    assert upload["required"] == ["file"] and upload["properties"]["file"]["format"] == "binary"
    fields = doc["components"]["schemas"]["TranscriptionRequest"]["properties"]
    assert fields["stream"]["enum"] == ["true", "false"]
    assert "verbose_json" in fields["response_format"]["enum"]


def test_anthropic_answers_declare_anthropics_rate_limit_headers_too(doc):
    headers = doc["paths"]["/v1/messages"]["post"]["responses"]["200"]["headers"]
    assert (
        "anthropic-ratelimit-tokens-remaining" in headers
        and "x-ratelimit-limit-requests" in headers
    )
    chat = doc["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["headers"]
    assert not any(name.startswith("anthropic-") for name in chat)


def test_streaming_routes_offer_event_streams(doc):
    for path, item in doc["paths"].items():
        for operation in item.values():
            content = operation["responses"]["200"]["content"]
            assert ("text/event-stream" in content) == (path in STREAMING), path


def test_anthropic_routes_take_x_api_key_and_answer_anthropic_errors(doc):
    scheme = doc["components"]["securitySchemes"]["x-api-key"]
    assert scheme == {**scheme, "type": "apiKey", "in": "header", "name": "x-api-key"}
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        operation = doc["paths"][path]["post"]
        assert {"x-api-key": []} in operation["security"]
        assert operation["tags"] == ["Anthropic Messages"]
        errors = {code: r["$ref"] for code, r in operation["responses"].items() if code != "200"}
        assert "529" in errors and "503" not in errors  # Anthropic's "overloaded"
        assert all(
            ref.startswith("#/components/responses/AnthropicError") for ref in errors.values()
        )
    anthropic = doc["components"]["responses"]["AnthropicError400"]["content"]
    assert anthropic["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AnthropicError"
    }
    chat = doc["paths"]["/v1/chat/completions"]["post"]
    assert chat["security"] == [{"bearer": []}]
    assert chat["responses"]["401"] == {"$ref": "#/components/responses/OpenAIError401"}


def test_error_envelopes_and_rate_limit_headers_are_components(doc):
    components = doc["components"]
    envelope = components["schemas"]["OpenAIError"]["properties"]["error"]
    assert set(envelope["required"]) == {"message", "type", "param", "code"}
    assert components["schemas"]["AnthropicError"]["properties"]["type"] == {"const": "error"}
    for name in ("X-RateLimit-Limit", "x-ratelimit-remaining-tokens", "Retry-After"):
        assert name in components["headers"]
    ok = doc["paths"]["/v1/embeddings"]["post"]["responses"]["200"]
    assert ok["headers"]["X-RateLimit-Reset"] == {"$ref": "#/components/headers/X-RateLimit-Reset"}
    assert "Retry-After" in components["responses"]["OpenAIError429"]["headers"]


def test_tags(doc):
    tags = {path: item[next(iter(item))]["tags"][0] for path, item in doc["paths"].items()}
    assert tags["/v1/chat/completions"] == tags["/v1/completions"] == "Chat"
    assert tags["/v1/embeddings"] == "Embeddings"
    assert tags["/v1/responses/{id}/cancel"] == "Responses"
    assert tags["/v2/rerank"] == tags["/tokenize"] == "vLLM"
    assert tags["/v1/models"] == "Models"
    assert tags["/health"] == "Health"
    assert {tag["name"] for tag in doc["tags"]} == set(tags.values())


def test_the_document_is_deterministic(make_app):
    assert build(make_app()) == build(make_app())


def test_openapi_json_needs_no_key_and_no_database(app, client):
    queries = []
    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", lambda *args: queries.append(args[2]))
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == document(app)
    assert queries == []
    assert client.get("/openapi.json").data == response.data


def test_docs_page_uses_only_local_assets(client):
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert not re.search(r"https?://", html)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert len(assets) == 3
    # The platform's mimetypes table names the type (older ones say application/javascript).
    types = {".css": {"text/css"}, ".js": {"text/javascript", "application/javascript"}}
    for url in assets:
        assert url.startswith("/")
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.mimetype in types[re.sub(r".*(\.\w+)\?.*", r"\1", url)]
        assert asset.cache_control.max_age >= 86400
    assert 'data-spec="/openapi.json"' in html


def test_the_response_cache_header_on_the_routes_it_serves(doc):
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"):
        operation = doc["paths"][path]["post"]
        assert [p["name"] for p in operation["parameters"]] == ["X-Packet-Cache"], path
        assert {"X-Packet-Cache", "Age"} <= set(operation["responses"]["200"]["headers"])
    messages = doc["paths"]["/v1/messages"]["post"]
    assert "parameters" not in messages
    assert "X-Packet-Cache" not in messages["responses"]["200"]["headers"]
