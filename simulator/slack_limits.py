"""Slack's rate limits in the local sink: off by default, switched on per sink.

Slack allows about one `chat.postMessage` a second per channel, and `chat.update` is a
Tier 3 method (about 50 a minute) for the whole workspace; past them it answers HTTP 429
with `Retry-After` (whole seconds) and `{"ok": false, "error": "ratelimited"}`. The sink
enforces `post_per_channel` posts per channel and `update_per_workspace` edits per second
(both 1 by default, stricter than Slack's minute budget, so a short test shows it) over a
sliding one-second window, on the sink's clock. Refused calls do not use up the budget.

Imports nothing from bot/ or store/.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

WINDOW = 1.0  # seconds


@dataclass(frozen=True)
class RateLimits:
    enabled: bool = False
    post_per_channel: int = 1
    update_per_workspace: int = 1

    def changed(self, data: Mapping[str, Any]) -> RateLimits:
        """These limits with the given fields changed (the control route's body)."""
        known = {f.name: f.type for f in fields(self)}
        unknown = set(data) - set(known)
        if unknown:
            raise ValueError(f"unknown limit fields: {sorted(unknown)}")
        for name, value in data.items():
            wanted = bool if name == "enabled" else int
            if type(value) is not wanted or (wanted is int and value < 1):
                raise ValueError(f"{name} must be {'a bool' if wanted is bool else 'an int >= 1'}")
        return replace(self, **data)


class RateLimiter:
    """Sliding one-second windows: one per channel for posts, one for the workspace's edits."""

    def __init__(self, clock: Callable[[], float], limits: RateLimits | None = None) -> None:
        self._clock = clock
        self.limits = limits or RateLimits()
        self._windows: dict[tuple[str, str], deque[float]] = {}

    def configure(self, limits: RateLimits) -> None:
        self.limits = limits
        self._windows.clear()

    def check(self, method: str, channel: Any) -> int | None:
        """None when the call may go (and it is counted), else the seconds to wait."""
        if not self.limits.enabled:
            return None
        if method == "chat.postMessage":
            key, allowed = (method, str(channel)), self.limits.post_per_channel
        elif method == "chat.update":
            key, allowed = (method, ""), self.limits.update_per_workspace
        else:
            return None
        now = self._clock()
        window = self._windows.setdefault(key, deque())
        while window and window[0] <= now - WINDOW:
            window.popleft()
        if len(window) >= allowed:
            return max(1, math.ceil(window[0] + WINDOW - now))
        window.append(now)
        return None
