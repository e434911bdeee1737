"""Faults the local Slack sink injects on purpose, and how it answers them.

A `SlackFault` names what goes wrong and for which calls (method and channel, None: any);
a `FaultBook` holds the active ones (first match in insertion order wins, `count` hits then
gone). Kinds: "ratelimit" (HTTP 429 + Retry-After), "status" (that HTTP status), "error"
(200 with ok:false), "hang" (hold the call `seconds`, then do it and answer: a late
completion, see below), "fail_after_commit" (do the work, then answer 500: a lost answer).

A hang is done even when the client has given up in the meantime (its timeout, its process
stopped): Slack may finish a request late, and the message then appears after the client
saw a failure. The sink runs held calls detached from the connection and counts them, so a
test can wait for them to land (`SlackSink.settle()`, `held` in `/_sink/stats`).

Imports nothing from bot/ or store/.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from aiohttp import web

FaultKind = Literal["ratelimit", "status", "error", "hang", "fail_after_commit"]
FAULT_KINDS = ("ratelimit", "status", "error", "hang", "fail_after_commit")


@dataclass(frozen=True)
class SlackFault:
    """A failure to inject. `count` calls are hit (None: until cleared).

    ratelimit: HTTP 429 + Retry-After; status: that HTTP status; error: 200 with
    ok:false; hang: wait `seconds`, then answer normally (the work is done even if the
    client has gone: a late completion); fail_after_commit: do the work, then answer 500
    (a lost answer).
    """

    kind: FaultKind
    method: str | None = None
    channel: str | None = None
    count: int | None = None
    retry_after: int = 1
    status: int = 500
    error: str = "internal_error"
    seconds: float = 5.0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SlackFault:
        if data.get("kind") not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def matches(self, method: str, channel: Any) -> bool:
        return self.method in (None, method) and self.channel in (None, channel)

    def response(self) -> web.Response:
        """The answer of a fault that answers instead of the method (not hang, not commit)."""
        if self.kind == "ratelimit":
            return ratelimited(self.retry_after)
        if self.kind == "status":
            return fail("fatal_error", status=self.status)
        return fail(self.error)


class FaultBook:
    def __init__(self) -> None:
        self._entries: list[list[Any]] = []  # [fault, calls left or None]

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, fault: SlackFault) -> None:
        self._entries.append([fault, fault.count])

    def clear(self) -> None:
        self._entries.clear()

    def take(self, method: str, channel: Any, *, named: bool = False) -> SlackFault | None:
        """The first fault for this call, one of its hits used up; with `named`, only a
        fault that names `method` itself (not one on every method)."""
        for entry in self._entries:
            fault: SlackFault = entry[0]
            if fault.matches(method, channel) and (not named or fault.method == method):
                if entry[1] is not None:
                    entry[1] -= 1
                    if entry[1] <= 0:
                        self._entries.remove(entry)
                return fault
        return None


def fail(error: str, *, status: int = 200) -> web.Response:
    return web.json_response({"ok": False, "error": error}, status=status)


def ratelimited(retry_after: int) -> web.Response:
    """Slack's 429: `Retry-After` in whole seconds and `{"ok": false, "error": "ratelimited"}`."""
    response = fail("ratelimited", status=429)
    response.headers["Retry-After"] = str(retry_after)
    return response
