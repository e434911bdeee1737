"""Refuse a signed Slack request seen before (a replay within Slack's 5-minute window).

Slack's signature proves who sent a request and its timestamp bounds its age to five
minutes, but a request captured on the wire verifies again within those minutes: a replayed
`unsubscribe all` would run twice. Each validly signed request's (timestamp, signature) is
remembered until its timestamp leaves the window; the same pair again is refused. Only
valid signatures are remembered, so nobody can fill the memory or pre-empt a real request
with forged ones. The memory is bounded (the oldest pairs go first past `capacity`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping

from slack_sdk.signature import Clock, SignatureVerifier

WINDOW = 300.0  # Slack's own bound on a request's age, in seconds


class _Clock(Clock):
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


class ReplayGuard:
    def __init__(
        self,
        signing_secret: str,
        *,
        clock: Callable[[], float],
        window: float = WINDOW,
        capacity: int = 100_000,
    ) -> None:
        self._verifier = SignatureVerifier(signing_secret, clock=_Clock(clock))
        self._clock = clock
        self._window = window
        self._capacity = capacity
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()

    def is_replay(self, body: bytes, headers: Mapping[str, str]) -> bool:
        """True when this validly signed request was already seen; remembers it otherwise.

        An invalid or unsigned request is not a replay: the signature check that follows
        (bolt's) refuses it on its own grounds."""
        if not self._verifier.is_valid_request(body, dict(headers)):
            return False
        lowered = {k.lower(): v for k, v in headers.items()}
        key = (lowered["x-slack-request-timestamp"], lowered["x-slack-signature"])
        self._forget_expired()
        if key in self._seen:
            return True
        self._seen[key] = float(key[0])
        while len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return False

    def _forget_expired(self) -> None:
        horizon = self._clock() - self._window - 1.0
        while self._seen:
            key, at = next(iter(self._seen.items()))
            if at >= horizon:
                break
            del self._seen[key]

    def __len__(self) -> int:
        return len(self._seen)
