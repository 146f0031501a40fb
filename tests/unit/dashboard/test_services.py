"""The dashboard's data on SQLite and PostgreSQL: the daily roll-up written with the usage
rows (same transaction), the balance ledger written with each credit, invites from the CLI
and the admin API."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from helpers import PASSWORD
from sqlalchemy import func, select

from packet import create_app, store, users
from packet.extensions import db
from packet.models import UsageDaily, UsageRecord, utcnow

TOKEN = "adm_" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def app(database):
    app = create_app(
        {
            "DATABASE_URL": database.url,
            "PACKET_ADMIN_TOKEN": TOKEN,
            "PACKET_PUBLIC_URL": "https://gw.example.com",
            "PACKET_USAGE_FLUSH_INTERVAL": "0",
        }
    )
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def account(app) -> str:
    name = f"acct-{uuid.uuid4().hex[:8]}"
    with app.app_context():
        store.create_account(name, "standard", 10_000_000)
    return name


def _row(account_id, model, key_id, prompt, completion, cost, **extra):
    return {
        "request_id": uuid.uuid4().hex,
        "account_id": account_id,
        "key_id": key_id,
        "endpoint_url": "e",
        "model": model,
        "route": "chat",
        "stream": False,
        "status": 200,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "cost_micros": cost,
        "ttft_ms": None,
        "latency_ms": 1,
        "client_disconnected": False,
        "usage_source": "upstream",
        **extra,
    }


def test_roll_up_matches_the_usage_rows(app, account):
    with app.app_context():
        acct = store.get_account(account)
        key, _ = store.create_key(account, "k")
        yesterday = utcnow() - timedelta(days=1)
        rows = [
            _row(acct.id, "m1", key.id, 10, 5, 100),
            _row(acct.id, "m1", key.id, 1, 2, 3),
            _row(acct.id, None, None, 4, 0, 0),
            _row(acct.id, "m1", key.id, 7, 7, 7, created_at=yesterday),
        ]
        store.write_usage(store.Batch(records=rows[:2]))
        store.write_usage(store.Batch(records=rows[2:]))
        daily = {
            (r.day, r.model, r.key_id): (r.requests, r.total_tokens, r.cost_micros)
            for r in db.session.execute(
                select(UsageDaily).where(UsageDaily.account_id == acct.id)
            ).scalars()
        }
        today = utcnow().date()
        assert daily == {
            (today, "m1", key.id): (2, 18, 103),
            (today, "", 0): (1, 4, 0),
            (yesterday.date(), "m1", key.id): (1, 14, 7),
        }
        count, tokens = db.session.execute(
            select(func.count(), func.sum(UsageRecord.total_tokens)).where(
                UsageRecord.account_id == acct.id
            )
        ).one()
        assert (count, int(tokens)) == (4, 36)
        by_model = {r.ident: r.requests for r in store.usage_by(acct.id, today, today, "model")}
        assert by_model == {"m1": 2, "": 1}
        by_key = store.usage_by(acct.id, yesterday.date(), today, "key")
        assert [(r.label, r.requests) for r in by_key] == [("", 1), (key.prefix, 3)]
        db.session.rollback()


def test_a_failed_flush_writes_no_roll_up(app, account):
    with app.app_context():
        acct = store.get_account(account)
        bad = _row(10**9, "m", None, 1, 1, 1)  # no such account: the foreign key refuses it
        with pytest.raises(Exception):  # noqa: B017 - the database's refusal, any driver
            store.write_usage(store.Batch(records=[_row(acct.id, "m", None, 1, 1, 1), bad]))
        assert store.daily_usage(acct.id, utcnow().date(), utcnow().date()) == []


def test_credits_by_cli_and_admin_api_land_in_the_ledger(app, account):
    runner = app.test_cli_runner()
    done = runner.invoke(args=["accounts", "credit", account, "2.5", "--reason", "promo"])
    assert done.exit_code == 0, done.output
    answer = app.test_client().post(
        f"/admin/v1/accounts/{account}/credit",
        json={"amount": -1, "reason": "refund reversal"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert answer.status_code == 200
    with app.app_context():
        acct = store.get_account(account)
        events = [(e.amount_micros, e.reason, e.actor) for e in store.balance_events(acct.id)]
        assert events == [
            (-1_000_000, "refund reversal", "admin api"),
            (2_500_000, "promo", "cli"),
            (10_000_000, "opening balance", "operator"),
        ]
        assert acct.balance_micros == 11_500_000


def test_cli_invite_prints_the_link_alone_on_the_last_line(app, account):
    runner = app.test_cli_runner(mix_stderr=False) if _mixes() else app.test_cli_runner()
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    done = runner.invoke(args=["users", "invite", email, "--account", account, "--role", "owner"])
    assert done.exit_code == 0, done.output
    link = done.stdout.strip().splitlines()[-1]
    assert link.startswith("https://gw.example.com/dashboard/welcome/") and " " not in link
    token = link.rsplit("/", 1)[1]
    with app.app_context():
        assert users.pending(token).role == "owner"
        assert users.redeem(token, PASSWORD) is not None
        assert users.redeem(token, PASSWORD) is None  # single use
    again = runner.invoke(args=["users", "invite", email, "--account", account])
    assert again.exit_code == 1 and "already exists" in again.output
    reset = runner.invoke(args=["users", "reset", email])
    assert reset.exit_code == 0 and "/dashboard/welcome/" in reset.stdout.splitlines()[-1]
    bad = runner.invoke(args=["users", "invite", "not-an-email", "--account", account])
    assert bad.exit_code == 1 and "not an email" in bad.output
    listed = runner.invoke(args=["users", "list", account])
    assert email in listed.output and "password=set" in listed.output


def _mixes() -> bool:
    import inspect

    from flask.testing import FlaskCliRunner

    return "mix_stderr" in inspect.signature(FlaskCliRunner.invoke).parameters


def test_admin_api_invites_and_resets(app, account):
    client = app.test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    created = client.post(
        f"/admin/v1/accounts/{account}/invites", json={"email": email}, headers=auth
    )
    assert created.status_code == 201, created.json
    assert created.json["role"] == "member" and created.json["expires_in"] == 86400
    assert created.json["link"].startswith("https://gw.example.com/dashboard/welcome/")
    assert (
        client.post(
            f"/admin/v1/accounts/{account}/invites", json={"email": email}, headers=auth
        ).status_code
        == 409
    )
    bad = client.post(
        f"/admin/v1/accounts/{account}/invites", json={"email": "x", "role": "god"}, headers=auth
    )
    assert bad.status_code == 400 and bad.json["error"]["param"] in ("email", "role")
    missing = client.post("/admin/v1/accounts/nope/invites", json={"email": "a@b.co"}, headers=auth)
    assert missing.status_code == 404
    reset = client.post(f"/admin/v1/users/{email}/reset", headers=auth)
    assert reset.status_code == 200 and reset.json["link"] != created.json["link"]
    assert client.post("/admin/v1/users/nobody@x.io/reset", headers=auth).status_code == 404
