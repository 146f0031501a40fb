"""Usage: a chart and tables over a date range (the last 30 days by default), and CSV."""

from __future__ import annotations

from datetime import date

from flask import Response, render_template, request
from flask.typing import ResponseReturnValue
from flask_login import login_required

from .. import bp, services
from ..forms import RangeForm
from ..session import signed_in


def _range() -> tuple[RangeForm, date, date]:
    """The range in the query string (``start``, ``end``); a bad date means the default."""
    form = RangeForm(formdata=request.args)
    valid = form.validate()
    first, last = services.usage_range(
        form.start.data if valid else None, form.end.data if valid else None
    )
    form.start.data, form.end.data = first, last
    return form, first, last


@bp.get("/usage")
@login_required
def usage() -> ResponseReturnValue:
    """Requests, tokens and cost per day and model; totals per model and per key."""
    form, first, last = _range()
    data = services.usage(signed_in().account, first, last)
    return render_template("dashboard/usage.html", form=form, first=first, last=last, **data)


@bp.get("/usage.csv")
@login_required
def usage_csv() -> ResponseReturnValue:
    """The range's roll-up as CSV: one line per day, model and key."""
    _, first, last = _range()
    body = services.usage_csv(signed_in().account, first, last)
    name = f"usage-{first.isoformat()}-{last.isoformat()}.csv"
    return Response(
        body,
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
