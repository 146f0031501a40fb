"""Every error, ours or the framework's, leaves as OpenAI's envelope."""

import pytest

from packet.errors import APIError, InvalidAPIKey, RateLimitExceeded


def assert_envelope(response, status, code):
    assert response.status_code == status
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    assert "Traceback" not in error["message"]
    return error


def test_body_shape():
    body = InvalidAPIKey().body()
    assert body["error"]["code"] == "invalid_api_key"
    assert body["error"]["param"] is None
    assert RateLimitExceeded("x", limit_type="tokens").body()["error"]["type"] == "tokens"


def test_unknown_route_is_404_envelope(client):
    assert_envelope(client.get("/v1/does-not-exist"), 404, "not_found")
    assert_envelope(client.get("/nothing-here"), 404, "not_found")


def test_wrong_method_is_405_envelope(client):
    assert_envelope(client.get("/v1/chat/completions"), 405, "method_not_allowed")


def test_oversized_body_is_413_envelope(tmp_path):
    from flask_migrate import upgrade

    from packet import create_app

    app = create_app(
        {"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "PACKET_MAX_BODY_BYTES": "100"}
    )
    with app.app_context():
        upgrade()
    response = app.test_client().post(
        "/v1/chat/completions",
        data="x" * 1000,
        headers={"Authorization": "Bearer nope"},
        content_type="application/json",
    )
    # auth runs first, so a bad key wins; with a good key the body limit applies (live tests)
    assert response.status_code in (401, 413)
    response = app.test_client().post("/health", data="x" * 1000)
    assert response.status_code in (405, 413)
    assert response.get_json()["error"]


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Basic abc", "Bearer sk-openai-key", "Bearer pk_live_short"]
)
def test_bad_auth_is_401(client, header):
    headers = {"Authorization": header} if header is not None else {}
    response = client.post("/v1/chat/completions", json={"messages": []}, headers=headers)
    assert_envelope(response, 401, "invalid_api_key")


def test_unexpected_exception_is_500_without_details(app):
    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internal detail at 10.0.0.1")

    response = app.test_client().get("/boom")
    error = assert_envelope(response, 500, "internal_error")
    assert "10.0.0.1" not in response.get_data(as_text=True)
    assert error["type"] == "server_error"


def test_typed_errors_are_http_exceptions_rendered_in_the_envelope(app):
    from werkzeug.exceptions import HTTPException

    from packet.errors import InvalidRequest, UpstreamClientError

    assert issubclass(APIError, HTTPException)
    error = InvalidRequest(param="model")
    assert (error.code, error.error_code) == (400, "invalid_request")
    assert error.description == error.message == "The request body is not valid."

    @app.get("/typed")
    def typed():
        raise UpstreamClientError(429, "busy", param="n")

    error = assert_envelope(app.test_client().get("/typed"), 429, "rate_limit_exceeded")
    assert (error["message"], error["param"]) == ("busy", "n")
    assert error["type"] == "invalid_request_error"


def test_api_error_headers_are_sent(app):
    @app.get("/limited")
    def limited():
        raise APIError("slow down", headers={"Retry-After": "3"})

    assert app.test_client().get("/limited").headers["Retry-After"] == "3"


@pytest.mark.parametrize("path", ["/v1//models", "/health//", "/v1/chat//completions"])
def test_repeated_slashes_are_404_never_a_redirect(client, path):
    response = client.get(path, headers={"Host": "evil.example"})
    assert "Location" not in response.headers
    assert_envelope(response, 404, "not_found")


def test_no_route_can_redirect(tmp_path):
    """werkzeug builds a redirect's Location from the Host header: no rule may produce one."""
    from packet import create_app

    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "PACKET_ADMIN_TOKEN": "t"})
    assert app.url_map.merge_slashes is False  # the matcher then never merges, whatever the rule
    rules = list(app.url_map.iter_rules())
    assert any(rule.rule.startswith("/admin/") for rule in rules)
    for rule in rules:
        assert rule.redirect_to is None, rule.rule
        assert not (rule.strict_slashes and rule.rule.endswith("/")), rule.rule


def test_a_blocked_endpoint_is_a_502_that_names_the_policy_not_the_address(app):
    from packet.upstream.errors import Blocked

    @app.get("/_blocked")
    def blocked():
        raise Blocked("address 10.9.8.7 is denied by PACKET_ENDPOINT_DENY")

    response = app.test_client().get("/_blocked")
    error = assert_envelope(response, 502, "endpoint_blocked")
    assert error["type"] == "server_error"
    assert "not allowed by the gateway's endpoint policy" in error["message"]
    assert "10.9.8.7" not in response.get_data(as_text=True)
