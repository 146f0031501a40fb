"""The SSE relay as pure code: a fake upstream response, no server."""

import socket

import gevent
import orjson

from packet.upstream.relay import relay_sse
from packet.upstream.sse import CHAT_FORMATS, DONE, PING, StreamResult, inspect_event

PLAIN = CHAT_FORMATS[False, False]


def event(obj) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def chunk(text, usage=None, choices=True):
    obj = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]
        if choices
        else [],
    }
    if usage is not None:
        obj["usage"] = usage
    return obj


USAGE = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}


class FakeRaw:
    def __init__(self, pieces, delay=0.0, error=None):
        self.pieces = list(pieces)
        self.delay = delay
        self.error = error

    def read1(self, _size):
        if self.delay:
            gevent.sleep(self.delay)
        if self.pieces:
            return self.pieces.pop(0)
        if self.error:
            raise self.error
        return b""


class FakeResponse:
    def __init__(self, raw):
        self.raw = raw
        self.closed = False

    def close(self):
        self.closed = True


def run(pieces, include_usage=False, continuous=False, keepalive=0.0, **raw_kwargs):
    results = []
    response = FakeResponse(FakeRaw(pieces, **raw_kwargs))
    body = relay_sse(
        response,
        CHAT_FORMATS[include_usage, continuous],
        keepalive=keepalive,
        on_finish=results.append,
    )
    out = b"".join(body)
    assert not results, "metered when the server closes the body, not before"
    body.close()
    assert len(results) == 1
    # A finished stream's upstream is drained to EOF and closed in the background.
    with gevent.Timeout(1):
        while not response.closed:
            gevent.sleep(0.005)
    return out, results[0]


def test_usage_only_chunk_dropped_unless_asked():
    result = StreamResult()
    usage_chunk = event(chunk(None, USAGE, choices=False))
    assert inspect_event(usage_chunk, result, include_usage=False, continuous_usage=False) is None
    assert result.usage == USAGE
    assert (
        inspect_event(usage_chunk, result, include_usage=True, continuous_usage=False)
        == usage_chunk
    )


def test_per_chunk_usage_stripped_unless_continuous_asked():
    result = StreamResult()
    raw = event(chunk("hi", USAGE))
    stripped = inspect_event(raw, result, include_usage=True, continuous_usage=False)
    assert b"usage" not in stripped
    assert orjson.loads(stripped[6:])["choices"][0]["delta"]["content"] == "hi"
    assert inspect_event(raw, result, include_usage=True, continuous_usage=True) == raw
    assert result.usage == USAGE


def test_comments_done_and_errors():
    result = StreamResult()
    assert inspect_event(b": keep-alive\n\n", result, include_usage=False, continuous_usage=False)
    assert inspect_event(DONE, result, include_usage=False, continuous_usage=False) == DONE
    assert result.done
    err = event({"error": {"message": "engine died", "code": 500}})
    assert inspect_event(err, result, include_usage=False, continuous_usage=False) == err
    assert result.error == "engine died"


def test_relay_counts_tokens_without_usage_and_splits_events_across_reads():
    body = event(chunk("a")) + event(chunk("b")) + event(chunk("")) + DONE
    out, result = run([body[:10], body[10:50], body[50:]])
    assert out == body
    assert result.relayed_tokens == 2 and result.done and result.error is None


def test_relay_strips_usage_for_a_plain_client():
    body = event(chunk("a", USAGE)) + event(chunk(None, USAGE, choices=False)) + DONE
    out, result = run([body])
    assert b"usage" not in out and out.endswith(DONE)
    assert result.usage == USAGE


def test_truncated_stream_gets_error_event_and_done():
    out, result = run([event(chunk("a"))])
    assert b'"error"' in out and out.endswith(DONE)
    assert result.error and not result.done


def test_read_error_mid_stream_becomes_error_event():
    out, result = run([event(chunk("a"))], error=ConnectionResetError("reset"))
    assert out.count(b"data: ") == 3 and out.endswith(DONE)
    assert b"upstream_error" in out
    assert result.error


def test_keepalive_pings_while_upstream_is_silent():
    out, _ = run([event(chunk("a")), DONE], keepalive=0.01, delay=0.05)
    assert PING in out and out.endswith(DONE)


def test_close_marks_disconnect_and_closes_upstream():
    """An upstream that cannot be hung up on (no socket here) is read a bounded while longer:
    what it sends meanwhile is metered, then it is closed."""
    results = []
    response = FakeResponse(FakeRaw([event(chunk("a"))] * 1000, delay=0.01))
    body = relay_sse(response, PLAIN, keepalive=0, on_finish=results.append)
    next(iter(body))
    body.close()
    assert response.closed
    assert results[0].disconnected and 1 <= results[0].relayed_tokens < 1000


class HangUpSocket:
    """The upstream's socket: after a half-close from the gateway, the server sends no more."""

    def __init__(self, raw):
        self.raw, self.shut = raw, []

    def shutdown(self, how):
        self.shut.append(how)
        self.raw.pieces = self.raw.pieces[:2]  # what was already in flight, then EOF


def test_a_client_that_leaves_hangs_up_on_the_upstream_and_meters_what_was_in_flight():
    results = []
    raw = FakeRaw([event(chunk("a"))] * 1000, delay=0.01)
    sock = HangUpSocket(raw)
    raw.connection = type("Connection", (), {"sock": sock})()
    released = []
    raw.release_conn = lambda: released.append(True)
    response = FakeResponse(raw)
    body = relay_sse(response, PLAIN, keepalive=0, on_finish=results.append)
    next(iter(body))
    body.close()
    assert sock.shut == [socket.SHUT_WR]
    assert response.closed
    raw.release_conn()
    assert not released, "a half-closed connection must never go back to the pool"
    (result,) = results
    # The first event was relayed; the two in flight are metered too; nothing after them.
    assert result.disconnected and 3 <= result.relayed_tokens <= 4


def test_body_closed_before_first_iteration_still_finishes():
    results = []
    response = FakeResponse(FakeRaw([event(chunk("a"))]))
    body = relay_sse(response, PLAIN, keepalive=0, on_finish=results.append)
    body.close()
    body.close()
    assert response.closed
    assert len(results) == 1 and results[0].disconnected


def test_iterated_body_finishes_once_through_close():
    results = []
    response = FakeResponse(FakeRaw([event(chunk("a")), DONE]))
    body = relay_sse(response, PLAIN, keepalive=0, on_finish=results.append)
    assert b"".join(body).endswith(DONE)
    body.close()
    assert len(results) == 1 and results[0].done


def test_no_pings_while_events_flow():
    pieces = [event(chunk("x"))] * 5 + [DONE]
    out, _ = run(pieces, keepalive=0.1, delay=0.04)
    assert PING not in out and out.endswith(DONE)


def test_tokens_the_upstream_sent_are_counted_when_the_client_leaves():
    results = []
    pieces = [event(chunk(word)) for word in ("a", "b", "c")] + [event(chunk("d"))[:-1]]
    body = relay_sse(
        FakeResponse(FakeRaw(pieces)),
        PLAIN,
        keepalive=0.0,
        on_finish=results.append,
    )
    iterator = iter(body)
    next(iterator)  # the client reads the first event and goes away
    body.close()
    (result,) = results
    assert result.disconnected and result.relayed_tokens == 3  # not the unfinished fourth
