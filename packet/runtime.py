"""The per-worker services a request needs, built once in the factory.

Background greenlets (discovery refresh, usage flusher) start when a gunicorn worker boots
(``post_worker_init``) or, under any other server, with the first request; so the factory itself
has no side effects and CLI commands never start them.
"""

from __future__ import annotations

import atexit
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gevent
from flask import current_app

# Types only: every module may import runtime() without a cycle (packet.limits among them).
if TYPE_CHECKING:
    from .auth import KeyCache
    from .auth_throttle import AuthThrottle
    from .config import Settings
    from .gateway.cache import ResponseCache
    from .gateway.owners import Owners
    from .limits import WindowLimits
    from .metering import Meter
    from .upstream.client import UpstreamClient
    from .upstream.discovery import Discovery


@dataclass
class Runtime:
    settings: Settings
    keys: KeyCache
    client: UpstreamClient
    discovery: Discovery
    limits: WindowLimits
    meter: Meter
    auth_throttle: AuthThrottle
    owners: Owners
    cache: ResponseCache
    background: tuple[Callable[[], None], ...] = ()  # more work for the worker's lifetime
    started: bool = field(default=False)
    streams: weakref.WeakSet[gevent.Greenlet[..., Any]] = field(default_factory=weakref.WeakSet)

    def start(self) -> None:
        """Start background work once per process (idempotent, cheap to call)."""
        if not self.started:
            self.started = True
            self.discovery.start()
            self.meter.start()
            for job in self.background:
                gevent.spawn(job)
            atexit.register(self.close)

    def track_stream(self) -> None:
        """Note the current greenlet as serving a stream (see :meth:`end_streams`)."""
        current = gevent.getcurrent()
        if isinstance(current, gevent.Greenlet):
            self.streams.add(current)

    def untrack_stream(self) -> None:
        current = gevent.getcurrent()
        if isinstance(current, gevent.Greenlet):  # only greenlets are tracked
            self.streams.discard(current)

    def end_streams(self, timeout: float = 2.0) -> None:
        """Stop every open stream; each one's relay meters what it sent before it ends."""
        running = list(self.streams)
        for greenlet in running:
            greenlet.kill(block=False)
        gevent.joinall(running, timeout=timeout)

    def watch_shutdown(self, alive: Callable[[], bool], grace: float, margin: float) -> None:
        """Once ``alive()`` turns false, end open streams ``margin`` s before ``grace`` runs out.

        gunicorn's master SIGKILLs a worker ``graceful_timeout`` after SIGTERM: a stream still
        running then would lose its usage and everything still buffered. Ending streams a little
        earlier lets them be metered and flushed, and lets the worker exit cleanly.
        """

        def watch() -> None:
            while alive():
                gevent.sleep(0.2)
            gevent.sleep(max(0.0, grace - margin))
            if self.streams:
                self.end_streams()
            self.meter.flush()

        gevent.spawn(watch)

    def close(self) -> None:
        """Flush usage and stop background work (gunicorn's worker_exit and atexit).

        Streams still open are ended first, so each meters what it sent: after a quick stop
        (SIGINT, SIGQUIT) they include streams whose client already has ``[DONE]`` but whose
        body was not closed yet, which is where a stream is metered.
        """
        self.discovery.stop()
        if self.streams:
            self.end_streams()
        self.limits.flush()
        self.meter.close()


def runtime() -> Runtime:
    """The current app's runtime: the one way to reach the services (set by create_app)."""
    return current_app.extensions["packet"]
