"""The input file's checks: line numbers across chunk boundaries, each rule, the limits."""

from __future__ import annotations

import json

from packet.batch import checks

CHAT = "/v1/chat/completions"


def line(custom_id: str = "a", url: str = CHAT, **body) -> bytes:
    body = {"messages": [{"role": "user", "content": "hi"}]} | body
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body}).encode()


def test_lines_are_numbered_across_chunks_and_blank_lines_skipped():
    data = b"one\n\ntwo\nthree"
    chunks = [data[i : i + 2] for i in range(0, len(data), 2)]
    assert list(checks.lines_of(chunks)) == [(1, b"one"), (3, b"two"), (4, b"three")]
    assert list(checks.lines_of([b"a\r\n", b"b\n"])) == [(1, b"a\r"), (2, b"b")]


def test_a_good_file_passes_and_its_requests_come_back_in_order():
    data = line("a") + b"\n" + line("b", max_tokens=3) + b"\n"
    assert checks.check([data], CHAT) == []
    requests = list(checks.requests_of([data]))
    assert [(n, c) for n, c, _ in requests] == [(1, "a"), (2, "b")]
    assert json.loads(requests[1][2])["max_tokens"] == 3


def test_every_rule_names_its_line():
    bad = [
        b"[1, 2]",
        line(""),
        line("dup"),
        line("dup"),
        json.dumps({"custom_id": "m", "method": "GET", "url": CHAT, "body": {}}).encode(),
        line("u", url="/v1/embeddings"),
        json.dumps({"custom_id": "b", "method": "POST", "url": CHAT, "body": []}).encode(),
        line("s", stream=True),
        line("t", temperature=9),
        b"{oops",
    ]
    errors = checks.check([b"\n".join(bad)], CHAT)
    by_line = {e["line"]: e for e in errors}
    assert sorted(by_line) == [1, 2, 4, 5, 6, 7, 8, 9, 10]
    assert by_line[2]["param"] == "custom_id" and "earlier" in by_line[4]["message"]
    assert by_line[5]["param"] == "method" and by_line[6]["param"] == "url"
    assert by_line[7]["param"] == "body" and by_line[8]["param"] == "body.stream"
    assert by_line[9]["param"] == "body.temperature"
    assert all(e["code"] == "invalid_request" for e in errors)


def test_embeddings_bodies_are_checked_by_their_own_schema():
    good = json.dumps(
        {"custom_id": "e", "method": "POST", "url": "/v1/embeddings", "body": {"input": "x"}}
    ).encode()
    bad = good.replace(b'"input": "x"', b'"dimensions": 0')
    assert checks.check([good], "/v1/embeddings") == []
    assert checks.check([bad], "/v1/embeddings")[0]["line"] == 1


def test_limits(monkeypatch):
    assert checks.check([b"\n\n"], CHAT)[0]["message"] == "The input file holds no request."
    monkeypatch.setattr(checks, "MAX_LINES", 2)
    data = b"\n".join(line(str(i)) for i in range(3))
    assert checks.check([data], CHAT) == [
        checks.input_error(3, "A batch holds at most 2 requests.")
    ]
    many = b"\n".join(b"x" for _ in range(150))
    monkeypatch.setattr(checks, "MAX_LINES", 1000)
    assert len(checks.check([many], CHAT)) == checks.MAX_ERRORS
