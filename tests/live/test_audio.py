"""Audio transcriptions and translations through the real gateway: the openai SDK's multipart
upload, relayed to the simulated vLLM, bounded in size, streamed when asked."""

from __future__ import annotations

import json
import time

import openai
import pytest
import requests
from helpers import rid, row_of
from urllib3 import encode_multipart_formdata

pytestmark = pytest.mark.live

SIM_MODEL = "simulated/vllm-demo"
AUDIO = bytes(range(256)) * 200  # 51 KB of every byte value: CRLFs and dashes included


@pytest.fixture(scope="module")
def live_env():
    return {"PACKET_MAX_AUDIO_BYTES": str(2 * 1024 * 1024), "PACKET_REQUEST_READ_TIMEOUT": "1.5"}


def test_sdk_transcription_relays_the_whole_file_with_the_resolved_model(live, tmp_path):
    name, key = live.database.account()
    path = tmp_path / "talk.wav"
    path.write_bytes(AUDIO)
    headers = rid()
    with path.open("rb") as audio:
        result = live.gateway.client(key).audio.transcriptions.create(
            model="auto", file=audio, language="en", extra_headers=headers
        )
    words = result.text.split()
    assert len(words) == len(AUDIO) // 1000
    seen = live.sim.request(headers["X-Request-ID"])
    assert seen["path"] == "/v1/audio/transcriptions"
    assert seen["body"]["model"] == SIM_MODEL and seen["body"]["language"] == "en"
    assert seen["body"]["file_bytes"] == len(AUDIO)
    row = row_of(live.database, name, headers["X-Request-ID"])
    # vLLM reports a duration, not tokens: the transcript's tokens are counted and billed
    assert row.route == "audio.transcriptions" and row.usage_source == "counted"
    assert row.prompt_tokens == 0 and row.completion_tokens == -(-len(result.text) // 4)


def test_translation_as_text_is_relayed_as_text(live):
    _, key = live.database.account()
    answer = requests.post(
        f"{live.gateway.url}/v1/audio/translations",
        headers={"Authorization": f"Bearer {key}"},
        data={"model": SIM_MODEL, "response_format": "text"},
        files={"file": ("talk.mp3", AUDIO[:5000], "audio/mpeg")},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain")
    assert len(answer.text.split()) == 5


def test_stream_relays_chunks_and_meters_the_reported_usage(live):
    name, key = live.database.account()
    headers = {"Authorization": f"Bearer {key}"} | rid()
    with requests.post(
        f"{live.gateway.url}/v1/audio/transcriptions",
        headers=headers,
        data={"model": "auto", "stream": "true"},
        files={"file": ("talk.wav", AUDIO[:8000], "audio/wav")},
        stream=True,
        timeout=30,
    ) as answer:
        assert answer.headers["Content-Type"].startswith("text/event-stream")
        events = [line[6:] for line in answer.iter_lines() if line.startswith(b"data: ")]
    assert events[-1] == b"[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["choices"] for c in chunks)  # the usage chunk the client did not ask for: gone
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert len(text.split()) == 8
    seen = live.sim.request(headers["X-Request-ID"])
    assert seen["body"]["stream_include_usage"] == "true"  # the gateway asked for it
    row = row_of(live.database, name, headers["X-Request-ID"])
    assert (row.prompt_tokens, row.completion_tokens) == (
        seen["prompt_tokens"],
        seen["completion_tokens"],
    )
    assert row.usage_source == "upstream" and row.stream


def test_a_file_over_the_bound_is_413_and_never_reaches_the_upstream(live):
    _, key = live.database.account()
    before = len(live.sim.requests())
    with pytest.raises(openai.APIStatusError) as caught:
        live.gateway.client(key).audio.transcriptions.create(
            model="auto", file=("big.wav", b"\0" * (2 * 1024 * 1024 + 1))
        )
    assert caught.value.status_code == 413
    assert caught.value.body["code"] == "request_too_large"  # type: ignore[index]
    assert len(live.sim.requests()) == before


@pytest.mark.parametrize(
    "data, files, param",
    [
        ({}, {"model": (None, "auto")}, "file"),  # multipart, but no file in it
        ({"response_format": "mp3"}, {"file": ("a.wav", b"x")}, "response_format"),
        ({"temperature": "hot"}, {"file": ("a.wav", b"x")}, "temperature"),
    ],
)
def test_bad_forms_are_400_naming_param_and_never_reach_the_upstream(live, data, files, param):
    _, key = live.database.account()
    before = len(live.sim.requests())
    answer = requests.post(
        f"{live.gateway.url}/v1/audio/transcriptions",
        headers={"Authorization": f"Bearer {key}"},
        data=data,
        files=files,
        timeout=30,
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param
    assert len(live.sim.requests()) == before


def test_json_instead_of_a_form_is_a_clear_400(live):
    _, key = live.database.account()
    answer = requests.post(
        f"{live.gateway.url}/v1/audio/transcriptions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "auto", "file": "base64..."},
        timeout=30,
    )
    assert answer.status_code == 400 and "multipart/form-data" in answer.json()["error"]["message"]


def slow_upload(live, key: str, pauses: list[float]) -> requests.Response:
    """An upload sent in pieces (chunked), pausing before each one, as a slow link does."""
    body, kind = encode_multipart_formdata(
        {"model": "auto", "file": ("talk.wav", AUDIO, "audio/wav")}
    )
    size = -(-len(body) // len(pauses))

    def pieces():
        for i, pause in enumerate(pauses):
            time.sleep(pause)  # the client's own pace; nothing is asserted on time
            yield body[i * size : (i + 1) * size]

    return requests.post(
        f"{live.gateway.url}/v1/audio/transcriptions",
        headers={"Authorization": f"Bearer {key}", "Content-Type": kind},
        data=pieces(),
        timeout=30,
    )


def test_an_upload_slower_than_the_read_timeout_is_fine_while_it_keeps_coming(live):
    _, key = live.database.account()
    # 2.4 s in all, the bound 1.5 s; each 16 KB read waits about 0.6 s
    answer = slow_upload(live, key, [0] + [0.2] * 11)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["text"].split()) == len(AUDIO) // 1000


def test_an_upload_that_stalls_is_a_408(live):
    _, key = live.database.account()
    before = len(live.sim.requests())
    answer = slow_upload(live, key, [0, 0, 3.0, 0])
    assert answer.status_code == 408 and answer.json()["error"]["code"] == "request_timeout"
    assert len(live.sim.requests()) == before
