"""Sign-in links, passwords, sessions and the sign-in throttle, with Flask's test client."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from helpers import DASHBOARD, PASSWORD, csrf_token, dashboard_user, sign_in
from processes import REDIS_URL, needs_redis

from packet import store, users
from packet.models import utcnow


@pytest.fixture
def app(make_app):
    app = make_app(**DASHBOARD)
    with app.app_context():
        store.create_account("acme", "standard", 25_000_000)
    return app


def _invite(app, email="new@example.com", role="member", **kwargs):
    with app.app_context():
        user, token = users.invite(email, "acme", role)
        if kwargs:
            token = users.issue_link(user, **kwargs)
    return token


def _set_password(client, token, password=PASSWORD, confirm=None):
    page = client.get(f"/dashboard/welcome/{token}")
    return client.post(
        f"/dashboard/welcome/{token}",
        data={
            "csrf_token": csrf_token(page.text),
            "password": password,
            "confirm": confirm or password,
        },
    )


def test_dashboard_is_absent_without_a_secret_key(make_app):
    client = make_app().test_client()
    assert client.get("/dashboard/login").status_code == 404


def test_invite_link_sets_a_password_once_then_the_user_signs_in(app):
    client = app.test_client()
    token = _invite(app)
    page = client.get(f"/dashboard/welcome/{token}")
    assert page.status_code == 200 and "new@example.com" in page.text
    done = _set_password(client, token)
    assert done.status_code == 302 and done.headers["Location"].endswith("/dashboard/login")
    # Single use: the same link is spent, for showing and for posting.
    assert client.get(f"/dashboard/welcome/{token}").status_code == 410
    again = client.post(f"/dashboard/welcome/{token}", data={"csrf_token": "x"})
    assert again.status_code in (400, 410)
    signed = sign_in(client, "new@example.com")
    assert signed.status_code == 302 and signed.headers["Location"].endswith("/dashboard/")
    assert client.get("/dashboard/").status_code == 200
    with app.app_context():
        user = store.get_user("new@example.com")
        assert user.password_hash and user.password_hash.startswith("scrypt:")
        assert PASSWORD not in user.password_hash and user.last_sign_in_at is not None


def test_expired_link_is_refused(app):
    token = _invite(app, now=utcnow() - users.LINK_TTL - timedelta(seconds=1))
    client = app.test_client()
    assert client.get(f"/dashboard/welcome/{token}").status_code == 410
    with app.app_context():
        assert users.redeem(token, PASSWORD) is None


def test_a_new_link_ends_the_previous_one(app):
    first = _invite(app)
    with app.app_context():
        _, second = users.reset("new@example.com")
    client = app.test_client()
    assert client.get(f"/dashboard/welcome/{first}").status_code == 410
    assert client.get(f"/dashboard/welcome/{second}").status_code == 200


def test_only_the_digest_of_a_link_is_stored(app):
    token = _invite(app)
    with app.app_context():
        from sqlalchemy import select

        from packet.extensions import db
        from packet.models import SignInToken

        digests = db.session.execute(select(SignInToken.digest)).scalars().all()
    assert token not in digests and len(digests) == 1 and len(digests[0]) == 64


def test_short_or_mismatched_passwords_are_refused(app):
    client = app.test_client()
    token = _invite(app)
    assert _set_password(client, token, "short").status_code == 400
    assert _set_password(client, token, PASSWORD, PASSWORD + "!").status_code == 400
    assert client.get(f"/dashboard/welcome/{token}").status_code == 200  # not spent


def test_unknown_email_and_wrong_password_get_the_same_answer(app):
    email = dashboard_user(app, "acme")
    client = app.test_client()
    wrong = sign_in(client, email, "not the password")
    unknown = sign_in(client, "nobody@example.com", PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    assert "Incorrect email or password." in wrong.text

    def strip(html: str) -> str:  # the page less the email typed and the (timed) CSRF token
        html = html.replace(email, "").replace("nobody@example.com", "")
        return re.sub(r'name="csrf_token" type="hidden" value="[^"]+"', "", html).split("<main")[1]

    assert strip(wrong.text) == strip(unknown.text)


def test_disabled_user_cannot_sign_in(app):
    email = dashboard_user(app, "acme")
    with app.app_context():
        users.set_disabled(email, True)
    assert sign_in(app.test_client(), email).status_code == 401


def test_pages_need_a_session(app):
    client = app.test_client()
    for path in ("/dashboard/", "/dashboard/keys", "/dashboard/usage", "/dashboard/billing"):
        answer = client.get(path)
        assert answer.status_code == 302 and "/dashboard/login" in answer.headers["Location"]


def test_sign_in_redirects_only_inside_the_dashboard(app):
    email = dashboard_user(app, "acme")
    client = app.test_client()
    token = csrf_token(client.get("/dashboard/login").text)
    answer = client.post(
        "/dashboard/login?next=//evil.example/x",
        data={"csrf_token": token, "email": email, "password": PASSWORD},
    )
    assert answer.headers["Location"] == "/dashboard/"


def test_session_cookie_flags(make_app):
    app = make_app(SECRET_KEY="s" * 40)  # no PACKET_DASHBOARD_INSECURE_COOKIES: Secure
    with app.app_context():
        store.create_account("acme", "standard", 0)
    email = dashboard_user(app, "acme")
    client = app.test_client()
    cookie = client.get("/dashboard/login").headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
    assert "Path=/dashboard" in cookie
    assert email  # the user exists; signing in over plain http is the browser's refusal


def test_api_requests_get_no_session(app):
    answer = app.test_client().get("/v1/models")
    assert "Set-Cookie" not in answer.headers and "Cookie" not in answer.headers.get("Vary", "")


def test_csrf_token_is_required(app):
    email = dashboard_user(app, "acme")
    client = app.test_client()
    answer = client.post("/dashboard/login", data={"email": email, "password": PASSWORD})
    assert answer.status_code == 400 and "CSRF" in answer.text
    sign_in(client, email)
    assert client.post("/dashboard/keys", data={"label": "x"}).status_code == 400
    assert client.post("/dashboard/logout").status_code == 400
    assert client.get("/dashboard/").status_code == 200  # still signed in


def test_sign_out_ends_the_session(app):
    email = dashboard_user(app, "acme")
    client = app.test_client()
    sign_in(client, email)
    page = client.get("/dashboard/")
    assert (
        client.post("/dashboard/logout", data={"csrf_token": csrf_token(page.text)}).status_code
        == 302
    )
    assert client.get("/dashboard/").status_code == 302


def test_disabling_or_a_new_password_ends_existing_sessions(app):
    email = dashboard_user(app, "acme")
    first, second = app.test_client(), app.test_client()
    sign_in(first, email)
    sign_in(second, email)
    page = first.get("/dashboard/password")
    changed = first.post(
        "/dashboard/password",
        data={
            "csrf_token": csrf_token(page.text),
            "current": PASSWORD,
            "password": "a brand new password",
            "confirm": "a brand new password",
        },
    )
    assert changed.status_code == 302
    assert second.get("/dashboard/").status_code == 302  # the other session ended too
    assert first.get("/dashboard/").status_code == 302
    assert sign_in(first, email, "a brand new password").status_code == 302
    with app.app_context():
        users.set_disabled(email, True)
    assert first.get("/dashboard/").status_code == 302


def test_wrong_current_password_changes_nothing(app):
    email = dashboard_user(app, "acme")
    client = app.test_client()
    sign_in(client, email)
    page = client.get("/dashboard/password")
    answer = client.post(
        "/dashboard/password",
        data={
            "csrf_token": csrf_token(page.text),
            "current": "not it at all",
            "password": "a brand new password",
            "confirm": "a brand new password",
        },
    )
    assert answer.status_code == 400 and client.get("/dashboard/").status_code == 200


def test_failed_sign_ins_are_limited_per_email(app):
    email = dashboard_user(app, "acme")
    client = app.test_client()
    for _ in range(5):
        assert sign_in(client, email, "wrong password!").status_code == 401
    assert sign_in(client, email, "wrong password!").status_code == 429
    # The budget is spent: even the right password waits for the window to end.
    refused = sign_in(client, email)
    assert refused.status_code == 429 and "Too many failed sign-ins" in refused.text
    # Another user is not locked out by it (the address budget is larger).
    other = dashboard_user(app, "acme")
    assert sign_in(client, other).status_code == 302


def test_failed_sign_ins_are_limited_per_address(app):
    client = app.test_client()
    for i in range(20):
        assert sign_in(client, f"guess{i}@example.com", "whatever pw").status_code == 401
    assert sign_in(client, "guess-last@example.com", "whatever pw").status_code == 429
    other = app.test_client()  # another client address is not affected
    email = dashboard_user(app, "acme")
    answer = sign_in_from(other, email, "10.1.2.3")
    assert answer.status_code == 302


def sign_in_from(client, email, address):
    token = csrf_token(client.get("/dashboard/login", environ_base={"REMOTE_ADDR": address}).text)
    return client.post(
        "/dashboard/login",
        data={"csrf_token": token, "email": email, "password": PASSWORD},
        environ_base={"REMOTE_ADDR": address},
    )


def test_successful_sign_ins_are_not_counted(app):
    email = dashboard_user(app, "acme")
    client = app.test_client()
    for _ in range(8):
        assert sign_in(client, email).status_code == 302


@needs_redis
def test_failed_sign_ins_are_counted_in_redis_per_gateway_prefix(make_app):
    prefix = f"t{uuid.uuid4().hex[:8]}"
    app = make_app(**DASHBOARD, REDIS_URL=REDIS_URL, PACKET_LIMIT_KEY_PREFIX=prefix)
    with app.app_context():
        store.create_account("acme", "standard", 0)
    email = dashboard_user(app, "acme")
    client = app.test_client()
    for _ in range(5):
        assert sign_in(client, email, "wrong password!").status_code == 401
    assert sign_in(client, email, "wrong password!").status_code == 429
    assert sign_in(client, email).status_code == 429
    # Another gateway on the same Redis (another prefix) counts on its own.
    other = make_app(**DASHBOARD, REDIS_URL=REDIS_URL, PACKET_LIMIT_KEY_PREFIX=prefix + "x")
    with other.app_context():
        store.create_account("acme", "standard", 0)
        users.redeem(users.invite(email, "acme", "owner")[1], PASSWORD)
    assert sign_in(other.test_client(), email).status_code == 302
