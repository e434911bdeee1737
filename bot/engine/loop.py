"""What the engine's periodic loops share (retention, digests, on-call): run rounds until
`stop()`, wait between them with the injected sleep (a wait ends at once on `stop()`), skip
a round the database refused, and log a round's bug and go on.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Awaitable, Callable

from store import StoreUnavailable


class PeriodicLoop(abc.ABC):
    """Rounds of `_round()` until `stop()`: the first `first_after` seconds after `run()`
    starts (None: at once), then one every `every` seconds.

    A round the database refused (locked, read-only, closed) is skipped with one warning,
    "<what> skipped: the database refused (...)", and the next round tries again; any other
    exception is a bug of ours: "<what> failed; continuing" with its traceback, and the loop
    goes on. `what` names a round ("retention round"), `log` is the loop's own logger.
    """

    def __init__(
        self,
        *,
        what: str,
        log: logging.Logger,
        every: float,
        first_after: float | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._what = what
        self._log = log
        self._every = every
        self._first_after = first_after
        self._sleep = sleep
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        wait = self._first_after
        while not await self._stopped_within(wait):
            try:
                await self._round()
            except StoreUnavailable as err:  # locked or read-only: the next round tries again
                self._log.warning("%s skipped: the database refused (%s)", self._what, err)
            except Exception:  # the one broad except of these loops
                self._log.exception("%s failed; continuing", self._what)
            wait = self._every

    @abc.abstractmethod
    async def _round(self) -> object:
        """One round's work (what it returns is not used by the loop)."""

    async def _stopped_within(self, seconds: float | None) -> bool:
        """Whether `stop()` came before `seconds` passed (None: whether it has come)."""
        if seconds is None:
            return self._stopping.is_set()
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        stopper = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        sleeper.cancel()
        stopper.cancel()
        return self._stopping.is_set()
