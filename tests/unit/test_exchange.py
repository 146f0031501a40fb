"""The request's exchange: one typed value from hook to hook."""

from __future__ import annotations

from flask import Flask

from packet.exchange import begin, current


def test_an_exchange_begins_per_request_and_is_shared_by_its_hooks():
    app = Flask(__name__)
    with app.test_request_context("/v1/models"):
        started = begin("req_1")
        current().metered = True
        assert current() is started and started.request_id == "req_1" and started.metered
    with app.test_request_context("/v1/models"):
        assert current() is not started and not current().metered


def test_a_request_that_never_began_still_has_one():
    app = Flask(__name__)
    with app.test_request_context("/"):
        exchange = current()
        assert exchange.request_id == "" and exchange.principal is None and exchange.started > 0
        assert current() is exchange


def test_the_log_line_and_headers_read_it_through_the_app(client):
    response = client.get("/v1/models", headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 401
    assert response.headers["X-Request-ID"] == "abc-123"
