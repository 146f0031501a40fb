"""serve(): one proxied request, from its raw body to its answer, in the order it happens.

    validate   the body is a JSON object the route's schema accepts (400 naming ``param``)
    route      the caller's endpoints, the model (``auto`` resolved), the replica — or, for a
               stored response, the endpoint that holds it (another account's id is a 404)
    admit      the request counted and its tokens reserved, on the account's counters and the
               key's own (429 over a limit; 403 over a key's budget or outside its models)
    hold       its maximum cost held from the balance (403 when spent)
    send       upstream, failing over between replicas before the first byte
    answer     the JSON passed through, or the stream relayed; metered once either way

No Flask here: the caller (a view, the batch worker, the cache) brings an :class:`Inbound`
and turns the :class:`Answer` into its own kind of response. Whatever is raised has been
undone first: the tokens settled, the hold returned, the usage row queued.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import orjson

from .. import limits, tracing, usage
from ..errors import APIError, InvalidRequest, from_upstream, from_validation
from ..key_controls import check_model
from ..metering import NO_HOLD
from ..money import cost_micros
from ..runtime import Runtime
from ..schemas import errors_for
from ..upstream.discovery import EndpointState, Target
from ..upstream.errors import UpstreamFailure
from . import answers
from .call import Call
from .failover import Payload, send
from .inbound import CREATES, FOLLOWS, Answer, Inbound
from .owners import Owner
from .targets import endpoint_rows, requested_model

JSON_HEADERS = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
PLAIN_HEADERS = {"Accept-Encoding": "identity"}


def parse(inbound: Inbound) -> dict[str, Any]:
    """The client's JSON object, validated; 400 naming the offending param otherwise."""
    schema = inbound.route.schema
    if schema is None:
        return {}
    if inbound.upload is not None:
        body = inbound.upload.parsed()
        errors = errors_for(schema, inbound.upload.fields)
        if errors:
            raise from_validation(errors)
        return body
    try:
        body = orjson.loads(inbound.raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            "We could not parse the JSON body of your request. Send valid JSON with "
            "'Content-Type: application/json'."
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    errors = errors_for(schema, body)
    if errors:
        raise from_validation(errors)
    return body


def serve(rt: Runtime, inbound: Inbound) -> Answer:
    """Serve one request on its route; a cache miss that fails lets identical ones go on."""
    try:
        return _serve(rt, inbound)
    except BaseException:
        if inbound.cache_lookup is not None:
            inbound.cache_lookup.release()
        raise


def _serve(rt: Runtime, inbound: Inbound) -> Answer:
    principal, route = inbound.principal, inbound.route
    body = parse(inbound)
    owner = _followed(rt, inbound, body)
    with tracing.span("routing"):
        states = rt.discovery.states(endpoint_rows(rt.settings, principal))
        if owner is not None:
            states = _holding(states, owner)
        model = owner.model if owner is not None and route.schema is None else requested_model(body)
        controls = principal.controls
        check_model(controls, model)
        target = rt.discovery.route(states, model, principal.default_model)
        check_model(controls, target.model)
    outcome = inbound.outcome
    outcome.model = target.model
    lookup = None
    if inbound.cache is not None or principal.cache_default:
        lookup = inbound.cache_lookup = rt.cache.consult(rt, inbound, body, target.model)
        if lookup is not None and lookup.answer is not None:
            return lookup.answer

    wire = route.wire
    stream = wire.stream is not None and body.get("stream") is True
    context = usage.context_length(
        target.state.models.get(target.model), rt.settings.default_max_model_len
    )
    size = len(inbound.raw) if inbound.upload is None else inbound.upload.size
    estimate = wire.estimate(body, size, context, rt.settings.default_max_tokens)
    if inbound.batch is not None:  # the worker checks the balance and pays on the result
        tokens, hold = None, NO_HOLD
    else:
        on_budget = 0  # the most this request can cost, held on its key's budget if it has one
        if controls is not None and controls.budget_micros is not None:
            on_budget = cost_micros(
                rt.settings, target.model, estimate.prompt, estimate.completion_cap
            )
        with tracing.span("limits"):
            tokens = inbound.admission = limits.count(rt, principal, estimate.reserve, on_budget)
            inbound.counted = True
            limits.refuse_over(rt, principal, tokens)
        try:
            with tracing.span("metering"):
                hold = rt.meter.reserve(
                    principal, target.model, estimate.prompt, estimate.completion_cap
                )
        except BaseException:
            rt.limits.settle(tokens, 0)
            raise

    call = Call(
        rt,
        principal,
        route.name,
        inbound.request_id,
        inbound.started,
        target,
        stream,
        hold=hold,
        tokens=tokens,
        estimate=estimate,
        wire=wire,
        outcome=outcome,
        batch=inbound.batch,
    )
    outcome.stream = stream
    stored = route.affinity == CREATES and body.get("store") is not False
    on_id = _remember(rt, call) if stored else None
    fmt = wire.stream(body, on_id) if stream and wire.stream is not None else None
    if lookup is not None and fmt is not None:
        fmt = lookup.recording(fmt)
    headers = _headers(inbound)
    path = route.upstream_path
    if inbound.resource is not None:
        path = path.format(id=quote(inbound.resource, safe=""))
    if inbound.query:
        path = f"{path}?{inbound.query.decode('latin-1')}"
    inbound.metered = True
    call.begin()
    try:
        sent = _sent(inbound, body, target)
        outcome.sent = time.perf_counter()
        with tracing.span("upstream", model=target.model, endpoint=target.state.ident):
            tracing.inject(headers)
            call.target, response = send(
                rt, states, target, sent, headers, path, stream=stream, method=route.method
            )
        outcome.answered = time.perf_counter()
        call.holds_endpoint = True
        if call.target is not target and call.journal is not None:
            call.journal.fields["endpoint_url"] = call.target.state.label
        if response.status_code >= 400:
            answers.upstream_error(call, response)
        if fmt is not None:
            return answers.stream(
                call, response, fmt, None if lookup is None else lookup.stream_ended
            )
        return answers.complete(call, response, on_id, None if lookup is None else lookup.answered)
    except BaseException as exc:
        call.finish(_failure_status(exc))  # does nothing when the call already finished
        raise


def _headers(inbound: Inbound) -> dict[str, str]:
    if inbound.upload is not None:
        kind = {"Content-Type": inbound.upload.content_type, "Accept-Encoding": "identity"}
    else:
        kind = JSON_HEADERS if inbound.route.schema is not None else PLAIN_HEADERS
    return kind | {"X-Request-ID": inbound.request_id}


def _sent(inbound: Inbound, body: dict[str, Any], target: Target) -> Payload:
    """What goes upstream: the JSON body (the model set on the way), the upload's form with
    the resolved model, or nothing."""
    if inbound.upload is not None:
        return inbound.upload.body(body | {"model": target.model})
    return body if inbound.route.schema is not None else None


def _followed(rt: Runtime, inbound: Inbound, body: dict[str, Any]) -> Owner | None:
    """The stored response this request must go with: the one in its path, or the
    ``previous_response_id`` it continues. Unknown, or another account's: 404."""
    route = inbound.route
    if route.affinity == FOLLOWS:
        wanted = inbound.resource
    elif route.affinity == CREATES:
        wanted = body.get("previous_response_id")
    else:
        return None
    if not wanted:
        return None
    return rt.owners.find(wanted, inbound.principal.account_id)


def _holding(states: list[EndpointState], owner: Owner) -> list[EndpointState]:
    """Only the endpoint that stored the response can answer for it."""
    return [state for state in states if state.url == owner.endpoint_url]


def _remember(rt: Runtime, call: Call) -> Any:
    """Note a new response's owner and endpoint (where the call finally went)."""

    def remember(response_id: str) -> None:
        target: Target = call.target
        rt.owners.remember(response_id, call.principal.account_id, target.state.url, target.model)

    return remember


def _failure_status(exc: BaseException) -> int:
    """The status a request that never got an upstream answer is recorded with."""
    if isinstance(exc, UpstreamFailure):
        return from_upstream(exc).code
    return exc.code if isinstance(exc, APIError) else 500
