"""The worker process: built like a gunicorn worker's runtime, stopped cleanly by SIGTERM
or SIGINT (the lines in flight finish first)."""

from __future__ import annotations

import signal

import gevent
from flask import Flask

from ..runtime import runtime
from .worker import Worker


def main(app: Flask) -> None:
    with app.app_context():
        rt = runtime()
        rt.start()
        worker = Worker(app, rt)
        for sig in (signal.SIGTERM, signal.SIGINT):
            gevent.signal_handler(sig, worker.stop)
        try:
            worker.run()
        finally:
            rt.close()
