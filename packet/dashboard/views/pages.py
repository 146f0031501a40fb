"""Overview (balance, limits, endpoints, quick start) and Billing (the balance's history)."""

from __future__ import annotations

from flask import render_template, request
from flask.typing import ResponseReturnValue
from flask_login import login_required

from ... import store
from ...reports import dollars
from ...runtime import runtime
from .. import bp, services
from ..session import signed_in


def public_base() -> str:
    """The gateway's base URL as clients reach it: PACKET_PUBLIC_URL, else this request's."""
    return runtime().settings.public_url or request.host_url.rstrip("/")


@bp.get("/")
@login_required
def overview() -> ResponseReturnValue:
    """Balance, tier and the current window's use, endpoints and models, a quick start."""
    account = signed_in().account
    data = services.overview(account)
    return render_template(
        "dashboard/overview.html",
        account=account,
        base_url=public_base(),
        example_model=(data["models"] or ["auto"])[0],
        **data,
    )


@bp.get("/endpoints/state")
@login_required
def endpoint_state() -> ResponseReturnValue:
    """The endpoints' live state, as a fragment htmx swaps in every few seconds."""
    states = services.endpoint_states(signed_in().account)
    return render_template("dashboard/_endpoint_rows.html", endpoints=states)


@bp.get("/billing")
@login_required
def billing() -> ResponseReturnValue:
    """The balance and every credit and debit made to it, newest first."""
    account = signed_in().account
    events = store.balance_events(account.id, limit=200)
    return render_template(
        "dashboard/billing.html",
        balance=dollars(account.balance_micros),
        events=[
            (e, f"{'-' if e.amount_micros < 0 else '+'}${dollars(abs(e.amount_micros))}")
            for e in events
        ],
    )
