"""The runtime's shutdown: streams still open are ended (and so metered) before the last flush."""

from __future__ import annotations

import gevent


def test_close_ends_open_streams_before_the_last_flush(app):
    rt = app.extensions["packet"]
    order: list[str] = []

    def stream() -> None:
        rt.track_stream()
        try:
            gevent.sleep(60)  # its client has [DONE]; its body is not closed yet
        finally:
            order.append("stream metered")
            rt.untrack_stream()

    greenlet = gevent.spawn(stream)
    gevent.sleep(0)
    flush = rt.meter.close
    rt.meter.close = lambda *a, **k: (order.append("flushed"), flush(*a, **k))
    rt.close()
    assert greenlet.dead
    assert order == ["stream metered", "flushed"]
