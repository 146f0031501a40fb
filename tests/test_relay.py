"""relay_sse with a fake upstream: events relayed in order, pings while silent, clean ends."""

from __future__ import annotations

import gevent
import orjson

from packet.upstream.relay import DONE, PING, StreamResult, relay_sse


class _Raw:
    """Upstream bytes in pieces; a float is a silence of that many seconds."""

    def __init__(self, pieces: list[bytes | float]) -> None:
        self.pieces = list(pieces)

    def read1(self, _size: int) -> bytes:
        while self.pieces:
            piece = self.pieces.pop(0)
            if isinstance(piece, float):
                gevent.sleep(piece)
                continue
            return piece
        return b""


class _Response:
    def __init__(self, pieces: list[bytes | float]) -> None:
        self.raw = _Raw(pieces)
        self.closed = False

    def close(self) -> None:
        self.closed = True


def _event(content: str, completion: int) -> bytes:
    chunk = {
        "choices": [{"index": 0, "delta": {"content": content}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": completion},
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _relay(pieces: list[bytes | float], keepalive: float) -> tuple[list[bytes], StreamResult]:
    finished: list[StreamResult] = []
    response = _Response(pieces)
    out = list(
        relay_sse(
            response,
            include_usage=False,
            continuous_usage=False,
            keepalive=keepalive,
            on_finish=finished.append,
        )
    )
    assert response.closed
    return out, finished[0]


def test_events_relayed_with_usage_stripped_and_counted():
    first, second = _event("Hi", 1), _event(" there", 2)
    out, result = _relay([first[:10], first[10:] + second, DONE], keepalive=5)
    assert out[-1] == DONE
    relayed = b"".join(out)
    assert relayed.count(b"data: {") == 2 and b"usage" not in relayed
    assert (result.prompt_tokens, result.completion_tokens, result.done) == (3, 2, True)


def test_pings_while_the_upstream_is_silent():
    out, result = _relay([0.35, _event("Hi", 1), DONE], keepalive=0.1)
    pings = next(i for i, item in enumerate(out) if item != PING)
    assert 2 <= pings <= 4 and b'"Hi"' in out[pings]
    assert result.done and result.error is None


def test_no_pings_while_events_flow():
    pieces: list[bytes | float] = []
    for n in range(1, 6):
        pieces += [0.04, _event("x", n)]
    out, _ = _relay([*pieces, DONE], keepalive=0.1)
    assert PING not in out


def test_stream_cut_short_ends_with_error_event_and_done():
    out, result = _relay([_event("Hi", 1)], keepalive=5)
    assert out[-1].endswith(DONE) and b'"error"' in out[-1]
    assert result.error and not result.done
