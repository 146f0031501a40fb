"""API keys: the list with each key's controls, a new key with its own (shown once),
revocation after a confirmation."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_login import login_required

from ... import store
from ...key_controls import ControlError, check_tier_bounds, read_controls
from ...limits import tier_figures
from ...models import ApiKey
from ...runtime import runtime
from .. import bp, services
from ..forms import ConfirmForm, KeyForm
from ..session import owner_required, signed_in


def _page(form: KeyForm, new_key: str | None = None, status: int = 200) -> ResponseReturnValue:
    keys = services.visible_keys(signed_in().account)
    return render_template(
        "dashboard/keys.html",
        keys=keys,
        form=form,
        new_key=new_key,
        owner=signed_in().is_owner,
        revoke=ConfirmForm(),
    ), status


@bp.get("/keys")
@login_required
def keys() -> ResponseReturnValue:
    """The account's keys: prefix, label, created, last used, revoked."""
    return _page(KeyForm())


@bp.post("/keys")
@login_required
@owner_required
def create_key() -> ResponseReturnValue:
    """A new key, shown in this answer only (never stored, never in a URL or a cookie)."""
    form = KeyForm()
    if not form.validate_on_submit():
        return _page(form, status=400)
    account = signed_in().account
    try:
        controls = read_controls(form.controls())
        check_tier_bounds(tier_figures(runtime().settings, account.tier), controls)
    except ControlError as exc:
        getattr(form, exc.name).errors = [exc.message]
        return _page(form, status=400)
    except ValueError as exc:  # above the tier
        field = form.rpm if str(exc).startswith("rpm") else form.tpm
        field.errors = [str(exc)]
        return _page(form, status=400)
    row, key = store.create_key(account.name, form.label.data or None, controls)
    runtime().keys.invalidate()
    services.audit("key.create", signed_in().user, key=f"{row.prefix}…")
    return _page(KeyForm(formdata=None), new_key=key, status=201)


def _own_key(key_id: int) -> ApiKey:
    try:
        return store.get_key(key_id, signed_in().account.name)
    except store.NotFoundError:
        abort(404, "No such key in your account.")


@bp.get("/keys/<int:key_id>/revoke")
@login_required
@owner_required
def confirm_revoke(key_id: int) -> ResponseReturnValue:
    """Ask before revoking: a revoked key cannot be brought back."""
    return render_template("dashboard/revoke.html", key=_own_key(key_id), form=ConfirmForm())


@bp.post("/keys/<int:key_id>/revoke")
@login_required
@owner_required
def revoke_key(key_id: int) -> ResponseReturnValue:
    """Revoke one of the account's keys (other workers see it within the auth cache TTL)."""
    key = _own_key(key_id)
    store.revoke_key_id(signed_in().account.name, key.id)
    runtime().keys.invalidate()
    services.audit("key.revoke", signed_in().user, key=f"{key.prefix}…")
    flash(f"Revoked {key.prefix}…", "info")
    return redirect(url_for("dashboard.keys"))
