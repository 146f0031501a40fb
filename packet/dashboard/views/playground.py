"""Playground: chat with a served model through the gateway's own /v1/chat/completions.

The page asks for a key of its own (a POST with the CSRF token); the browser then calls the
API with it like any client, so the answer streams and is metered like any request. One live
key per session: a new one revokes the previous, and signing out revokes it.
"""

from __future__ import annotations

from flask import jsonify, render_template, session
from flask.typing import ResponseReturnValue
from flask_login import login_required

from .. import bp, services
from ..session import signed_in


@bp.get("/playground")
@login_required
def playground() -> ResponseReturnValue:
    """Pick a served model, send a message, watch the answer stream in."""
    return render_template(
        "dashboard/playground.html", models=services.served_models(signed_in().account)
    )


@bp.post("/playground/key")
@login_required
def playground_key() -> ResponseReturnValue:
    """A key for this session's Playground (the previous one is revoked)."""
    previous = session.get("playground_key")
    key_id, key = services.playground_key(
        signed_in().user, previous if isinstance(previous, int) else None
    )
    session["playground_key"] = key_id
    return jsonify(key=key)
