"""Endpoints: the list with live state and models, add (the CLI's URL checks), remove."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_login import login_required

from ... import store
from ...runtime import runtime
from ...upstream.client import validate_base_url
from ...upstream.errors import Blocked
from .. import bp, services
from ..forms import ConfirmForm, EndpointForm
from ..session import owner_required, signed_in


def _page(form: EndpointForm, status: int = 200) -> ResponseReturnValue:
    account = signed_in().account
    return render_template(
        "dashboard/endpoints.html",
        endpoints=services.endpoint_states(account),
        own=bool(store.account_endpoints(account.id)),
        form=form,
        owner=signed_in().is_owner,
    ), status


@bp.get("/endpoints")
@login_required
def endpoints() -> ResponseReturnValue:
    """The account's endpoints (or the shared pool it uses) with their state."""
    return _page(EndpointForm())


@bp.post("/endpoints")
@login_required
@owner_required
def add_endpoint() -> ResponseReturnValue:
    """Add an endpoint: a plain http(s) URL the gateway's endpoint policy allows."""
    form = EndpointForm()
    if not form.validate_on_submit():
        return _page(form, 400)
    try:
        url = validate_base_url(form.url.data or "")
        runtime().client.policy.check_url(url)
    except ValueError as exc:
        form.url.errors = [f"{str(exc).capitalize()}."]
        return _page(form, 400)
    except Blocked as exc:
        form.url.errors = [f"Refused by the gateway's endpoint policy: {exc}."]
        return _page(form, 400)
    endpoint = store.add_endpoint(signed_in().account.name, url, form.upstream_key.data or None)
    runtime().keys.invalidate()
    services.audit("endpoint.add", signed_in().user, endpoint=endpoint.id, url=endpoint.base_url)
    flash(f"Added {endpoint.base_url}.", "info")
    return redirect(url_for("dashboard.endpoints"))


def _own_endpoint(endpoint_id: int) -> str:
    for row in store.account_endpoints(signed_in().account.id):
        if row.id == endpoint_id:
            return row.base_url
    abort(404, "No such endpoint in your account.")


@bp.get("/endpoints/<int:endpoint_id>/remove")
@login_required
@owner_required
def confirm_remove(endpoint_id: int) -> ResponseReturnValue:
    """Ask before removing an endpoint."""
    url = _own_endpoint(endpoint_id)
    return render_template(
        "dashboard/remove.html", endpoint_id=endpoint_id, url=url, form=ConfirmForm()
    )


@bp.post("/endpoints/<int:endpoint_id>/remove")
@login_required
@owner_required
def remove_endpoint(endpoint_id: int) -> ResponseReturnValue:
    """Remove one of the account's endpoints."""
    url = _own_endpoint(endpoint_id)
    store.remove_endpoint(signed_in().account.name, endpoint_id)
    runtime().keys.invalidate()
    services.audit("endpoint.remove", signed_in().user, endpoint=endpoint_id, url=url)
    flash(f"Removed {url}.", "info")
    return redirect(url_for("dashboard.endpoints"))
