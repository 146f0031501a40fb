"""The admin HTTP API under ``/admin/v1/``: accounts, keys, endpoints and usage.

Registered only when ``PACKET_ADMIN_TOKEN`` is set; every request must carry it as a Bearer
token (compared in constant time). Views are thin: the same store functions and report views
as the CLI, so the two always agree. Lists page with ``?limit=&offset=`` (usage records with
the ``?after=`` cursor). Changes drop this worker's auth cache at once; other workers and
instances see them within ``PACKET_AUTH_CACHE_TTL`` seconds.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import partial
from typing import Any

from flask import Blueprint, Response, jsonify, request
from marshmallow import Schema, ValidationError

from . import admin_schemas as schemas
from . import store, users
from .auth import bearer_token
from .body import read_body
from .errors import Conflict, InvalidAPIKey, InvalidRequest, NotFound, from_validation, render
from .key_controls import check_tier_bounds
from .limits import tier_figures
from .models import User
from .reports import account_usage, account_view, endpoint_view, key_view, usage_record_view
from .runtime import runtime
from .upstream.errors import Blocked

bp = Blueprint("admin", __name__, url_prefix="/admin/v1")


@bp.before_request
def _require_token() -> None:
    """401 unless ``Authorization: Bearer <PACKET_ADMIN_TOKEN>``."""
    expected = runtime().settings.admin_token or ""
    given = bearer_token() or ""
    if not (expected and hmac.compare_digest(given.encode(), expected.encode())):
        raise InvalidAPIKey(
            "Missing or incorrect admin token. Send 'Authorization: Bearer <PACKET_ADMIN_TOKEN>'."
        )


@bp.errorhandler(store.NotFoundError)
def _not_found(exc: store.NotFoundError) -> Response:
    return render(NotFound(f"{str(exc).capitalize()}."))


@bp.errorhandler(store.ConflictError)
def _conflict(exc: store.ConflictError) -> Response:
    return render(Conflict(f"{str(exc).capitalize()}."))


def _load(schema: Schema, data: Any) -> dict[str, Any]:
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise from_validation(exc.messages) from None


def _body(schema: Schema, *, optional: bool = False) -> dict[str, Any]:
    """The JSON object body, validated (an empty body is ``{}`` when ``optional``)."""
    raw = read_body(runtime().settings.request_read_timeout)
    if optional and not raw:
        return _load(schema, {})
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return _load(schema, data)


def _query(schema: Schema) -> dict[str, Any]:
    return _load(schema, request.args.to_dict())


def _page(fetch: Callable[..., list[Any]], view: Callable[[Any], dict[str, Any]]) -> Response:
    """One page of a list plus whether there is more (fetched as ``limit + 1`` rows)."""
    page = _query(schemas.Page())
    limit, offset = page["limit"], page["offset"]
    rows = fetch(offset=offset, limit=limit + 1)
    more = len(rows) > limit
    return jsonify(
        object="list",
        data=[view(row) for row in rows[:limit]],
        limit=limit,
        offset=offset,
        has_more=more,
        next_offset=offset + limit if more else None,
    )


def _tier(value: str) -> str:
    try:
        return runtime().settings.check_tier(value)
    except ValueError as exc:
        raise InvalidRequest(f"Invalid value for 'tier': {exc}.", param="tier") from None


def _changed(payload: dict[str, Any], status: int = 200) -> tuple[Response, int]:
    """Answer a change, after dropping this worker's cached keys and accounts."""
    runtime().keys.invalidate()
    return jsonify(payload), status


# --- accounts ---------------------------------------------------------------------------------


@bp.post("/accounts")
def create_account() -> tuple[Response, int]:
    """Create an account (201)."""
    data = _body(schemas.AccountCreate())
    tier = _tier(data.get("tier") or runtime().settings.default_tier)
    account = store.create_account(
        data["name"], tier, data["balance"], data.get("default_model"), actor="admin api"
    )
    return _changed(account_view(account), 201)


@bp.get("/accounts")
def list_accounts() -> Response:
    """Accounts, oldest first."""
    return _page(store.list_accounts, account_view)


@bp.get("/accounts/<name>")
def get_account(name: str) -> Response:
    """One account: tier, balance, default model."""
    return jsonify(account_view(store.get_account(name)))


@bp.patch("/accounts/<name>")
def update_account(name: str) -> tuple[Response, int]:
    """Set the tier, the default model (``null`` clears it) and/or whether the response cache
    is on by default (``cache_default``)."""
    data = _body(schemas.AccountUpdate())
    tier = _tier(data["tier"]) if "tier" in data else None
    account = store.update_account(
        name,
        tier=tier,
        default_model=data.get("default_model"),
        clear_default_model="default_model" in data and data["default_model"] is None,
        cache_default=data.get("cache_default"),
    )
    return _changed(account_view(account))


@bp.post("/accounts/<name>/credit")
def credit_account(name: str) -> tuple[Response, int]:
    """Add ``amount`` dollars to the balance (negative removes), atomically."""
    data = _body(schemas.Credit())
    reason = data.get("reason") or "credit"
    return _changed(
        account_view(store.credit_account(name, data["amount"], reason, actor="admin api"))
    )


# --- keys -------------------------------------------------------------------------------------


@bp.post("/accounts/<name>/keys")
def create_key(name: str) -> tuple[Response, int]:
    """A new key (201), with its controls if given; the full key is in this answer only."""
    changes = _key_changes(store.get_account(name).tier, schemas.KeyCreate())
    label = changes.pop("label", None)
    row, key = store.create_key(name, label, changes)
    return _changed(key_view(row) | {"key": key}, 201)


@bp.patch("/accounts/<name>/keys/<int:key_id>")
def update_key(name: str, key_id: int) -> tuple[Response, int]:
    """Change a key's label or controls (``null`` clears one)."""
    key = store.get_key(key_id, name)
    changes = _key_changes(key.account.tier, schemas.KeyUpdate())
    return _changed(key_view(store.set_controls(key, changes)))


def _key_changes(tier: str, schema: schemas.KeyUpdate) -> dict[str, Any]:
    """The body's key settings as columns; 400 for an rpm or tpm above the tier."""
    data = _body(schema, optional=True)
    if "budget" in data:
        data["budget_micros"] = data.pop("budget")
    try:
        check_tier_bounds(tier_figures(runtime().settings, tier), data)
    except ValueError as exc:
        param = "rpm" if str(exc).startswith("rpm") else "tpm"
        raise InvalidRequest(f"Invalid value for '{param}': {exc}.", param=param) from None
    return data


@bp.get("/accounts/<name>/keys")
def list_keys(name: str) -> Response:
    """The account's keys (prefixes only), revoked ones included."""
    return _page(partial(store.list_keys, name), key_view)


@bp.delete("/accounts/<name>/keys/<int:key_id>")
def revoke_key(name: str, key_id: int) -> tuple[Response, int]:
    """Revoke a key (idempotent); answers the revoked key."""
    return _changed(key_view(store.revoke_key_id(name, key_id)))


# --- endpoints --------------------------------------------------------------------------------


@bp.post("/accounts/<name>/endpoints")
def add_endpoint(name: str) -> tuple[Response, int]:
    """Add an inference endpoint (vLLM's base URL) (201); 400 when the policy refuses it.

    A name that does not resolve yet is accepted: every new connection is checked anyway.
    """
    data = _body(schemas.EndpointCreate())
    try:
        runtime().client.policy.check_url(data["url"])
    except Blocked as exc:
        raise InvalidRequest(
            f"Invalid value for 'url': refused by the gateway's endpoint policy: {exc}.",
            param="url",
        ) from None
    endpoint = store.add_endpoint(name, data["url"], data.get("upstream_key"))
    return _changed(endpoint_view(endpoint), 201)


@bp.get("/accounts/<name>/endpoints")
def list_endpoints(name: str) -> Response:
    """The account's endpoints (upstream keys are never shown)."""
    return _page(partial(store.list_endpoints, name), endpoint_view)


@bp.delete("/accounts/<name>/endpoints/<int:endpoint_id>")
def remove_endpoint(name: str, endpoint_id: int) -> tuple[Response, int]:
    """Remove an endpoint."""
    store.remove_endpoint(name, endpoint_id)
    return _changed({"object": "endpoint", "id": endpoint_id, "deleted": True})


# --- usage ------------------------------------------------------------------------------------


@bp.get("/accounts/<name>/usage")
def usage(name: str) -> Response:
    """Totals and per model / per key breakdown over ``[since, until)``, filterable."""
    return jsonify(account_usage(name, **_query(schemas.UsageQuery())))


@bp.get("/accounts/<name>/usage/records")
def usage_records(name: str) -> Response:
    """One row per request, oldest first; pass ``next_after`` back as ``after``."""
    query = _query(schemas.RecordsQuery())
    limit = query.pop("limit")
    rows = store.usage_records(name, after_id=query.pop("after"), limit=limit + 1, **query)
    more = len(rows) > limit
    rows = rows[:limit]
    return jsonify(
        object="list",
        data=[usage_record_view(r) for r in rows],
        has_more=more,
        next_after=rows[-1].id if more else None,
    )


# --- dashboard users --------------------------------------------------------------------------


def _link_view(user: User, token: str, status: int) -> tuple[Response, int]:
    base = runtime().settings.public_url or request.host_url.rstrip("/")
    return jsonify(
        object="sign_in_link",
        email=user.email,
        role=user.role,
        link=users.link(token, base),
        expires_in=int(users.LINK_TTL.total_seconds()),
    ), status


@bp.post("/accounts/<name>/invites")
def invite_user(name: str) -> tuple[Response, int]:
    """Invite a dashboard user to the account (201): a one-time sign-in link, 24 h."""
    data = _body(schemas.InviteCreate())
    try:
        user, token = users.invite(data["email"], name, data["role"])
    except users.UserError as exc:
        raise InvalidRequest(f"{str(exc).capitalize()}.", param="email") from None
    return _link_view(user, token, 201)


@bp.post("/users/<email>/reset")
def reset_user(email: str) -> tuple[Response, int]:
    """A new one-time sign-in link for a dashboard user (earlier ones stop working)."""
    user, token = users.reset(email)
    return _link_view(user, token, 200)


@bp.get("/accounts/<name>/batches")
def list_batches(name: str) -> Response:
    """The account's batches, newest first (``?limit=``, at most 100)."""
    from .batch import service

    account = store.get_account(name)
    limit = _query(schemas.Page())["limit"]
    rows = store.list_batches(account.id, None, min(limit, 100))
    return jsonify({"object": "list", "data": [service.view(row) for row in rows]})


@bp.get("/batches/<batch_id>")
def get_batch(batch_id: str) -> Response:
    """Any account's batch (the batch object)."""
    from .batch import service

    return jsonify(service.view(service.find(None, batch_id)))


@bp.post("/batches/<batch_id>/cancel")
def cancel_batch(batch_id: str) -> Response:
    """Cancel any account's batch."""
    from .batch import service

    return jsonify(service.view(service.cancel(None, batch_id)))
