"""MathFi and the database as the poller sees them, logged on the edge: once when they start
failing and once when they are back, never per poll (10,000 jobs must not log 10,000 lines)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.errors import MathFiAuthError, MathFiError, MathFiUnavailable
from store import StoreUnavailable

# The poller's logger: these lines read as before the poller was split.
log = logging.getLogger("bot.engine.poller")


class Health:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._mathfi_down_since: float | None = None
        self._store_failing = False

    @property
    def mathfi_down(self) -> bool:
        return self._mathfi_down_since is not None

    def mathfi_failed(self, err: MathFiError, *, job_key: str, first: bool) -> None:
        """A poll failed; `first` when it is the job's first failure in a row."""
        if isinstance(err, MathFiUnavailable | MathFiAuthError):  # MathFi-wide, logged once
            if self._mathfi_down_since is None:
                self._mathfi_down_since = self._clock()
                what = "refused the login" if isinstance(err, MathFiAuthError) else "unreachable"
                log.warning("MathFi %s: %s (will keep retrying with backoff)", what, err)
        elif first:
            log.warning("job %s: polling failed: %s", job_key, err)

    def mathfi_answered(self) -> None:
        if self._mathfi_down_since is not None:
            log.info("MathFi reachable again after %.0f s", self._clock() - self._mathfi_down_since)
            self._mathfi_down_since = None

    def store_failed(self, err: StoreUnavailable) -> None:
        if not self._store_failing:
            self._store_failing = True
            log.error(
                "database refused a write (%s); keeping the last good state and retrying", err
            )

    def store_written(self) -> None:
        if self._store_failing:
            self._store_failing = False
            log.info("database writable again")
