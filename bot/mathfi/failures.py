"""What a failed attempt proves: may it be repeated, and what kind of trouble was it.

A GET (and the login, which only issues another token) may be repeated after any
transport failure, 5xx or 429. A request that changes something (POST, PATCH) may be
repeated only when the failure proves MathFi did not act on it:

- the connection was never made (refused, name not resolved, TLS handshake failed,
  connect timed out): `aiohttp.ClientConnectorError` / `ConnectionTimeoutError` are
  raised before a byte of the request is written;
- the answer is 429. MathFi documents no rate limit, no 429 and no idempotency key
  (REFERENCE.md §9), so a 429 can only come from something in front of MathFi (a
  gateway, a WAF) that refuses the request before it reaches MathFi; RFC 6585 defines
  429 as such a refusal, with or without `Retry-After` (honoured when present).

Everything else (a timeout after the request went out, a dropped or reset connection, a
truncated answer, any 5xx, which a gateway also sends when MathFi acted but answered
late) leaves the outcome unknown: the request is not repeated, the caller gets
MathFiOutcomeUnknown and can tell the user to check MathFi.
"""

from __future__ import annotations

import errno
from http import HTTPStatus

import aiohttp

from bot.errors import Trouble

# Methods whose repetition cannot do anything twice.
REPLAYABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class RetryableStatus(Exception):
    """A 5xx or 429 answer: raised inside the retry loop so it can be tried again."""

    def __init__(self, status: int, *, retry_after: float | None) -> None:
        super().__init__(f"{status} {phrase(status)}".strip())
        self.status = status
        self.retry_after = retry_after


TRANSIENT = (RetryableStatus, aiohttp.ClientError, TimeoutError)


def phrase(status: int) -> str:
    """The standard reason phrase of `status` (never the server's own, which it controls)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def not_acted_on(err: BaseException) -> bool:
    """Whether the failure proves MathFi did not act on the request (see the module doc)."""
    if isinstance(err, RetryableStatus):
        return err.status == 429
    return isinstance(err, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)


def trouble_of(err: BaseException | None) -> Trouble:
    """The public kind of a transport failure (an HTTP status is told by its number)."""
    if isinstance(err, TimeoutError):  # aiohttp's timeouts derive from it too
        return Trouble.TIMEOUT
    if isinstance(err, aiohttp.ClientConnectorError):
        os_error = err.os_error
        refused = isinstance(os_error, ConnectionRefusedError) or (
            os_error.errno == errno.ECONNREFUSED
        )
        return Trouble.REFUSED if refused else Trouble.CONNECTION
    if isinstance(
        err, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError | aiohttp.ClientPayloadError
    ):
        return Trouble.LOST
    return Trouble.CONNECTION


def describe(cause: BaseException, *, timeout: float) -> str:
    """One line about a failure, for the log: the status, the timeout or the transport error
    (which may name the host: never for a channel, see MathFiError.public_reason)."""
    if isinstance(cause, RetryableStatus):
        return str(cause)
    if isinstance(cause, TimeoutError):
        return f"no answer within {timeout:g} s"
    text = str(cause) or type(cause).__name__
    return " ".join(f"{type(cause).__name__}: {text}".split())


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` in seconds, or None when absent or not a number (e.g. an HTTP date)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
