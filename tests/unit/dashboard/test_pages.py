"""Every dashboard page with Flask's test client: what it shows, scoping to the user's own
account, owners versus members, and the same services as the CLI."""

from __future__ import annotations

import re

import pytest
from helpers import DASHBOARD, csrf_token, dashboard_user, sign_in

from packet import store


@pytest.fixture
def app(make_app, sim_url):
    app = make_app(**DASHBOARD, PACKET_UPSTREAMS=sim_url)
    with app.app_context():
        store.create_account("acme", "standard", 25_000_000)
        store.create_account("other", "premium", 7_000_000)
        store.add_endpoint("other", "http://127.0.0.1:9/other-secret")
        _, _ = store.create_key("other", "other's key")
    return app


@pytest.fixture
def sim_url():
    return "http://127.0.0.1:9"  # nothing listens: the shared pool is "down"


def _client(app, role="owner", account="acme"):
    client = app.test_client()
    assert sign_in(client, dashboard_user(app, account, role)).status_code == 302
    return client


def _post(client, path, data=None, page=None):
    token = csrf_token(client.get(page or "/dashboard/").text)
    return client.post(path, data={"csrf_token": token, **(data or {})})


def test_overview_shows_balance_tier_endpoints_and_quick_start(app):
    page = _client(app).get("/dashboard/").text
    assert "$25.00" in page and "standard" in page and "/ 60 requests" in page
    assert "shared pool #1" in page and "state-starting" in page  # nothing listens there
    assert "http://localhost/v1/chat/completions" in page and "OpenAI(base_url=" in page
    assert "other-secret" not in page and "$7.00" not in page


def test_quick_start_uses_the_public_url(make_app):
    app = make_app(**DASHBOARD, PACKET_PUBLIC_URL="https://api.example.com")
    with app.app_context():
        store.create_account("acme", "standard", 0)
    assert "https://api.example.com/v1" in _client(app).get("/dashboard/").text


def test_owner_creates_a_key_shown_once_that_the_api_accepts(app, caplog):
    client = _client(app)
    caplog.set_level("INFO", logger="packet.audit")
    created = _post(client, "/dashboard/keys", {"label": "laptop"}, "/dashboard/keys")
    assert created.status_code == 201
    key = re.search(r"pk_live_[A-Za-z0-9]+", created.text).group(0)
    again = client.get("/dashboard/keys").text
    assert key not in again and key[:12] in again and "laptop" in again
    with app.app_context():
        assert [k.label for k in store.list_keys("acme")] == ["laptop"]
    (line,) = [r.getMessage() for r in caplog.records if "key.create" in r.getMessage()]
    assert "account=acme" in line and key[:12] in line and key not in line
    assert (
        app.test_client().get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code
        == 200
    )


def test_owner_gives_a_new_key_limits_of_its_own(app):
    client = _client(app)
    fields = {
        "label": "ci",
        "rpm": "5",
        "tpm": "",
        "budget": "2.50",
        "budget_period": "total",
        "models": "m-b, m-a",
        "expires": "2027-01-31",
    }
    created = _post(client, "/dashboard/keys", fields, "/dashboard/keys")
    assert created.status_code == 201
    key = re.search(r"pk_live_[A-Za-z0-9]+", created.text).group(0)
    with app.app_context():
        row = store.find_live_key(key)
        assert (row.rpm, row.tpm, row.budget_micros, row.budget_period) == (
            5,
            None,
            2_500_000,
            "total",
        )
        assert row.models == "m-a\nm-b" and row.expires_at.isoformat().startswith("2027-02-01")
    listed = client.get("/dashboard/keys").text
    assert "5 req/min" in listed and "$0.00 of $2.50 per total" in listed
    assert "models: m-a, m-b" in listed and "expires 2027-02-01 00:00 UTC" in listed


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"rpm": "0"}, "rpm must be at least 1"),
        ({"rpm": "many"}, "invalid literal"),
        ({"rpm": "100000"}, "above the account&#39;s tier"),
        ({"budget": "-1"}, "cannot be negative"),
        ({"budget": "lots"}, "not an amount of dollars"),
    ],
)
def test_key_limits_that_cannot_be_read_are_shown_on_the_form(app, fields, message):
    client = _client(app)
    answer = _post(client, "/dashboard/keys", {"label": "x"} | fields, "/dashboard/keys")
    assert answer.status_code == 400 and message in answer.text
    with app.app_context():
        assert "x" not in [k.label for k in store.list_keys("acme")]


def test_revoke_asks_first_then_revokes(app):
    client = _client(app)
    with app.app_context():
        row, key = store.create_key("acme", "old")
        row_id = row.id
    confirm = client.get(f"/dashboard/keys/{row_id}/revoke")
    assert confirm.status_code == 200 and "cannot be undone" in confirm.text
    done = _post(
        client, f"/dashboard/keys/{row_id}/revoke", page=f"/dashboard/keys/{row_id}/revoke"
    )
    assert done.status_code == 302
    with app.app_context():
        assert store.get_key(row_id).revoked_at is not None
    assert (
        app.test_client().get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code
        == 401
    )


def test_another_accounts_key_or_endpoint_is_not_found(app):
    client = _client(app)
    with app.app_context():
        theirs = store.list_keys("other")[0]
        endpoint = store.list_endpoints("other")[0]
    assert client.get(f"/dashboard/keys/{theirs.id}/revoke").status_code == 404
    assert _post(client, f"/dashboard/keys/{theirs.id}/revoke").status_code == 404
    assert client.get(f"/dashboard/endpoints/{endpoint.id}/remove").status_code == 404
    assert _post(client, f"/dashboard/endpoints/{endpoint.id}/remove").status_code == 404
    with app.app_context():
        assert store.get_key(theirs.id).revoked_at is None
        assert len(store.list_endpoints("other")) == 1
    assert "other's key" not in client.get("/dashboard/keys").text


def test_members_see_but_do_not_change(app):
    member = _client(app, "member")
    with app.app_context():
        row_id = store.create_key("acme", "shared")[0].id
    keys = member.get("/dashboard/keys")
    assert keys.status_code == 200 and "shared" in keys.text and "Create a key" not in keys.text
    assert _post(member, "/dashboard/keys", {"label": "x"}).status_code == 403
    assert member.get(f"/dashboard/keys/{row_id}/revoke").status_code == 403
    assert _post(member, f"/dashboard/keys/{row_id}/revoke").status_code == 403
    assert _post(member, "/dashboard/endpoints", {"url": "http://10.0.0.5:8000"}).status_code == 403
    with app.app_context():
        assert store.get_key(row_id).revoked_at is None and not store.list_endpoints("acme")
    assert member.get("/dashboard/usage").status_code == 200
    assert member.get("/dashboard/billing").status_code == 200


def test_endpoints_add_with_the_clis_checks_and_remove(app):
    client = _client(app)
    page = "/dashboard/endpoints"
    bad = _post(client, page, {"url": "ftp://10.0.0.5"}, page)
    assert bad.status_code == 400 and "must start with http" in bad.text
    metadata = _post(client, page, {"url": "http://169.254.169.254"}, page)
    assert metadata.status_code == 400 and "endpoint policy" in metadata.text
    added = _post(client, page, {"url": "http://127.0.0.1:9/", "upstream_key": "up-secret"}, page)
    assert added.status_code == 302
    listing = client.get(page).text
    assert "http://127.0.0.1:9" in listing and "up-secret" not in listing
    with app.app_context():
        (endpoint,) = store.list_endpoints("acme")
        assert endpoint.upstream_key == "up-secret"
    removed = _post(client, f"/dashboard/endpoints/{endpoint.id}/remove", page=page)
    assert removed.status_code == 302
    with app.app_context():
        assert store.list_endpoints("acme") == []


def _usage(app, account, model, key_id, tokens, cost):
    with app.app_context():
        acct = store.get_account(account)
        row = {
            "request_id": "r",
            "account_id": acct.id,
            "key_id": key_id,
            "endpoint_url": "e",
            "model": model,
            "route": "chat",
            "stream": False,
            "status": 200,
            "prompt_tokens": tokens,
            "completion_tokens": tokens,
            "total_tokens": 2 * tokens,
            "cost_micros": cost,
            "ttft_ms": None,
            "latency_ms": 1,
            "client_disconnected": False,
            "usage_source": "upstream",
        }
        store.write_usage(store.Batch(records=[row]))


def test_usage_page_and_csv_from_the_roll_up(app):
    with app.app_context():
        row, _ = store.create_key("acme", "k")
        key_id, prefix = row.id, row.prefix
        other = store.list_keys("other")[0].id
    _usage(app, "acme", "m-one", key_id, 10, 1_500_000)
    _usage(app, "acme", "m-one", key_id, 5, 500_000)
    _usage(app, "acme", "m-two", None, 1, 1)
    _usage(app, "other", "m-secret", other, 99, 9)
    client = _client(app)
    page = client.get("/dashboard/usage").text
    assert "m-one" in page and "m-two" in page and "m-secret" not in page
    assert '<span data-testid="total-requests">3</span>' in page and "$2.000001" in page
    assert prefix in page and "(no key)" in page
    csv = client.get("/dashboard/usage.csv")
    assert csv.mimetype == "text/csv" and "attachment" in csv.headers["Content-Disposition"]
    lines = csv.text.strip().splitlines()
    assert lines[0] == "day,model,key,requests,tokens,cost_usd" and len(lines) == 3
    assert any(",m-one," in line and ",2,30,2.00" in line for line in lines)
    empty = client.get("/dashboard/usage?start=2001-01-01&end=2001-01-31").text
    assert '<span data-testid="total-requests">0</span>' in empty
    assert client.get("/dashboard/usage?start=nonsense").status_code == 200


def test_billing_lists_credits_newest_first(app):
    runner = app.test_cli_runner()
    assert (
        runner.invoke(args=["accounts", "credit", "acme", "5", "--reason", "top-up"]).exit_code == 0
    )
    assert runner.invoke(args=["accounts", "credit", "acme", "--", "-2"]).exit_code == 0
    page = _client(app).get("/dashboard/billing").text
    assert "$28.00" in page
    rows = re.findall(
        r"<tr><td>[^<]+</td><td class=\"num\">([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td>", page
    )
    assert rows == [
        ("-$2.00", "credit", "cli"),
        ("+$5.00", "top-up", "cli"),
        ("+$25.00", "opening balance", "operator"),
    ]


def test_playground_key_is_short_lived_and_one_per_session(app):
    client = _client(app)
    page = client.get("/dashboard/playground")
    assert page.status_code == 200 and "No model is served" in page.text  # the pool is down
    first = _post(client, "/dashboard/playground/key", page="/dashboard/playground").get_json()[
        "key"
    ]
    second = _post(client, "/dashboard/playground/key", page="/dashboard/playground").get_json()[
        "key"
    ]
    api = app.test_client()
    auth = lambda key: {"Authorization": f"Bearer {key}"}  # noqa: E731
    assert api.get("/v1/models", headers=auth(first)).status_code == 401
    assert api.get("/v1/models", headers=auth(second)).status_code == 200
    assert client.get("/dashboard/keys").text.count("playground ·") == 1  # the spent one is hidden
    _post(client, "/dashboard/logout")
    assert api.get("/v1/models", headers=auth(second)).status_code == 401
    assert client.post("/dashboard/playground/key").status_code in (302, 400)


def test_endpoint_state_fragment(app):
    fragment = _client(app).get("/dashboard/endpoints/state")
    assert fragment.status_code == 200 and "<tr>" in fragment.text and "<html" not in fragment.text


def test_assets_are_local_and_fingerprinted(app):
    client = _client(app)
    page = client.get("/dashboard/usage").text
    assets = re.findall(r'(?:src|href)="(/dashboard/static/[^"]+)"', page)
    assert len(assets) == 5 and all("?v=" in a for a in assets)
    assert "http" not in "".join(re.findall(r'src="([^"]+)"', page))
    for asset in assets:
        assert client.get(asset).status_code == 200
