"""The limit storage's outage policy: a short memory of the outage, a probe to end it, and
admission failing open or closed meanwhile."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from limits.storage import Storage

from ..errors import ServiceUnavailable

log = logging.getLogger("packet.limits")

STORAGE_DOWN = "Rate limit storage is unreachable; try again shortly."


class StorageGuard:
    """The Redis-unreachable policy, and a short memory of the outage.

    After a failed call the storage is left alone for ``pause`` seconds, then one ``check()``
    (a ping) decides whether it is back; so during an outage requests neither wait for a
    timeout each nor fill the log. Admission then fails open (admit, unlimited) or closed (503).
    """

    def __init__(
        self,
        storage: Storage,
        *,
        fail_open: bool,
        on_error: Callable[[BaseException], None] = lambda exc: None,
        pause: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.storage = storage
        self.fail_open = fail_open
        self.on_error = on_error
        self.pause = pause
        self.clock = clock
        self._down_until: float | None = None

    def available(self) -> bool:
        """False while an outage is remembered; after the pause one caller probes."""
        if self._down_until is None:
            return True
        if self.clock() < self._down_until:
            return False
        self._down_until = self.clock() + self.pause  # one probe at a time
        if not self.storage.check():
            return False
        self._down_until = None
        log.warning("limit storage reachable again: limits enforced")
        return True

    def failed(self, exc: BaseException) -> None:
        """Count a failed call and remember the outage (logged once per outage)."""
        self.on_error(exc)
        if self._down_until is None:
            policy = "admitting without limits" if self.fail_open else "refusing with 503"
            log.warning("limit storage unreachable (%s): %s", type(exc).__name__, policy)
        self._down_until = self.clock() + self.pause

    def unavailable(self) -> None:
        """The policy for an admission that cannot be checked: return, or raise 503."""
        if not self.fail_open:
            raise ServiceUnavailable(STORAGE_DOWN)
