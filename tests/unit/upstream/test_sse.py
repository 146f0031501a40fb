"""SSE events read for the meter: the usage chunk made for an upstream that sends none."""

from __future__ import annotations

import orjson

from packet.upstream.sse import CHAT_FORMATS, DONE, StreamResult, with_counted_usage


def chunk(text: str, **extra) -> bytes:
    event = {"id": "c1", "object": "chat.completion.chunk", "created": 5, "model": "m"}
    event |= {"choices": [{"index": 0, "delta": {"content": text}}], **extra}
    return b"data: " + orjson.dumps(event) + b"\n\n"


def relay(fmt, events: list[bytes]) -> tuple[list[bytes], StreamResult]:
    result = StreamResult()
    kept = [fmt.inspect(event, result) for event in events]
    return [k for k in kept if k is not None], result


def test_a_client_that_asked_for_usage_gets_the_counted_usage_before_done():
    fmt = with_counted_usage(CHAT_FORMATS[True, False], lambda r: (7, r.relayed_tokens))
    kept, result = relay(fmt, [chunk("a"), chunk(" b"), DONE])
    assert result.usage is None and result.done  # what is billed stays the gateway's count
    made, done = kept[-1].split(b"\n\n")[:2]
    assert done + b"\n\n" == DONE
    usage = orjson.loads(made[6:])
    assert usage == {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 5,
        "model": "m",
        "choices": [],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
    }


def test_an_upstream_that_sends_usage_is_relayed_as_it_is():
    fmt = with_counted_usage(CHAT_FORMATS[True, False], lambda r: (999, 999))
    report = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    final = b"data: " + orjson.dumps({"id": "c1", "choices": [], "usage": report}) + b"\n\n"
    kept, result = relay(fmt, [chunk("a"), final, DONE])
    assert kept[-1] == DONE and b"999" not in b"".join(kept)
    assert result.usage == report


def test_only_formats_whose_client_asked_say_so():
    assert CHAT_FORMATS[True, False].usage_asked and CHAT_FORMATS[True, True].usage_asked
    assert not CHAT_FORMATS[False, False].usage_asked
