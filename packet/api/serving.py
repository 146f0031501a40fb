"""The Flask door onto the pipeline: the request as an Inbound, the Answer as a Response."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Response, g, request

from ..body import read_body
from ..gateway.inbound import Inbound, Route
from ..gateway.pipeline import serve
from ..limits import counted_at_admission, note_admission
from ..runtime import runtime


def proxied(route: Route, resource: str | None = None) -> Response:
    """Serve the current request on ``route``; what admission counted goes to the headers."""
    rt = runtime()
    raw = read_body(rt.settings.request_read_timeout) if route.schema is not None else b""
    inbound = Inbound(
        g.principal, route, raw, g.request_id, g.started, resource, request.query_string
    )
    try:
        answer = serve(rt, inbound)
    finally:
        if inbound.counted:
            note_admission(inbound.admission)
        g.metered = inbound.metered
    return Response(
        answer.body, status=answer.status, mimetype=answer.mimetype, headers=answer.headers
    )


def proxy(bp: Blueprint, rule: str, route: Route, doc: str) -> Callable[..., Response]:
    """Register the view of one proxied route; ``<id>`` in ``rule`` is the resource. The view
    carries its route (the OpenAPI document reads it) and ``doc`` as its docstring."""

    def view(id: str | None = None) -> Response:
        return proxied(route, id)

    view.__doc__ = doc
    view.route = route  # type: ignore[attr-defined]
    endpoint = route.name.replace(".", "_") + ("_v2" if rule.startswith("/v2") else "")
    bp.add_url_rule(rule, endpoint, counted_at_admission(view), methods=[route.method])
    return view
