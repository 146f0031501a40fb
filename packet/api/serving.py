"""The Flask door onto the pipeline: the request as an Inbound, the Answer as a Response."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Response, request

from ..body import read_body, receiving
from ..config import Settings
from ..exchange import current
from ..gateway.inbound import Inbound, Route
from ..gateway.pipeline import serve
from ..limits import count_unadmitted, note_admission
from ..runtime import runtime
from ..upload import MAX_FIELD_BYTES, Upload, receive

FORM_ALLOWANCE = MAX_FIELD_BYTES + 16 * 1024  # the form's fields and part headers
UPLOAD_SECONDS = 600.0  # the most a whole upload may take (each read: the body's read timeout)
UPLOAD_READ = 16 * 1024  # a read waits for this much: the slowest link is this per read timeout


def proxied(route: Route, resource: str | None = None) -> Response:
    """Serve the current request on ``route``; what admission counted goes to the headers
    (a request that ended before admission is counted as it leaves)."""
    try:
        return _proxied(route, resource)
    finally:
        count_unadmitted()


def _proxied(route: Route, resource: str | None) -> Response:
    rt = runtime()
    upload = _upload(rt.settings) if route.multipart else None
    json_body = route.schema is not None and upload is None
    raw = read_body(rt.settings.request_read_timeout) if json_body else b""
    exchange = current()
    assert exchange.principal is not None  # the v1 blueprints authenticate first
    inbound = Inbound(
        exchange.principal,
        route,
        raw,
        exchange.request_id,
        exchange.started,
        resource,
        request.query_string,
        upload,
        cache=request.environ.get("HTTP_X_PACKET_CACHE"),
        cache_control=request.environ.get("HTTP_CACHE_CONTROL"),
    )
    exchange.outcome = inbound.outcome
    try:
        answer = serve(rt, inbound)
    finally:
        if upload is not None:
            upload.close()  # sent by now: the answer is read after the whole body went
        if inbound.counted:
            note_admission(inbound.admission)
        exchange.metered = inbound.metered
    headers = answer.headers
    if inbound.cache_status is not None:
        headers = headers | {"X-Packet-Cache": inbound.cache_status}
    return Response(answer.body, status=answer.status, mimetype=answer.mimetype, headers=headers)


def _upload(settings: Settings) -> Upload:
    """The multipart body, spooled as it arrives; its form may add a little to the file.

    A large file on a slow link takes longer than a JSON body may: each read is bounded by the
    body's read timeout, the whole upload by ``UPLOAD_SECONDS``.
    """
    request.max_content_length = settings.max_audio_bytes + FORM_ALLOWANCE
    stream, idle = request.stream, settings.request_read_timeout

    def read(size: int) -> bytes:
        with receiving(idle):
            return stream.read(size)

    with receiving(max(idle, UPLOAD_SECONDS)):
        return receive(read, request.content_type or "", settings.max_audio_bytes, UPLOAD_READ)


def proxy(bp: Blueprint, rule: str, route: Route, doc: str) -> Callable[..., Response]:
    """Register the view of one proxied route; ``<id>`` in ``rule`` is the resource. The view
    carries its route (the OpenAPI document reads it) and ``doc`` as its docstring."""

    def view(id: str | None = None) -> Response:
        return proxied(route, id)

    view.__doc__ = doc
    view.route = route  # type: ignore[attr-defined]
    endpoint = route.name.replace(".", "_") + ("_v2" if rule.startswith("/v2") else "")
    bp.add_url_rule(rule, endpoint, view, methods=[route.method])
    return view
