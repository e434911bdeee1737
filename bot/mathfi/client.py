"""MathFiClient: the only code that speaks HTTP to MathFi.

Every request goes through one private `_send`, which owns the timeout, the concurrency
and rate caps and the retry loop, and turns transport failures into bot.errors:

    connection error, timeout, 5xx, 429  -> retried with backoff, then MathFiUnavailable
    401 on /api/login (or 403)           -> MathFiAuthError, not retried
    401 on /api/v1                       -> one fresh login and one retry, then MathFiAuthError
    404 on a training job                -> TrainingJobNotFound(key)
    any other non-2xx                    -> MathFiRequestError(status=...)
    2xx body not JSON / not the model    -> MathFiParseError(field=...)

Error bodies are never read: MathFi documents none, so only the status counts.
The password and the tokens never reach a log line or an exception message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

import aiohttp
from aiolimiter import AsyncLimiter
from pydantic import BaseModel, SecretStr, ValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    stop_after_attempt,
    wait_random_exponential,
)

from bot.config import Settings
from bot.core.models import (
    CancelTrainingResponse,
    CreateDatasetResponse,
    Dataset,
    DatasetList,
    LoginResponse,
    StartTrainingResponse,
    TrainingJob,
    TrainingProgress,
)
from bot.errors import (
    MathFiAuthError,
    MathFiParseError,
    MathFiRequestError,
    MathFiUnavailable,
    TrainingJobNotFound,
)
from bot.logs import redactor
from bot.mathfi.auth import TokenKeeper

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
Sleep = Callable[[float], Awaitable[None]]

LOGIN_PATH = "/api/login"
_TRANSIENT = (aiohttp.ClientError, TimeoutError)


@dataclass(frozen=True)
class Reply:
    """One HTTP answer that is not worth retrying (the body is read, never logged)."""

    status: int
    reason: str
    body: bytes


class _RetryableStatus(Exception):
    """A 5xx or 429 answer: raised inside the retry loop so it is tried again."""

    def __init__(self, reply: Reply, *, retry_after: float | None) -> None:
        super().__init__(f"{reply.status} {reply.reason}".strip())
        self.status = reply.status
        self.retry_after = retry_after


_RETRYABLE = (_RetryableStatus, *_TRANSIENT)


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` in seconds, or None when absent or not a number (e.g. an HTTP date)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def quote_key(key: str) -> str:
    """A key made safe as one path segment (a stray '/' or '?' cannot change the route)."""
    return quote(key, safe="")


def parse_body(model: type[M], body: bytes, *, where: str) -> M:
    """Validate a 2xx body; MathFiParseError names the first failing field."""
    try:
        data = json.loads(body)
    except ValueError:
        raise MathFiParseError(f"MathFi answered {where} with a body that is not JSON") from None
    try:
        return model.model_validate(data)
    except ValidationError as err:
        # `from None`: pydantic's message echoes the input, which may hold a token.
        first = err.errors()[0]
        name = ".".join(str(part) for part in first["loc"]) or None
        message = f"MathFi answered {where} with an invalid {name or 'body'}: {first['msg']}"
        raise MathFiParseError(message, field=name) from None


class MathFiClient:
    """Typed async client of the MathFi REST API (see mathfi-api/REFERENCE.md)."""

    def __init__(
        self,
        base_url: str,
        *,
        username: str,
        password: SecretStr,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 10.0,
        max_concurrency: int = 50,
        max_rps: float = 0.0,
        max_retries: int = 4,
        token_margin: float = 300.0,
        login_cooldown: float = 30.0,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._username = username
        self._password = password
        self._session = session
        self._owns_session = session is None
        self._timeout = timeout
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._limiter = AsyncLimiter(1, 1.0 / max_rps) if max_rps > 0 else None
        self._attempts = max_retries + 1
        self._backoff_max = backoff_max
        self._jitter = wait_random_exponential(multiplier=backoff_base, max=backoff_max)
        self._stop = stop_after_attempt(self._attempts)
        self._policy = AsyncRetrying(stop=self._stop, wait=self._wait, sleep=sleep)
        self._client_timeout = aiohttp.ClientTimeout(total=timeout)
        self._sleep = sleep
        self._auth = TokenKeeper(
            self._request_token, margin=token_margin, clock=clock, refused_cooldown=login_cooldown
        )
        self.logins = 0
        self.requests = 0

    @classmethod
    def from_settings(
        cls, settings: Settings, *, session: aiohttp.ClientSession | None = None
    ) -> MathFiClient:
        return cls(
            settings.mathfi_base_url,
            username=settings.mathfi_username,
            password=settings.mathfi_password,
            session=session,
            timeout=settings.mathfi_timeout,
            max_concurrency=settings.mathfi_max_concurrency,
            max_rps=settings.mathfi_max_rps,
            max_retries=settings.mathfi_max_retries,
            token_margin=settings.mathfi_token_margin,
            login_cooldown=settings.mathfi_login_cooldown,
        )

    async def close(self) -> None:
        """Close the HTTP session if this client created it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- API ---------------------------------------------------------------------------

    async def login(self) -> None:
        """Log in now (or join the login in flight); raises MathFiAuthError when refused."""
        await self._auth.renew()

    async def get_progress(self, key: str) -> TrainingProgress:
        path = f"/api/v1/training/{quote_key(key)}/progress"
        return await self._call("GET", path, TrainingProgress, job_key=key)

    async def get_training(self, key: str) -> TrainingJob:
        path = f"/api/v1/training/{quote_key(key)}"
        return await self._call("GET", path, TrainingJob, job_key=key)

    async def cancel_training(self, key: str) -> CancelTrainingResponse:
        path = f"/api/v1/training/{quote_key(key)}/cancel"
        return await self._call("PATCH", path, CancelTrainingResponse, job_key=key)

    async def start_training(
        self, dataset_key: str, *, scaling_factor: int, performance_threshold: float
    ) -> StartTrainingResponse:
        path = f"/api/v1/training/datasets/{quote_key(dataset_key)}"
        body = {"scalingFactor": scaling_factor, "performanceThreshold": performance_threshold}
        return await self._call("POST", path, StartTrainingResponse, body=body)

    async def list_datasets(self, *, offset: int = 0, limit: int = 10) -> DatasetList:
        params = {"offset": str(offset), "limit": str(limit)}
        return await self._call("GET", "/api/v1/datasets", DatasetList, params=params)

    async def create_dataset(
        self, name: str, *, number_of_buckets: int | None = None, description: str | None = None
    ) -> CreateDatasetResponse:
        body: dict[str, Any] = {"datasetName": name}
        if number_of_buckets is not None:
            body["numberOfBuckets"] = number_of_buckets
        if description is not None:
            body["description"] = description
        return await self._call("POST", "/api/v1/datasets", CreateDatasetResponse, body=body)

    async def get_dataset(self, key: str) -> Dataset:
        return await self._call("GET", f"/api/v1/datasets/{quote_key(key)}", Dataset)

    # --- plumbing ----------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        model: type[M],
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        job_key: str | None = None,
    ) -> M:
        """An authorised /api/v1 request: one fresh login and one retry after a 401."""
        token = await self._auth.token()
        reply = await self._send(method, path, token=token, body=body, params=params)
        if reply.status == 401:
            logger.info("MathFi refused the token on %s %s; logging in again", method, path)
            self._auth.invalidate(token)
            token = await self._auth.token()
            reply = await self._send(method, path, token=token, body=body, params=params)
        where = f"{method} {path}"
        if reply.status == 401:
            logger.warning("MathFi refused a fresh token on %s", where)
            raise MathFiAuthError(f"MathFi refused a fresh token for {self._username} on {where}")
        if reply.status == 404 and job_key is not None:
            raise TrainingJobNotFound(job_key)
        self._raise_for_status(reply, where=where)
        return parse_body(model, reply.body, where=where)

    async def _request_token(self) -> LoginResponse:
        """POST /api/login; the TokenKeeper calls this (once for all waiting callers)."""
        credentials = {"username": self._username, "password": self._password.get_secret_value()}
        reply = await self._send("POST", LOGIN_PATH, token=None, body=credentials)
        if reply.status in (401, 403):
            logger.warning("MathFi refused the login for %s (%s)", self._username, reply.status)
            raise MathFiAuthError(
                f"MathFi refused the login for {self._username}: "
                "check MATHFI_USERNAME and MATHFI_PASSWORD"
            )
        self._raise_for_status(reply, where=f"POST {LOGIN_PATH}")
        response = parse_body(LoginResponse, reply.body, where=f"POST {LOGIN_PATH}")
        redactor().add(response.access_token)  # no log line may ever carry it
        logger.info(
            "logged in to MathFi as %s, token valid %s s", self._username, response.expires_in
        )
        return response

    @staticmethod
    def _raise_for_status(reply: Reply, *, where: str) -> None:
        if not 200 <= reply.status < 300:
            message = f"MathFi rejected {where}: {reply.status} {reply.reason}".rstrip()
            raise MathFiRequestError(message, status=reply.status)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        token: str | None,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Reply:
        """One logical request with retries; MathFiUnavailable once they are used up.

        tenacity decides how long to wait and when to stop; the loop itself is plain, so
        a request that succeeds at once (nearly all of them) pays nothing for retrying:
        building an `AsyncRetrying` per call cost about a fifth of a poll's CPU.
        """
        state: RetryCallState | None = None
        while True:
            try:
                return await self._attempt(method, path, token, body=body, params=params)
            except _RETRYABLE as err:
                state = self._failed(state, err)
            if self._stop(state):
                raise self._unavailable(state, method=method, path=path) from None
            await self._sleep(self._wait(state))

    def _failed(self, state: RetryCallState | None, err: BaseException) -> RetryCallState:
        """The retry state after one more failed attempt (the first one creates it)."""
        if state is None:
            state = RetryCallState(self._policy, fn=None, args=(), kwargs={})
        else:
            state.prepare_for_next_attempt()
        state.set_exception((type(err), err, err.__traceback__))
        return state

    async def _attempt(
        self,
        method: str,
        path: str,
        token: str | None,
        *,
        body: Mapping[str, Any] | None,
        params: Mapping[str, str] | None,
    ) -> Reply:
        """One HTTP exchange under the concurrency and rate caps and the timeout."""
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        session = self._ensure_session()
        async with self._semaphore:
            if self._limiter is not None:
                await self._limiter.acquire()
            self.requests += 1
            if path == LOGIN_PATH:
                self.logins += 1
            async with session.request(
                method,
                self._base_url + path,
                headers=headers,
                json=body,
                params=params,
                timeout=self._client_timeout,
            ) as response:
                reply = Reply(response.status, response.reason or "", await response.read())
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        if reply.status == 429 or reply.status >= 500:
            logger.debug("MathFi answered %s %s with %s", method, path, reply.status)
            raise _RetryableStatus(reply, retry_after=retry_after)
        return reply

    def _wait(self, state: RetryCallState) -> float:
        """Full-jitter exponential backoff, or the server's Retry-After (capped)."""
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, _RetryableStatus) and error.retry_after is not None:
            return min(error.retry_after, self._backoff_max)
        return self._jitter(state)

    def _unavailable(self, state: RetryCallState, *, method: str, path: str) -> MathFiUnavailable:
        cause = state.outcome.exception() if state.outcome is not None else None
        status = cause.status if isinstance(cause, _RetryableStatus) else None
        message = self._scrub(
            f"MathFi unreachable: {self._describe(cause)} on {method} {path} "
            f"after {state.attempt_number} attempts"
        )
        logger.debug("%s", message)  # the poller logs the outage once, on its edge
        return MathFiUnavailable(message, status=status)

    def _describe(self, cause: BaseException | None) -> str:
        """One line about the last failure: the status, the timeout or the transport error."""
        if isinstance(cause, _RetryableStatus):
            return str(cause)
        if isinstance(cause, TimeoutError):
            return f"no answer within {self._timeout:g} s"
        text = str(cause) or type(cause).__name__
        return " ".join(f"{type(cause).__name__}: {text}".split())

    def _scrub(self, text: str) -> str:
        """Belt and braces: blank out the password and the token should they ever appear."""
        secrets = (self._password.get_secret_value(), self._auth.current)
        for secret in secrets:
            if secret:
                text = text.replace(secret, "***")
        return text

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session
