"""The admin HTTP API: token, every route, 400 envelopes naming the param, CLI agreement.

Runs on SQLite and, when TEST_DATABASE_URL is set, PostgreSQL (Flask's test client)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from packet import create_app, keys, store
from packet.extensions import db

TOKEN = "adm_" + uuid.uuid4().hex
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def admin_app(database):
    app = create_app(
        {
            "DATABASE_URL": database.url,
            "PACKET_ADMIN_TOKEN": TOKEN,
            "PACKET_USAGE_FLUSH_INTERVAL": "0",
            "PACKET_TIERS": '{"enterprise": {"rpm": 2000, "tpm": 5000000}}',
        }
    )
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def api(admin_app):
    return admin_app.test_client()


@pytest.fixture
def name(api) -> str:
    """A fresh account created through the API."""
    account = f"acme-{uuid.uuid4().hex[:8]}"
    response = api.post("/admin/v1/accounts", json={"name": account, "balance": 25}, headers=AUTH)
    assert response.status_code == 201, response.json
    return account


def assert_error(response, status: int, code: str, param: str | None = None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    error = response.json["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    assert error["param"] == param
    return error


# --- token ------------------------------------------------------------------------------------


def test_routes_absent_without_admin_token(client):
    response = client.get("/admin/v1/accounts", headers=AUTH)
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": "Bearer "},
    ],
)
def test_token_required(api, headers):
    for method, path in [
        ("get", "/admin/v1/accounts"),
        ("post", "/admin/v1/accounts"),
        ("get", "/admin/v1/accounts/x/usage"),
        ("delete", "/admin/v1/accounts/x/keys/1"),
    ]:
        error = assert_error(getattr(api, method)(path, headers=headers), 401, "invalid_api_key")
        assert TOKEN not in error["message"]


def test_admin_token_is_not_accepted_from_the_query_string(api):
    assert_error(api.get(f"/admin/v1/accounts?token={TOKEN}"), 401, "invalid_api_key")


# --- accounts ---------------------------------------------------------------------------------


def test_create_get_update_credit_account(api, name):
    account = api.get(f"/admin/v1/accounts/{name}", headers=AUTH).json
    assert account == {
        "object": "account",
        "name": name,
        "tier": "free",
        "balance_micros": 25_000_000,
        "balance": "25.00",
        "default_model": None,
        "cache_default": False,
        "created_at": account["created_at"],
    }
    patched = api.patch(
        f"/admin/v1/accounts/{name}",
        json={"tier": "enterprise", "default_model": "m/x"},
        headers=AUTH,
    ).json
    assert (patched["tier"], patched["default_model"]) == ("enterprise", "m/x")
    cleared = api.patch(
        f"/admin/v1/accounts/{name}", json={"default_model": None}, headers=AUTH
    ).json
    assert (cleared["tier"], cleared["default_model"]) == ("enterprise", None)
    credited = api.post(f"/admin/v1/accounts/{name}/credit", json={"amount": "0.50"}, headers=AUTH)
    assert credited.json["balance_micros"] == 25_500_000
    debited = api.post(f"/admin/v1/accounts/{name}/credit", json={"amount": -30}, headers=AUTH)
    assert debited.json["balance"] == "-4.50"


def test_create_account_with_everything(api):
    account = f"full-{uuid.uuid4().hex[:8]}"
    body = {"name": account, "tier": "enterprise", "balance": "1.234567", "default_model": "m"}
    created = api.post("/admin/v1/accounts", json=body, headers=AUTH)
    assert created.status_code == 201
    assert created.json["balance_micros"] == 1_234_567
    assert created.json["tier"] == "enterprise"


def test_duplicate_account_is_409(api, name):
    response = api.post("/admin/v1/accounts", json={"name": name}, headers=AUTH)
    assert_error(response, 409, "conflict")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "has space"}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": 7}, "name"),
        ({"name": "ok", "tier": "gold"}, "tier"),
        ({"name": "ok", "balance": "lots"}, "balance"),
        ({"name": "ok", "balance": True}, "balance"),
        ({"name": "ok", "balance": "NaN"}, "balance"),
        ({"name": "ok", "balance": 10**12}, "balance"),
        ({"name": "ok", "default_model": ""}, "default_model"),
        ({"name": "ok", "colour": "blue"}, "colour"),
    ],
)
def test_create_account_bad_input(api, body, param):
    body = body | ({"name": f"ok-{uuid.uuid4().hex[:6]}"} if body.get("name") == "ok" else {})
    assert_error(
        api.post("/admin/v1/accounts", json=body, headers=AUTH), 400, "invalid_request", param
    )


def test_bodies_must_be_json_objects(api, name):
    for data in ("not json", "[1, 2]", ""):
        response = api.post(
            f"/admin/v1/accounts/{name}/credit",
            data=data,
            headers=AUTH | {"Content-Type": "application/json"},
        )
        assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("credit", {}, "amount"),
        ("credit", {"amount": "1e"}, "amount"),
        ("credit", {"amount": [1]}, "amount"),
    ],
)
def test_credit_bad_input(api, name, path, body, param):
    response = api.post(f"/admin/v1/accounts/{name}/{path}", json=body, headers=AUTH)
    assert_error(response, 400, "invalid_request", param)


def test_update_bad_input(api, name):
    for body, param in [({}, "tier"), ({"tier": "gold"}, "tier"), ({"tier": None}, "tier")]:
        response = api.patch(f"/admin/v1/accounts/{name}", json=body, headers=AUTH)
        assert_error(response, 400, "invalid_request", param)


def test_unknown_account_is_404_everywhere(api):
    missing = f"nobody-{uuid.uuid4().hex[:6]}"
    for method, path, body in [
        ("get", "", None),
        ("patch", "", {"tier": "free"}),
        ("post", "/credit", {"amount": 1}),
        ("post", "/keys", {}),
        ("get", "/keys", None),
        ("delete", "/keys/1", None),
        ("post", "/endpoints", {"url": "http://10.0.0.5:8000"}),
        ("get", "/endpoints", None),
        ("delete", "/endpoints/1", None),
        ("get", "/usage", None),
        ("get", "/usage/records", None),
    ]:
        response = getattr(api, method)(
            f"/admin/v1/accounts/{missing}{path}", json=body, headers=AUTH
        )
        error = assert_error(response, 404, "not_found")
        assert missing in error["message"]


def test_control_characters_are_400_or_404_never_500(api, name):
    """PostgreSQL refuses NUL in text: a name in the path is not found, a field is a 400."""
    for path in ("", "/keys", "/usage"):
        response = api.get(f"/admin/v1/accounts/a%00b{path}", headers=AUTH)
        assert_error(response, 404, "not_found")
    for body, param in [
        ({"name": "a\x00b"}, "name"),
        ({"name": "abc\n"}, "name"),
        ({"name": "ok-name", "default_model": "m\x00"}, "default_model"),
    ]:
        assert_error(
            api.post("/admin/v1/accounts", json=body, headers=AUTH), 400, "invalid_request", param
        )
    for path, body, param in [
        ("/keys", {"label": "x\x00"}, "label"),
        ("/endpoints", {"url": "http://10.0.0.5:8000", "upstream_key": "k\x00"}, "upstream_key"),
        ("/endpoints", {"url": "http://10.0.0.5\x00:8000"}, "url"),
    ]:
        response = api.post(f"/admin/v1/accounts/{name}{path}", json=body, headers=AUTH)
        assert_error(response, 400, "invalid_request", param)
    response = api.get(f"/admin/v1/accounts/{name}/usage?model=a%00b", headers=AUTH)
    assert_error(response, 400, "invalid_request", "model")


def test_list_accounts_paginates(api):
    made = [
        api.post("/admin/v1/accounts", json={"name": f"pg-{uuid.uuid4().hex[:8]}"}, headers=AUTH)
        for _ in range(3)
    ]
    assert all(r.status_code == 201 for r in made)
    names, offset = [], 0
    while True:
        page = api.get(f"/admin/v1/accounts?limit=2&offset={offset}", headers=AUTH).json
        assert page["object"] == "list" and len(page["data"]) <= 2 and page["limit"] == 2
        names += [a["name"] for a in page["data"]]
        if not page["has_more"]:
            assert page["next_offset"] is None
            break
        offset = page["next_offset"]
    assert len(names) == len(set(names))
    assert {r.json["name"] for r in made} <= set(names)
    for query, param in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=x", "limit"),
        ("offset=-1", "offset"),
        ("page=2", "page"),
    ]:
        assert_error(
            api.get(f"/admin/v1/accounts?{query}", headers=AUTH), 400, "invalid_request", param
        )


# --- keys -------------------------------------------------------------------------------------


def test_key_create_list_revoke(api, admin_app, name):
    created = api.post(f"/admin/v1/accounts/{name}/keys", json={"label": "ci"}, headers=AUTH)
    assert created.status_code == 201
    key = created.json["key"]
    assert keys.is_well_formed(key) and created.json["prefix"] == keys.display_prefix(key)
    bare = api.post(f"/admin/v1/accounts/{name}/keys", headers=AUTH)
    assert bare.status_code == 201 and bare.json["label"] is None

    listed = api.get(f"/admin/v1/accounts/{name}/keys", headers=AUTH).json
    assert [k["id"] for k in listed["data"]] == [created.json["id"], bare.json["id"]]
    text = json.dumps(listed)
    assert key not in text and keys.digest(key) not in text and "key" not in listed["data"][0]

    cache = admin_app.extensions["packet"].keys
    with admin_app.app_context():
        assert cache.lookup(key) is not None  # now cached for PACKET_AUTH_CACHE_TTL
    revoked = api.delete(f"/admin/v1/accounts/{name}/keys/{created.json['id']}", headers=AUTH)
    assert revoked.status_code == 200 and revoked.json["revoked_at"]
    with admin_app.app_context():
        assert cache.lookup(key) is None  # this worker's cache was dropped at once
    again = api.delete(f"/admin/v1/accounts/{name}/keys/{created.json['id']}", headers=AUTH)
    assert again.json["revoked_at"] == revoked.json["revoked_at"]
    page = api.get(f"/admin/v1/accounts/{name}/keys?limit=1", headers=AUTH).json
    assert len(page["data"]) == 1 and page["has_more"] is True


def test_key_bad_input_and_other_accounts_keys(api, name):
    response = api.post(f"/admin/v1/accounts/{name}/keys", json={"label": "x" * 101}, headers=AUTH)
    assert_error(response, 400, "invalid_request", "label")
    other = api.post("/admin/v1/accounts", json={"name": f"o-{uuid.uuid4().hex[:8]}"}, headers=AUTH)
    theirs = api.post(f"/admin/v1/accounts/{other.json['name']}/keys", headers=AUTH).json
    response = api.delete(f"/admin/v1/accounts/{name}/keys/{theirs['id']}", headers=AUTH)
    assert_error(response, 404, "not_found")
    assert_error(api.delete(f"/admin/v1/accounts/{name}/keys/abc", headers=AUTH), 404, "not_found")


def test_key_controls_set_at_creation_changed_and_cleared(api, admin_app, name):
    created = api.post(
        f"/admin/v1/accounts/{name}/keys",
        json={
            "label": "ci",
            "rpm": 10,
            "tpm": 5000,
            "budget": "2.50",
            "models": ["b", "a"],
            "expires_at": "2027-01-31",
        },
        headers=AUTH,
    )
    assert created.status_code == 201, created.json
    view = created.json
    assert (view["rpm"], view["tpm"], view["budget"], view["budget_micros"]) == (
        10,
        5000,
        "2.50",
        2_500_000,
    )
    assert view["budget_period"] == "month" and view["models"] == ["a", "b"]
    assert view["expires_at"] == "2027-02-01T00:00:00+00:00", "valid through that day"
    assert (view["spent"], view["spent_micros"]) == ("0.00", 0) and view["spent_period"]
    key = view["key"]
    with admin_app.app_context():
        controls = admin_app.extensions["packet"].keys.lookup(key).controls
    assert controls.rpm == 10 and controls.models == frozenset({"a", "b"})

    path = f"/admin/v1/accounts/{name}/keys/{view['id']}"
    changed = api.patch(path, json={"rpm": None, "budget_period": "total"}, headers=AUTH)
    assert changed.status_code == 200
    assert changed.json["rpm"] is None and changed.json["tpm"] == 5000
    assert changed.json["budget_period"] == "total" and changed.json["spent_period"] == "total"
    with admin_app.app_context():
        assert admin_app.extensions["packet"].keys.lookup(key).controls.rpm is None, "seen at once"
    cleared = api.patch(
        path,
        json={"tpm": None, "budget": None, "models": None, "expires_at": None},
        headers=AUTH,
    )
    assert cleared.status_code == 200
    with admin_app.app_context():
        assert admin_app.extensions["packet"].keys.lookup(key).controls is None, "a plain key"
    listed = api.get(f"/admin/v1/accounts/{name}/keys", headers=AUTH).json["data"]
    assert listed[0]["budget_period"] == "total"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"rpm": 0}, "rpm"),
        ({"rpm": "10"}, "rpm"),
        ({"rpm": 61}, "rpm"),  # above the standard tier's 60
        ({"tpm": 150_001}, "tpm"),
        ({"budget": -1}, "budget"),
        ({"budget": "lots"}, "budget"),
        ({"budget_period": "week"}, "budget_period"),
        ({"models": "a,b"}, "models"),
        ({"models": [""]}, "models"),
        ({"expires_at": "soon"}, "expires_at"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_key_controls_bad_input_is_400_naming_the_field(api, name, body, param):
    created = api.post(f"/admin/v1/accounts/{name}/keys", headers=AUTH).json
    for response in (
        api.post(f"/admin/v1/accounts/{name}/keys", json=body, headers=AUTH),
        api.patch(f"/admin/v1/accounts/{name}/keys/{created['id']}", json=body, headers=AUTH),
    ):
        assert response.status_code == 400, response.json
        error = response.json["error"]
        assert error["code"] == "invalid_request" and error["param"].split("[")[0] == param


# --- endpoints --------------------------------------------------------------------------------


def test_endpoint_add_list_remove(api, name):
    added = api.post(
        f"/admin/v1/accounts/{name}/endpoints",
        json={"url": "http://10.0.0.5:8000/v1/", "upstream_key": "sekrit-upstream"},
        headers=AUTH,
    )
    assert added.status_code == 201
    assert added.json["url"] == "http://10.0.0.5:8000" and added.json["upstream_key_set"] is True
    listed = api.get(f"/admin/v1/accounts/{name}/endpoints", headers=AUTH)
    assert [e["id"] for e in listed.json["data"]] == [added.json["id"]]
    assert "sekrit-upstream" not in listed.get_data(as_text=True)
    removed = api.delete(f"/admin/v1/accounts/{name}/endpoints/{added.json['id']}", headers=AUTH)
    assert removed.json == {"object": "endpoint", "id": added.json["id"], "deleted": True}
    gone = api.delete(f"/admin/v1/accounts/{name}/endpoints/{added.json['id']}", headers=AUTH)
    assert_error(gone, 404, "not_found")
    assert api.get(f"/admin/v1/accounts/{name}/endpoints", headers=AUTH).json["data"] == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"url": "ftp://10.0.0.5"},
        {"url": "http://user:pw@10.0.0.5:8000"},
        {"url": "http://10.0.0.5:99999"},
        {"url": "http://10.0.0.5:8000?x=1"},
        {"url": "10.0.0.5:8000"},
        {"url": 8000},
    ],
)
def test_endpoint_url_validation(api, name, body):
    response = api.post(f"/admin/v1/accounts/{name}/endpoints", json=body, headers=AUTH)
    assert_error(response, 400, "invalid_request", "url")


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("http://169.254.169.254/latest", "address 169.254.169.254 is link-local"),
        ("http://[::ffff:169.254.169.254]", "address 169.254.169.254 is link-local"),
        ("http://[fd00:ec2::254]", "cloud metadata address"),
        ("http://100.100.100.200", "cloud metadata address"),
        ("http://0.0.0.0:8000", "unspecified"),
        ("http://metadata.google.internal", "host metadata.google.internal is a cloud metadata"),
        ("http://meta.example:8000", "address 169.254.169.254 is link-local"),
    ],
)
def test_endpoint_refused_by_the_policy_is_a_400_naming_the_rule(
    api, admin_app, name, monkeypatch, url, rule
):
    names = {"meta.example": ["169.254.169.254"]}
    policy = admin_app.extensions["packet"].client.policy
    monkeypatch.setattr(policy, "resolver", lambda host, port: names[host])
    response = api.post(f"/admin/v1/accounts/{name}/endpoints", json={"url": url}, headers=AUTH)
    error = assert_error(response, 400, "invalid_request", "url")
    assert "endpoint policy" in error["message"] and rule in error["message"]
    assert api.get(f"/admin/v1/accounts/{name}/endpoints", headers=AUTH).json["data"] == []


def test_endpoint_with_a_loose_ipv4_host_is_a_400(api, name):
    for url in ("http://0x7f000001:8000", "http://2130706433", "http://0251.0376.0251.0376"):
        response = api.post(f"/admin/v1/accounts/{name}/endpoints", json={"url": url}, headers=AUTH)
        error = assert_error(response, 400, "invalid_request", "url")
        assert "not a canonical address" in error["message"], url


# --- usage and the CLI ------------------------------------------------------------------------


def _usage(admin_app, name: str) -> tuple[int, int]:
    """Write six usage rows (two models, two keys); return the key ids."""
    with admin_app.app_context():
        account = store.get_account(name)
        first, _ = store.create_key(name, "a")
        second, _ = store.create_key(name, "b")
        rows = []
        for i in range(6):
            rows.append(
                {
                    "request_id": f"req_{uuid.uuid4().hex}",
                    "account_id": account.id,
                    "key_id": first.id if i % 2 else second.id,
                    "endpoint_url": "http://10.0.0.5:8000",
                    "model": "m/big" if i < 4 else "m/small",
                    "route": "chat.completions",
                    "stream": bool(i % 3),
                    "status": 200,
                    "prompt_tokens": 10 + i,
                    "completion_tokens": 20 + i,
                    "total_tokens": 30 + 2 * i,
                    "cost_micros": 1000 * (i + 1),
                    "ttft_ms": 5,
                    "latency_ms": 50,
                    "client_disconnected": False,
                }
            )
        store.write_usage(store.Batch(records=rows))
        return first.id, second.id


def test_usage_report_filters_and_cli_agreement(api, admin_app, name):
    first, second = _usage(admin_app, name)
    report = api.get(f"/admin/v1/accounts/{name}/usage", headers=AUTH).json
    assert report["object"] == "usage" and report["account"] == name
    assert report["total"] == {
        "requests": 6,
        "prompt_tokens": 75,
        "completion_tokens": 135,
        "total_tokens": 210,
        "cost_micros": 21000,
        "cache_hits": 0,
        "saved_tokens": 0,
        "cost": "0.021",
    }
    by_model = {m["model"]: m["requests"] for m in report["by_model"]}
    assert by_model == {"m/big": 4, "m/small": 2}
    by_key = {k["key_id"]: (k["key_prefix"], k["requests"]) for k in report["by_key"]}
    assert (
        by_key[first][1] == 3 and by_key[second][1] == 3 and by_key[first][0].startswith("pk_live_")
    )

    only = api.get(
        f"/admin/v1/accounts/{name}/usage?model=m/small&key_id={first}", headers=AUTH
    ).json
    assert only["total"]["requests"] == 1 and only["total"]["cost_micros"] == 6000
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    later = api.get(
        f"/admin/v1/accounts/{name}/usage", query_string={"since": future}, headers=AUTH
    )
    assert later.json["total"]["requests"] == 0
    window = api.get(
        f"/admin/v1/accounts/{name}/usage",
        query_string={"since": "2020-01-01", "until": future},
        headers=AUTH,
    )
    assert window.json["total"]["requests"] == 6 and window.json["since"].startswith(
        "2020-01-01T00:00:00"
    )
    for query, param in [
        ("since=yesterday", "since"),
        ("until=2026-13-01", "until"),
        ("key_id=x", "key_id"),
    ]:
        response = api.get(f"/admin/v1/accounts/{name}/usage?{query}", headers=AUTH)
        assert_error(response, 400, "invalid_request", param)

    runner = admin_app.test_cli_runner()
    cli = runner.invoke(args=["usage", name, "--json"])
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.output) == report
    cli = runner.invoke(args=["usage", name, "--since", "2020-01-01", "--until", future, "--json"])
    assert json.loads(cli.output) == window.json
    text = runner.invoke(args=["usage", name]).output
    assert f"{name}: 6 requests, 75 prompt + 135 completion tokens, $0.021" in text
    assert "model=m/big" in text and "pk_live_" in text
    shown = runner.invoke(args=["accounts", "show", name])
    assert json.loads(shown.output) == api.get(f"/admin/v1/accounts/{name}", headers=AUTH).json


def test_usage_records_cursor(api, admin_app, name):
    _usage(admin_app, name)
    seen, after = [], 0
    for _ in range(10):
        page = api.get(
            f"/admin/v1/accounts/{name}/usage/records?limit=4&after={after}", headers=AUTH
        ).json
        seen += page["data"]
        if not page["has_more"]:
            break
        after = page["next_after"]
    assert len(seen) == 6 and len({r["request_id"] for r in seen}) == 6
    assert [r["id"] for r in seen] == sorted(r["id"] for r in seen)
    assert set(seen[0]) >= {
        "request_id",
        "key_id",
        "model",
        "route",
        "stream",
        "status",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "cost_micros",
        "ttft_ms",
        "latency_ms",
        "client_disconnected",
    }
    response = api.get(f"/admin/v1/accounts/{name}/usage/records?after=-1", headers=AUTH)
    assert_error(response, 400, "invalid_request", "after")


def test_cli_and_api_share_accounts_keys_endpoints(api, admin_app):
    runner = admin_app.test_cli_runner()
    account = f"cli-{uuid.uuid4().hex[:8]}"
    assert runner.invoke(args=["accounts", "create", account, "--balance", "2.5"]).exit_code == 0
    assert api.get(f"/admin/v1/accounts/{account}", headers=AUTH).json["balance"] == "2.50"
    api.post(f"/admin/v1/accounts/{account}/credit", json={"amount": 1}, headers=AUTH)
    assert "balance $3.50" in runner.invoke(args=["accounts", "credit", account, "0"]).output
    assert runner.invoke(args=["accounts", "set-default-model", account, "m/x"]).exit_code == 0
    assert api.get(f"/admin/v1/accounts/{account}", headers=AUTH).json["default_model"] == "m/x"
    key = api.post(f"/admin/v1/accounts/{account}/keys", json={"label": "api"}, headers=AUTH).json
    listed = runner.invoke(args=["keys", "list", account]).output
    assert key["prefix"] in listed and "label=api" in listed and key["key"] not in listed
    assert runner.invoke(args=["keys", "revoke", key["key"]]).exit_code == 0
    assert api.get(f"/admin/v1/accounts/{account}/keys", headers=AUTH).json["data"][0]["revoked_at"]
    runner.invoke(args=["endpoints", "add", account, "http://10.1.2.3:8000"])
    endpoint = api.get(f"/admin/v1/accounts/{account}/endpoints", headers=AUTH).json["data"][0]
    assert endpoint["url"] == "http://10.1.2.3:8000"
    assert (
        f"{endpoint['id']}\thttp://10.1.2.3:8000"
        in runner.invoke(args=["endpoints", "list", account]).output
    )


def test_cache_default_over_the_api_and_the_cli(api, admin_app, name):
    patched = api.patch(f"/admin/v1/accounts/{name}", json={"cache_default": True}, headers=AUTH)
    assert patched.status_code == 200 and patched.json["cache_default"] is True
    bad = api.patch(f"/admin/v1/accounts/{name}", json={"cache_default": "yes"}, headers=AUTH)
    assert_error(bad, 400, "invalid_request", "cache_default")
    runner = admin_app.test_cli_runner()
    result = runner.invoke(args=["accounts", "set-cache", name, "off"])
    assert result.exit_code == 0 and "response cache off" in result.output
    assert api.get(f"/admin/v1/accounts/{name}", headers=AUTH).json["cache_default"] is False
    assert runner.invoke(args=["accounts", "set-cache", name, "maybe"]).exit_code != 0
