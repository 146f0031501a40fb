"""The switches for servers that are not vLLM: ``--no-health``, ``--no-stream-usage``,
``--sparse-cards`` and ``--echo-model``, from the command line to the answers."""

from packet.devserver import Simulator
from packet.devserver.cli import parse_args, settings_from
from unit.devserver.wsgi import call, post_json

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "hi"}]


def from_flags(*flags: str) -> Simulator:
    return Simulator(settings_from(parse_args(list(flags))), sleep=lambda _: None)


def test_no_health_makes_health_a_404():
    assert call(from_flags(), "GET", "/health").status == 200
    assert call(from_flags("--no-health"), "GET", "/health").status == 404


def test_no_stream_usage_sends_no_usage_even_when_asked():
    body = {
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True, "continuous_usage_stats": True},
    }
    answer = post_json(from_flags("--no-stream-usage"), CHAT, body)
    events = [data for _, data in answer.events()]
    assert events[-1] == "[DONE]"
    assert all("usage" not in event for event in events[:-1])
    assert "usage" in post_json(from_flags(), CHAT, body).events()[-2][1]


def test_sparse_cards_list_only_id_object_and_owner():
    (card,) = call(from_flags("--sparse-cards"), "GET", "/v1/models").json()["data"]
    assert card == {"id": "simulated/vllm-demo", "object": "model", "owned_by": "vllm"}
    (full,) = call(from_flags(), "GET", "/v1/models").json()["data"]
    assert {"created", "max_model_len", "root"} <= set(full)


def test_echo_model_serves_any_name_and_echoes_it():
    body = {"messages": MESSAGES, "model": "whatever/they-asked"}
    assert post_json(from_flags(), CHAT, body).status == 404
    app = from_flags("--echo-model")
    answer = post_json(app, CHAT, body)
    assert answer.status == 200 and answer.json()["model"] == "whatever/they-asked"
    assert app.requests[-1]["model"] == "whatever/they-asked"
    embedded = post_json(app, "/v1/embeddings", {"input": "a", "model": "any/thing"})
    assert embedded.json()["model"] == "any/thing"
