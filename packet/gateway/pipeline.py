"""serve(): one completion request, from its raw body to its answer, in the order it happens.

    validate   the body is a JSON object the route's schema accepts (400 naming ``param``)
    route      the caller's endpoints, the model (``auto`` resolved), the replica
    admit      the request counted and its tokens reserved (429 over either limit)
    hold       its maximum cost held from the balance (403 when spent)
    send       POST upstream, failing over between replicas before the first byte
    answer     the JSON passed through, or the SSE relayed; metered once either way

No Flask here: the caller (a view, the batch worker, the cache) brings an :class:`Inbound`
and turns the :class:`Answer` into its own kind of response. Whatever is raised has been
undone first: the tokens settled, the hold returned, the usage row queued.
"""

from __future__ import annotations

from typing import Any

import orjson

from .. import limits, usage
from ..errors import APIError, InvalidRequest, from_upstream, from_validation
from ..runtime import Runtime
from ..schemas import errors_for
from ..upstream.errors import UpstreamFailure
from . import answers
from .call import Call
from .failover import send
from .inbound import Answer, Inbound
from .targets import endpoint_triples, requested_model


def parse(inbound: Inbound) -> dict[str, Any]:
    """The client's JSON object, validated; 400 naming the offending param otherwise."""
    try:
        body = orjson.loads(inbound.raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            "We could not parse the JSON body of your request. Send valid JSON with "
            "'Content-Type: application/json'."
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    errors = errors_for(inbound.route.schema, body)
    if errors:
        raise from_validation(errors)
    return body


def serve(rt: Runtime, inbound: Inbound) -> Answer:
    """Serve one chat or text completion request."""
    principal = inbound.principal
    body = parse(inbound)
    states = rt.discovery.states(endpoint_triples(rt.settings, principal))
    target = rt.discovery.route(states, requested_model(body), principal.default_model)

    stream = body.get("stream") is True
    prompt_estimate = usage.prompt_estimate(len(inbound.raw))
    context = usage.context_length(
        target.state.models.get(target.model), rt.settings.default_max_model_len
    )
    estimate = usage.reservation(body, prompt_estimate, context, rt.settings.default_max_tokens)
    tokens = inbound.admission = limits.count(rt, principal, estimate)
    inbound.counted = True
    limits.refuse_over(rt, principal, tokens)
    try:
        hold = rt.meter.reserve(
            principal, target.model, prompt_estimate, usage.completion_cap(body, context)
        )
    except BaseException:
        rt.limits.settle(tokens, 0)
        raise

    client_options = body.get("stream_options") or {}
    if stream:
        body["stream_options"] = {"include_usage": True, "continuous_usage_stats": True}
    headers = {
        "Content-Type": "application/json",
        "Accept-Encoding": "identity",
        "X-Request-ID": inbound.request_id,
    }
    call = Call(
        rt,
        principal,
        inbound.route.name,
        inbound.request_id,
        inbound.started,
        target,
        stream,
        hold,
        tokens,
        prompt_estimate,
        usage.bounds(body, len(inbound.raw), context),
    )
    inbound.metered = True
    call.begin()
    try:
        path = inbound.route.upstream_path
        call.target, response = send(rt, states, target, body, headers, path, stream)
        call.holds_endpoint = True
        if call.target is not target and call.journal is not None:
            call.journal.fields["endpoint_url"] = call.target.state.label
        if response.status_code >= 400:
            answers.upstream_error(call, response)
        if stream:
            return answers.stream(call, response, client_options)
        return answers.complete(call, response)
    except BaseException as exc:
        call.finish(_failure_status(exc))  # does nothing when the call already finished
        raise


def _failure_status(exc: BaseException) -> int:
    """The status a request that never got an upstream answer is recorded with."""
    if isinstance(exc, UpstreamFailure):
        return from_upstream(exc).code
    return exc.code if isinstance(exc, APIError) else 500
