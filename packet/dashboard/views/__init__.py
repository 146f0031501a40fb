"""The dashboard's views, one module per page; importing this declares them on ``bp``."""

from __future__ import annotations

import hashlib
from datetime import datetime
from functools import cache
from pathlib import Path

from flask import render_template, url_for
from flask_login import current_user
from flask_wtf.csrf import generate_csrf
from werkzeug.exceptions import BadRequest, HTTPException

from ...models import ApiKey
from ...reports import dollars, key_view
from ...users import UserError
from .. import bp, session
from . import endpoints, keys, pages, playground, signin, usage

__all__ = ["endpoints", "keys", "pages", "playground", "signin", "usage"]


@bp.errorhandler(HTTPException)
def _error_page(exc: HTTPException) -> tuple[str, int]:
    """Errors inside the dashboard are pages, not the API's JSON envelope."""
    status = exc.code or 500
    if status == 429:
        message = "Too many failed sign-ins. Wait a minute, then try again."
        return render_template(
            "dashboard/error.html", status=status, name="Slow down", message=message
        ), status
    return render_template(
        "dashboard/error.html", status=status, name=exc.name, message=exc.description
    ), status


@bp.errorhandler(UserError)
def _user_error(exc: UserError) -> tuple[str, int]:
    return _error_page(BadRequest(str(exc)))


@bp.app_template_filter("when")
def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "–"


@bp.app_template_filter("dollars")
def _dollars(micros: int) -> str:
    return dollars(micros)


@bp.app_template_filter("limits")
def _limits(key: ApiKey) -> str:
    """A key's own controls in a few words ("–" for none)."""
    view = key_view(key)
    parts = []
    if view["rpm"]:
        parts.append(f"{view['rpm']} req/min")
    if view["tpm"]:
        parts.append(f"{view['tpm']} tok/min")
    if view["budget"] is not None:
        per = "month" if view["budget_period"] == "month" else "total"
        parts.append(f"${view['spent']} of ${view['budget']} per {per}")
    if view["models"]:
        parts.append("models: " + ", ".join(view["models"]))
    if view["expires_at"]:
        parts.append(f"expires {view['expires_at'][:16].replace('T', ' ')} UTC")
    return "; ".join(parts) or "–"


@cache
def _fingerprint(filename: str) -> str:
    folder = Path(bp.static_folder or "")
    return hashlib.sha256((folder / filename).read_bytes()).hexdigest()[:12]


def asset(filename: str) -> str:
    """A static file's URL with its content's fingerprint (static files are cached a year)."""
    return url_for("dashboard.static", filename=filename, v=_fingerprint(filename))


bp.before_request(session.check_csrf)
bp.context_processor(
    lambda: {"csrf_token": generate_csrf, "asset": asset, "current_user": current_user}
)
