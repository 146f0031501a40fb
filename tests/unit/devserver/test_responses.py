"""``/v1/responses``: the Response object, the named-event stream (no ``[DONE]``), usage
equal to the record, chaining, and the stored responses' follow-up calls."""

import pytest

from unit.devserver.wsgi import (
    assert_vllm_error,
    call,
    last_record,
    post_json,
    simulator,
)

PATH = "/v1/responses"
STREAM_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    *["response.output_text.delta"] * 3,
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def test_a_whole_response_has_openais_shape_and_the_records_usage():
    app = simulator()
    body = {"input": "hello there you", "instructions": "be brief", "max_output_tokens": 4}
    answer = post_json(app, PATH, body)
    assert answer.status == 200
    response = answer.json()
    assert response["id"].startswith("resp_") and response["object"] == "response"
    assert response["status"] == "completed" and response["store"] is True
    (message,) = response["output"]
    assert message["id"].startswith("msg_") and message["role"] == "assistant"
    assert message["content"][0]["type"] == "output_text"
    assert len(message["content"][0]["text"].split()) == 4
    assert response["usage"] == {
        "input_tokens": 5,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 4,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 9,
    }
    assert response["tools"] == [] and response["error"] is None
    record = last_record(app)
    assert (record["prompt_tokens"], record["completion_tokens"], record["finished"]) == (
        5,
        4,
        True,
    )


def test_the_stream_is_named_events_in_order_without_done():
    app = simulator()
    answer = post_json(
        app,
        PATH,
        {"input": [{"role": "user", "content": "hi"}], "stream": True, "max_output_tokens": 3},
    )
    assert answer.status == 200 and answer.writes == [b""]
    events = answer.events()
    assert [name for name, _ in events] == STREAM_EVENTS
    assert all(data["type"] == name for name, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert b"[DONE]" not in answer.body
    assert events[0][1]["response"]["status"] == "in_progress"
    assert events[0][1]["response"]["usage"] is None
    deltas = "".join(d["delta"] for name, d in events if name == "response.output_text.delta")
    assert events[-4][1]["text"] == deltas
    final = events[-1][1]["response"]
    assert final["usage"]["input_tokens"] == 1 and final["usage"]["output_tokens"] == 3
    record = last_record(app)
    assert record["stream"] is True and record["finished"] is True
    assert (record["prompt_tokens"], record["completion_tokens"]) == (1, 3)


def test_x_sim_usage_is_reported_and_fail_after_aborts_the_stream():
    app = simulator()
    fake = {"input_tokens": 99, "output_tokens": 1, "total_tokens": 100}
    answer = post_json(app, PATH, {"input": "hi", "x_sim_usage": fake})
    assert answer.json()["usage"] == fake and last_record(app)["prompt_tokens"] == 1
    failed = post_json(app, PATH, {"input": "hi", "stream": True, "x_sim_fail_after": 2})
    assert failed.aborted and last_record(app)["completion_tokens"] == 2


def test_previous_response_id_chains_the_tokens_and_an_unknown_one_is_a_404():
    app = simulator()
    first = post_json(app, PATH, {"input": "one two", "max_output_tokens": 3}).json()
    second = post_json(
        app, PATH, {"input": "three", "previous_response_id": first["id"], "max_output_tokens": 2}
    ).json()
    assert second["usage"]["input_tokens"] == 1 + 2 + 3
    assert second["previous_response_id"] == first["id"]
    missing = post_json(app, PATH, {"input": "x", "previous_response_id": "resp_nope"})
    assert_vllm_error(missing)
    assert missing.status == 404
    assert missing.json()["error"]["param"] == "previous_response_id"


def test_get_input_items_cancel_and_delete_a_stored_response():
    app = simulator()
    created = post_json(
        app,
        PATH,
        {
            "input": [
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "a"}],
                }
            ]
        },
    )
    rid = created.json()["id"]
    got = call(app, "GET", f"{PATH}/{rid}")
    assert got.status == 200 and got.json() == created.json()
    items = call(app, "GET", f"{PATH}/{rid}/input_items").json()
    assert items["object"] == "list" and items["has_more"] is False
    assert items["data"][0]["id"].startswith("msg_")
    assert items["first_id"] == items["last_id"] == items["data"][0]["id"]
    cancel = call(app, "POST", f"{PATH}/{rid}/cancel")
    assert_vllm_error(cancel)
    assert cancel.json()["error"]["message"] == "Cannot cancel a synchronous response."
    deleted = call(app, "DELETE", f"{PATH}/{rid}")
    assert deleted.json() == {"id": rid, "object": "response.deleted", "deleted": True}
    gone = call(app, "GET", f"{PATH}/{rid}")
    assert gone.status == 404 and gone.json()["error"]["type"] == "NotFoundError"
    follow_ups = list(app.requests)[1:]
    assert len(follow_ups) == 5
    assert all(r["prompt_tokens"] == r["completion_tokens"] == 0 for r in follow_ups)


def test_a_response_not_stored_is_not_kept():
    app = simulator()
    rid = post_json(app, PATH, {"input": "hi", "store": False}).json()["id"]
    assert call(app, "GET", f"{PATH}/{rid}").status == 404


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"input": 5},
        {"input": ["hi"]},
        {"input": [{"role": "user", "content": 3}]},
        {"input": [{"role": 1, "content": "hi"}]},
        {"input": "hi", "max_output_tokens": 0},
        {"input": "hi", "instructions": ["x"]},
        {"input": "hi", "store": "yes"},
        {"input": "hi", "stream": 1},
        {"input": "hi", "previous_response_id": 7},
        {"input": "hi", "model": "missing/model"},
        {"input": "hi", "max_output_tokens": 10**6},
        {"input": "hi", "x_sim_token_delay": -1},
    ],
)
def test_a_bad_body_is_a_4xx_in_vllms_shape(body):
    assert_vllm_error(post_json(simulator(), PATH, body))
