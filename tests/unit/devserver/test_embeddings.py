"""``/v1/embeddings``: vLLM's shape, deterministic unit vectors, usage equal to the record."""

import base64
import math
import struct

import pytest

from unit.devserver.wsgi import assert_vllm_error, last_record, post_json, simulator

PATH = "/v1/embeddings"


def test_an_embedding_per_input_with_usage_equal_to_the_record():
    app = simulator()
    answer = post_json(app, PATH, {"input": ["hello there", "one two three"], "dimensions": 4})
    assert answer.status == 200
    body = answer.json()
    assert body["id"].startswith("embd-") and body["object"] == "list"
    assert body["model"] == "simulated/vllm-demo" and isinstance(body["created"], int)
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert all(d["object"] == "embedding" and len(d["embedding"]) == 4 for d in body["data"])
    assert math.isclose(sum(v * v for v in body["data"][0]["embedding"]), 1.0)
    assert body["usage"] == {"prompt_tokens": 5, "total_tokens": 5, "completion_tokens": 0}
    record = last_record(app)
    assert (record["prompt_tokens"], record["completion_tokens"], record["finished"]) == (
        5,
        0,
        True,
    )
    assert record["path"] == PATH and record["model"] == "simulated/vllm-demo"


def test_the_same_input_embeds_the_same_and_token_lists_count_ids():
    app = simulator()
    first = post_json(app, PATH, {"input": [[1, 2, 3], [4]]}).json()
    again = post_json(app, PATH, {"input": [[1, 2, 3], [4]]}).json()
    assert first["data"] == again["data"] and len(first["data"][0]["embedding"]) == 8
    assert first["usage"]["prompt_tokens"] == 4
    single = post_json(app, PATH, {"input": [5, 6, 7]}).json()
    assert len(single["data"]) == 1 and single["usage"]["prompt_tokens"] == 3


def test_base64_is_the_little_endian_float32_bytes():
    app = simulator()
    floats = post_json(app, PATH, {"input": "a b", "dimensions": 3}).json()["data"][0]
    packed = post_json(app, PATH, {"input": "a b", "dimensions": 3, "encoding_format": "base64"})
    decoded = struct.unpack("<3f", base64.b64decode(packed.json()["data"][0]["embedding"]))
    assert decoded == pytest.approx(floats["embedding"], rel=1e-6)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"input": ""},
        {"input": []},
        {"input": [[]]},
        {"input": ["a", [1]]},
        {"input": [None]},
        {"input": {"text": "a"}},
        {"input": "a", "encoding_format": "hex"},
        {"input": "a", "dimensions": 0},
        {"input": "a", "dimensions": 10**9},
        {"input": "a", "dimensions": "8"},
        {"input": "a", "model": "missing/model"},
        {"input": " ".join(["w"] * 5000)},
    ],
)
def test_a_bad_body_is_a_4xx_in_vllms_shape(body):
    assert_vllm_error(post_json(simulator(), PATH, body))
