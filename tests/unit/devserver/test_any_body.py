"""Any JSON body on the new routes is answered without a 5xx: a 4xx in vLLM's error shape
(Anthropic's on ``/v1/messages``), or a proper answer."""

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unit.devserver.wsgi import assert_vllm_error, post_json, simulator

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
TEXT = st.text(max_size=30)
PARTS = st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": TEXT}), max_size=3)
MESSAGES = st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "system"]), "content": TEXT | PARTS}),
    max_size=3,
)
COUNTS = st.integers(min_value=-1, max_value=40)
COMMON = {
    "model": st.sampled_from(["simulated/vllm-demo", "other/model", "", "missing/model"]),
    "stream": st.booleans(),
    "x_sim_fail_after": COUNTS,
    "x_sim_usage": JSON_VALUES,
}
ROUTES: dict[str, dict[str, Any]] = {
    "/v1/embeddings": {
        "input": TEXT | st.lists(TEXT, max_size=3) | st.lists(st.integers(), max_size=3),
        "encoding_format": st.sampled_from(["float", "base64"]),
        "dimensions": COUNTS,
    },
    "/v1/responses": {
        "input": TEXT | MESSAGES,
        "instructions": TEXT,
        "max_output_tokens": COUNTS,
        "store": st.booleans(),
        "previous_response_id": st.just("resp_missing"),
    },
    "/v1/messages": {"messages": MESSAGES, "max_tokens": COUNTS, "system": TEXT | PARTS},
    "/v1/messages/count_tokens": {"messages": MESSAGES, "system": TEXT | PARTS},
    "/v1/rerank": {
        "query": TEXT,
        "documents": st.lists(TEXT | st.fixed_dictionaries({"text": TEXT}), max_size=3),
        "top_n": COUNTS,
    },
    "/score": {"text_1": TEXT | st.lists(TEXT, max_size=3), "text_2": st.lists(TEXT, max_size=3)},
    "/tokenize": {"prompt": TEXT, "messages": MESSAGES},
    "/detokenize": {"tokens": st.lists(st.integers(min_value=-1, max_value=40000), max_size=4)},
}


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, Any]:
    """A route, its plausible fields, then up to three of them replaced by any JSON at all."""
    path = draw(st.sampled_from(sorted(ROUTES)))
    fields = ROUTES[path] | COMMON
    body = draw(st.fixed_dictionaries({}, optional=fields))
    for name in draw(st.lists(st.sampled_from(sorted(fields)), max_size=3, unique=True)):
        body[name] = draw(JSON_VALUES)
    return path, draw(st.just(body) | JSON_VALUES)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=requests())
def test_any_json_body_is_answered_without_a_5xx(request):
    path, body = request
    answer = post_json(simulator(), path, body)
    assert answer.status < 500, (answer, body)
    if answer.status >= 400 and path.startswith("/v1/messages"):
        error = answer.json()
        assert error["type"] == "error" and error["error"]["message"], error
    elif answer.status >= 400:
        assert_vllm_error(answer)
    elif answer.aborted:
        assert isinstance(body.get("x_sim_fail_after"), int), body
    elif body.get("stream") is True and path in ("/v1/responses", "/v1/messages"):
        assert b"[DONE]" not in answer.body and answer.body.startswith(b"event: ")
    else:
        assert answer.body and json.loads(answer.body) is not None
