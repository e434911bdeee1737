"""The retry loop of MathFi requests: backoff with full jitter, Retry-After, a bounded count.

tenacity decides how long to wait and when to stop; the loop itself is plain, so a
request that succeeds at once (nearly all of them) pays nothing for retrying: building an
`AsyncRetrying` per call cost about a fifth of a poll's CPU.

Which failures may be retried at all is bot/mathfi/failures.py's call; this module only
repeats, waits and, when it stops, hands back a `Failure` for the client to word.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, stop_after_attempt, wait_random_exponential

from bot.mathfi.failures import TRANSIENT, RetryableStatus, not_acted_on

R = TypeVar("R")
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Failure:
    """Why a request was given up: its last error, after how many attempts, and whether
    MathFi may have acted on it (a request that changes something, not proven unsent)."""

    cause: BaseException
    attempts: int
    outcome_unknown: bool


class RetryLoop:
    def __init__(
        self, *, attempts: int, backoff_base: float, backoff_max: float, sleep: Sleep
    ) -> None:
        self._backoff_max = backoff_max
        self._jitter = wait_random_exponential(multiplier=backoff_base, max=backoff_max)
        self._stop = stop_after_attempt(attempts)
        self._policy = AsyncRetrying(stop=self._stop, wait=self._wait, sleep=sleep)
        self._sleep = sleep

    async def run(
        self,
        attempt: Callable[[], Awaitable[R]],
        *,
        replayable: bool,
        first_failure: BaseException | None = None,
    ) -> R | Failure:
        """`attempt()`'s result, or the Failure that ended the retries.

        A request that is not `replayable` is repeated only after a failure proving MathFi
        did not act on it; after any other failure it ends at once, its outcome unknown.
        `first_failure`: the caller made the first attempt itself (the common case, a
        success, then costs no loop) and it failed with this transient error.
        """
        state: RetryCallState | None = None
        failed = first_failure
        while True:
            if failed is None:
                try:
                    return await attempt()
                except TRANSIENT as err:
                    failed = err
            if not replayable and not not_acted_on(failed):
                attempts = 1 if state is None else state.attempt_number + 1
                return Failure(failed, attempts, outcome_unknown=True)
            state = self._failed(state, failed)
            if self._stop(state):
                return Failure(failed, state.attempt_number, outcome_unknown=False)
            failed = None
            await self._sleep(self._wait(state))

    def _failed(self, state: RetryCallState | None, err: BaseException) -> RetryCallState:
        """The retry state after one more failed attempt (the first one creates it)."""
        if state is None:
            state = RetryCallState(self._policy, fn=None, args=(), kwargs={})
        else:
            state.prepare_for_next_attempt()
        state.set_exception((type(err), err, err.__traceback__))
        return state

    def _wait(self, state: RetryCallState) -> float:
        """Full-jitter exponential backoff, or the server's Retry-After (capped)."""
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, RetryableStatus) and error.retry_after is not None:
            return min(error.retry_after, self._backoff_max)
        return self._jitter(state)
