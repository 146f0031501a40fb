"""A worker writing a line's answer: an outage is waited out, a refusal becomes the line's
error, a long outage gives the line back (no database needed: the store is replaced)."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from packet import store
from packet.batch import lines, worker
from packet.batch.worker import Worker
from packet.runtime import runtime

CLAIMED = store.Claimed(3, "c3", "{}", 1)
OUTCOME = ("done", {"custom_id": "c3"}, {"cost_micros": 5, "account_id": 1})


@pytest.fixture
def calls(app, monkeypatch):
    seen: dict[str, list] = {"record": [], "drop": []}
    monkeypatch.setattr(worker.gevent, "sleep", lambda _s: None)
    monkeypatch.setattr(store, "drop_claim", lambda *args: seen["drop"].append(args))
    with app.app_context():
        made = Worker(app, runtime())
    seen["worker"] = [made]
    return seen


def failing(seen, errors):
    def record_line(*args):
        seen["record"].append(args)
        if errors:
            raise errors.pop(0)
        return True

    return record_line


def outage() -> OperationalError:
    return OperationalError("SELECT 1", {}, Exception("connection refused"))


def test_an_outage_is_waited_out(calls, monkeypatch):
    monkeypatch.setattr(store, "record_line", failing(calls, [outage(), outage()]))
    running = lines.Running("batch_x", "/v1/chat/completions", 7, None)  # type: ignore[arg-type]
    calls["worker"][0]._record(running, CLAIMED, OUTCOME)
    assert len(calls["record"]) == 3 and calls["drop"] == []
    assert calls["record"][-1][5]["key_id"] == 7  # the batch's key on its usage row


def test_a_refused_answer_becomes_the_line_s_error(calls, monkeypatch):
    refused = IntegrityError("INSERT", {}, Exception("value too long"))
    monkeypatch.setattr(store, "record_line", failing(calls, [refused]))
    running = lines.Running("batch_x", "/v1/chat/completions", None, None)  # type: ignore[arg-type]
    calls["worker"][0]._record(running, CLAIMED, OUTCOME)
    last = calls["record"][-1]
    assert last[3] == "error" and '"internal_error"' in last[4] and last[5] is None


def test_a_long_outage_gives_the_line_back(calls, monkeypatch):
    errors = [outage() for _ in range(worker.RECORD_TRIES)]
    monkeypatch.setattr(store, "record_line", failing(calls, errors))
    running = lines.Running("batch_x", "/v1/chat/completions", None, None)  # type: ignore[arg-type]
    calls["worker"][0]._record(running, CLAIMED, OUTCOME)
    assert len(calls["record"]) == worker.RECORD_TRIES
    assert calls["drop"] == [("batch_x", 3, calls["worker"][0].owner)]
