"""Fault injection: make the simulator answer badly on purpose.

A `Fault` names what goes wrong and for which requests; a `FaultBook` holds the active ones
(first match in insertion order wins, `count` hits then gone); `fault_middleware` applies
them to every request except the `/_sim/` control routes, so a test can always clear them.

Kinds: "status" (answer `status`, with a `Retry-After: retry_after` header when given and
`body` as JSON when given, else an empty body), "latency" (sleep `seconds`, then answer
normally), "malformed" (200 with a body that is not JSON), "body" (200 with `body` as JSON,
written with `NaN`/`Infinity` as bare tokens; a `str` body is sent verbatim), "drop" (abort
the connection without an answer), "lost" (handle the request normally, so a POST acts,
then abort the connection: the answer is lost). Note that aiohttp's client silently retries
an idempotent request once after a dropped connection, so `count=1` may go unnoticed there.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, fields
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

FAULT_KINDS = frozenset({"status", "latency", "malformed", "body", "drop", "lost"})
MALFORMED_BODY = '{"status": "RUNNING", "jobs": [{"algorithm": "BSEV01", "latestPerf'
CONTROL_PREFIX = "/_sim/"

_NUMBER = (int, float)
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "kind": (str,),
    "status": (int,),
    "retry_after": (*_NUMBER, str, type(None)),
    "body": (object,),
    "seconds": _NUMBER,
    "path_prefix": (str,),
    "count": (int, type(None)),
    "method": (str, type(None)),
}


@dataclass(frozen=True)
class Fault:
    kind: str
    status: int = 500
    retry_after: float | str | None = None
    body: Any = None
    seconds: float = 0.0
    path_prefix: str = ""
    count: int | None = None
    method: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected {sorted(FAULT_KINDS)}")
        if not 100 <= self.status <= 599:
            raise ValueError(f"fault status {self.status} is not an HTTP status")
        if self.count is not None and self.count < 1:
            raise ValueError("fault count must be at least 1 (or None for 'until cleared')")
        if self.seconds < 0:
            raise ValueError("fault seconds must not be negative")

    @classmethod
    def from_json(cls, data: Any) -> Fault:
        """Build a fault from its JSON form (the field names of this class)."""
        if not isinstance(data, dict):
            raise ValueError("a fault must be a JSON object")
        unknown = set(data) - set(_FIELD_TYPES)
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        for name, value in data.items():
            if isinstance(value, bool) or not isinstance(value, _FIELD_TYPES[name]):
                raise ValueError(f"fault field {name!r} has the wrong type")
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return path.startswith(self.path_prefix)


@dataclass
class _Entry:
    fault: Fault
    left: int | None


class FaultBook:
    """The active faults, each with the number of hits it has left."""

    def __init__(self) -> None:
        self._entries: list[_Entry] = []

    def add(self, fault: Fault) -> None:
        self._entries.append(_Entry(fault, fault.count))

    def clear(self) -> None:
        self._entries.clear()

    def active(self) -> list[Fault]:
        return [entry.fault for entry in self._entries]

    def take(self, method: str, path: str) -> Fault | None:
        """The first fault matching the request, using up one of its hits."""
        for entry in self._entries:
            if entry.fault.matches(method, path):
                if entry.left is not None:
                    entry.left -= 1
                    if entry.left <= 0:
                        self._entries.remove(entry)
                return entry.fault
        return None


def _encode(body: Any) -> str:
    return body if isinstance(body, str) else json.dumps(body, allow_nan=True)


def _retry_after(value: float | str) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


async def apply_fault(fault: Fault, request: web.Request) -> web.StreamResponse | None:
    """The injected answer, or None when the request should then be answered normally."""
    if fault.kind == "latency":
        await asyncio.sleep(fault.seconds)
        return None
    if fault.kind == "drop":
        return _abort(request)
    if fault.kind == "malformed":
        return web.Response(text=MALFORMED_BODY, content_type="application/json")
    if fault.kind == "body":
        return web.Response(text=_encode(fault.body), content_type="application/json")
    headers = {} if fault.retry_after is None else {"Retry-After": _retry_after(fault.retry_after)}
    if fault.body is None:
        return web.Response(status=fault.status, headers=headers)
    return web.Response(
        status=fault.status,
        text=_encode(fault.body),
        content_type="application/json",
        headers=headers,
    )


def _abort(request: web.Request) -> web.StreamResponse:
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=500)  # never reaches the client: the socket is gone


def fault_middleware(book: FaultBook) -> Middleware:
    """Middleware that answers with the first matching fault of `book`."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(CONTROL_PREFIX):
            fault = book.take(request.method, request.path)
            if fault is not None and fault.kind == "lost":
                await handler(request)  # acted on...
                return _abort(request)  # ... and the answer never leaves
            if fault is not None:
                response = await apply_fault(fault, request)
                if response is not None:
                    return response
        return await handler(request)

    return middleware
