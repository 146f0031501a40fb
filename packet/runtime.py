"""The per-worker services a request needs, built once in the factory.

Background greenlets (discovery refresh, usage flusher) start with the first request, so the
factory itself has no side effects and CLI commands never start them.
"""

from __future__ import annotations

import atexit
from dataclasses import dataclass, field

from flask import current_app

from .auth import KeyCache
from .config import Settings
from .limits import TokenBudget
from .metering import Meter
from .upstream.client import UpstreamClient
from .upstream.discovery import Discovery


@dataclass
class Runtime:
    settings: Settings
    keys: KeyCache
    client: UpstreamClient
    discovery: Discovery
    tokens: TokenBudget
    meter: Meter
    started: bool = field(default=False)

    def start(self) -> None:
        """Start background work once per process (idempotent, cheap to call)."""
        if not self.started:
            self.started = True
            self.discovery.start()
            self.meter.start()
            atexit.register(self.close)

    def close(self) -> None:
        """Flush usage and stop background work (gunicorn's worker_exit and atexit)."""
        self.discovery.stop()
        self.meter.close()


def runtime() -> Runtime:
    """The current app's runtime."""
    return current_app.extensions["packet"]
