"""The MathFi bearer token: kept with its expiry, renewed early, one login in flight.

MathFi has no refresh token: a token lives `expires_in` seconds (3600 in practice) and
the only way to renew it is to log in again. `TokenKeeper` holds the current token in
memory only, logs in again `margin` seconds before it runs out (never more than half
its lifetime early, so a very short token still works), and makes every concurrent
caller that needs a token share one login: the first starts it, the others await the
same task and see the same result, success or failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bot.core.models import LoginResponse
from bot.errors import MathFiAuthError

Login = Callable[[], Awaitable[LoginResponse]]


def renewal_delay(expires_in: float, *, margin: float) -> float:
    """Seconds after the login at which to log in again (margin capped at half the lifetime)."""
    return expires_in - min(max(margin, 0.0), expires_in / 2)


@dataclass(frozen=True)
class Token:
    """A bearer token and the clock reading at which it must be renewed."""

    value: str = field(repr=False)
    renew_at: float


class TokenKeeper:
    """Hands out a valid token, logging in when there is none or it is about to expire."""

    def __init__(
        self,
        login: Login,
        *,
        margin: float,
        clock: Callable[[], float],
        refused_cooldown: float = 30.0,
        refused_cooldown_max: float = 600.0,
    ) -> None:
        self._login = login
        self._margin = margin
        self._clock = clock
        self._current: Token | None = None
        self._inflight: asyncio.Task[Token] | None = None
        # After MathFi refused our credentials, asking again at once cannot help: every
        # caller gets the same refusal until the cooldown (doubling each time) has passed.
        self._cooldown = (refused_cooldown, refused_cooldown_max)
        self._refused: tuple[float, float, MathFiAuthError] | None = None  # (until, wait, error)

    @property
    def current(self) -> str | None:
        """The token in hand, valid or not (None before the first login)."""
        return self._current.value if self._current else None

    async def token(self) -> str:
        """A token that is not due for renewal; logs in (once for all callers) if needed."""
        current = self._current
        if current is not None and self._clock() < current.renew_at:
            return current.value
        return await self.renew()

    async def renew(self) -> str:
        """Log in now, or join the login already in flight."""
        task = self._inflight
        if task is None:
            task = asyncio.ensure_future(self._fetch())
            task.add_done_callback(self._finished)
            self._inflight = task
        token = await asyncio.shield(task)
        return token.value

    def invalidate(self, value: str) -> None:
        """Forget `value` after MathFi refused it, unless a newer token already replaced it."""
        if self._current is not None and self._current.value == value:
            self._current = None

    async def _fetch(self) -> Token:
        started = self._clock()
        if self._refused is not None and started < self._refused[0]:
            raise self._refused[2]
        try:
            response = await self._login()
        except MathFiAuthError as err:
            wait = self._cooldown[0] if self._refused is None else self._refused[1] * 2
            wait = min(wait, self._cooldown[1])
            self._refused = (started + wait, wait, err)
            raise
        self._refused = None
        token = Token(
            value=response.access_token,
            renew_at=started + renewal_delay(response.expires_in, margin=self._margin),
        )
        self._current = token
        return token

    def _finished(self, task: asyncio.Task[Token]) -> None:
        if self._inflight is task:
            self._inflight = None
        if not task.cancelled():
            task.exception()  # retrieved here so an unawaited failure is never reported twice
