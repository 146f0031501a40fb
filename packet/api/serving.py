"""The Flask door onto the pipeline: the request as an Inbound, the Answer as a Response."""

from __future__ import annotations

from flask import Response, g

from ..body import read_body
from ..gateway.inbound import Inbound, Route
from ..gateway.pipeline import serve
from ..limits import note_admission
from ..runtime import runtime


def proxied(route: Route) -> Response:
    """Serve the current request on ``route``; what admission counted goes to the headers."""
    rt = runtime()
    raw = read_body(rt.settings.request_read_timeout)
    inbound = Inbound(g.principal, route, raw, g.request_id, g.started)
    try:
        answer = serve(rt, inbound)
    finally:
        if inbound.counted:
            note_admission(inbound.admission)
        g.metered = inbound.metered
    return Response(
        answer.body, status=answer.status, mimetype=answer.mimetype, headers=answer.headers
    )
