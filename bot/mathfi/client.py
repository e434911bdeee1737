"""MathFiClient: the only code that speaks HTTP to MathFi.

(About 460 lines, kept whole: the endpoints and their one choke point `_send` belong
together; the policies it applies live beside it in body.py, failures.py and retry.py.)

Every request goes through one private `_send`, which owns the timeout, the concurrency
and rate caps and the retry loop, and turns transport failures into bot.errors:

    connection error, timeout, 5xx, 429  -> retried with backoff, then MathFiUnavailable
    ... on a POST/PATCH that may have    -> MathFiOutcomeUnknown at once, never retried
        reached MathFi                      (bot/mathfi/failures.py says which failures
                                            prove it did not: those are retried)
    any 3xx                              -> MathFiRedirect: never followed, body not read
    401 on /api/login (or 403)           -> MathFiAuthError, not retried
    401 on /api/v1                       -> one fresh login and one retry, then MathFiAuthError
    404 on a training job                -> TrainingJobNotFound(key)
    any other non-2xx                    -> MathFiRequestError(status=...)
    2xx body too large, not JSON, too    -> MathFiParseError(field=...)
        deep or not the model               (bot/mathfi/body.py)

`get_progress_if_changed` is the poller's cheap path: it digests the raw 2xx body and parses
it only when the digest differs from the caller's previous one (a byte-identical body is the
same answer); the cap and every rule above apply before the digest is taken.

Error bodies are never read: MathFi documents none, so only the status counts. Messages
use the standard reason phrase of the status, never the server's own. The password and
the tokens never reach a log line or an exception message.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

import aiohttp
from aiolimiter import AsyncLimiter
from multidict import CIMultiDict, CIMultiDictProxy
from pydantic import BaseModel, SecretStr
from yarl import URL

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
    MathFiError,
    MathFiOutcomeUnknown,
    MathFiRedirect,
    MathFiRequestError,
    MathFiUnavailable,
    TrainingJobNotFound,
)
from bot.logs import redactor
from bot.mathfi.auth import TokenKeeper
from bot.mathfi.body import body_digest, parse_body, read_capped
from bot.mathfi.failures import (
    REPLAYABLE_METHODS,
    TRANSIENT,
    RetryableStatus,
    describe,
    phrase,
    retry_after_seconds,
    trouble_of,
)
from bot.mathfi.retry import Failure, RetryLoop, Sleep

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

LOGIN_PATH = "/api/login"
DEFAULT_MAX_BODY = 4_000_000


@dataclass(frozen=True, slots=True)
class Reply:
    """One HTTP answer that is not worth retrying (only a 2xx body is read, never logged)."""

    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class ProgressReply:
    """A progress poll: the digest of the raw body (`body_digest`) and the parsed progress,
    or None when the body was byte-identical to the one `previous_digest` was taken of."""

    digest: bytes
    progress: TrainingProgress | None


# The characters `quote` never escapes: a key made only of them is its own quoted form.
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")


def quote_key(key: str) -> str:
    """A key made safe as one path segment (a stray '/' or '?' cannot change the route)."""
    if _UNRESERVED.fullmatch(key):
        return key  # the usual key: checking is cheaper than quoting
    return quote(key, safe="")


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
        max_body: int = DEFAULT_MAX_BODY,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        # Parsed once: a request's URL is this one with its (already quoted) path appended,
        # which costs far less than parsing a new string for each of 10,000 job keys.
        self._base = URL(self._base_url)
        self._base_path = self._base.raw_path.rstrip("/")
        self._headers: tuple[str | None, CIMultiDictProxy[str]] | None = None  # by token
        self._username = username
        self._password = password
        self._session = session
        self._owns_session = session is None
        # Requests that change something each go on a new connection, closed after the
        # answer: a pooled connection the server closed while idle would otherwise make a
        # start's outcome unknown (was it read before the close?). They are rare; the
        # handshake is cheap next to a training.
        self._write_session: aiohttp.ClientSession | None = None
        self._timeout = timeout
        self._max_body = max_body
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._limiter = AsyncLimiter(1, 1.0 / max_rps) if max_rps > 0 else None
        self._retry = RetryLoop(
            attempts=max_retries + 1,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            sleep=sleep,
        )
        self._client_timeout = aiohttp.ClientTimeout(total=timeout)
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
            max_body=int(settings.mathfi_max_body),
        )

    async def close(self) -> None:
        """Close the HTTP session if this client created it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None
        if self._write_session is not None:
            await self._write_session.close()
            self._write_session = None

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

    async def get_progress_if_changed(
        self, key: str, previous_digest: bytes | None
    ) -> ProgressReply:
        """GET the progress; skip parsing and validation when its body is byte-identical to
        the body `previous_digest` was taken of (None: always parse). Errors as get_progress."""
        path = f"/api/v1/training/{quote_key(key)}/progress"
        body = await self._fetch("GET", path, job_key=key)
        digest = body_digest(body)
        if digest == previous_digest:
            return ProgressReply(digest, None)
        return ProgressReply(digest, parse_body(TrainingProgress, body, where=f"GET {path}"))

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
        """An authorised /api/v1 request, its 2xx body parsed into `model`."""
        body_bytes = await self._fetch(method, path, body=body, params=params, job_key=job_key)
        return parse_body(model, body_bytes, where=f"{method} {path}")

    async def _fetch(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        job_key: str | None = None,
    ) -> bytes:
        """An authorised /api/v1 request's raw 2xx body (capped, unparsed): one fresh login
        and one retry after a 401; every other status raises as the module docstring says."""
        replayable = method in REPLAYABLE_METHODS
        token = await self._auth.token()
        reply = await self._send(
            method, path, token=token, body=body, params=params, replayable=replayable
        )
        if reply.status == 401:  # refused before acting: sending it again is safe
            logger.info("MathFi refused the token on %s %s; logging in again", method, path)
            self._auth.invalidate(token)
            token = await self._auth.token()
            reply = await self._send(
                method, path, token=token, body=body, params=params, replayable=replayable
            )
        where = f"{method} {path}"
        if reply.status == 401:
            logger.warning("MathFi refused a fresh token on %s", where)
            raise MathFiAuthError(f"MathFi refused a fresh token for {self._username} on {where}")
        if reply.status == 404 and job_key is not None:
            raise TrainingJobNotFound(job_key)
        self._raise_for_status(reply, where=where)
        return reply.body

    async def _request_token(self) -> LoginResponse:
        """POST /api/login; the TokenKeeper calls this (once for all waiting callers)."""
        credentials = {"username": self._username, "password": self._password.get_secret_value()}
        # Replayable although a POST: a second login only issues a second token.
        reply = await self._send("POST", LOGIN_PATH, token=None, body=credentials, replayable=True)
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
            message = f"MathFi rejected {where}: {reply.status} {phrase(reply.status)}".rstrip()
            raise MathFiRequestError(message, status=reply.status)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        token: str | None,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        replayable: bool,
    ) -> Reply:
        """One logical request with retries (bot/mathfi/retry.py): MathFiUnavailable once
        they are used up, MathFiOutcomeUnknown when MathFi may have acted on it. The first
        attempt is made here (nearly every request succeeds at once); the retry loop takes
        over only after it failed."""

        def attempt() -> Awaitable[Reply]:
            session = self._ensure_session() if replayable else self._ensure_write_session()
            return self._attempt(session, method, path, token, body=body, params=params)

        try:
            return await attempt()
        except TRANSIENT as err:
            result = await self._retry.run(attempt, replayable=replayable, first_failure=err)
        if isinstance(result, Failure):
            raise self._failure(result, method=method, path=path) from result.cause
        return result

    async def _attempt(
        self,
        session: aiohttp.ClientSession,
        method: str,
        path: str,
        token: str | None,
        *,
        body: Mapping[str, Any] | None,
        params: Mapping[str, str] | None,
    ) -> Reply:
        """One HTTP exchange under the concurrency and rate caps and the timeout.

        Redirects are never followed: a 3xx is MathFiRedirect, its Location and body unread.
        """
        headers = self._headers_for(token)
        async with self._semaphore:
            if self._limiter is not None:
                await self._limiter.acquire()
            self.requests += 1
            if path == LOGIN_PATH:
                self.logins += 1
            async with session.request(
                method,
                self._url(path),
                headers=headers,
                json=body,
                params=params,
                timeout=self._client_timeout,
                allow_redirects=False,
            ) as response:
                code = response.status
                if code == 429 or code >= 500:
                    logger.debug("MathFi answered %s %s with %s", method, path, code)
                    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                    raise RetryableStatus(code, retry_after=retry_after)
                if 300 <= code < 400:
                    raise MathFiRedirect(
                        f"MathFi answered {method} {path} with {code} {phrase(code)}: "
                        "redirects are not followed",
                        status=code,
                    )
                if not 200 <= code < 300:
                    return Reply(code, b"")
                where = f"{method} {path}"
                content = await read_capped(response, cap=self._max_body, where=where)
        return Reply(code, content)

    def _url(self, path: str) -> URL | str:
        """The URL of `path` (its parts already quoted): the base URL parsed once with the
        path appended, the very URL `base_url + path` parses to. A path with a dot segment
        (a key "." or "..") is parsed as that string, which resolves the segment."""
        if "/." in path:
            return self._base_url + path
        return self._base.with_path(self._base_path + path, encoded=True)

    def _headers_for(self, token: str | None) -> CIMultiDictProxy[str]:
        """The request headers for `token`, built once per token (not once per request)."""
        known = self._headers
        if known is None or known[0] != token:
            headers = CIMultiDict({"Accept": "application/json"})
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            known = self._headers = (token, CIMultiDictProxy(headers))
        return known[1]

    def _failure(self, failure: Failure, *, method: str, path: str) -> MathFiError:
        """The error to raise for a request given up: worded for the log, secrets scrubbed."""
        cause = failure.cause
        status = cause.status if isinstance(cause, RetryableStatus) else None
        what = describe(cause, timeout=self._timeout)
        if failure.outcome_unknown:
            message = self._scrub(
                f"MathFi outcome unknown: {what} on {method} {path}; "
                "MathFi may have acted on it, so it was not sent again: check MathFi"
            )
            logger.warning("%s", message)  # rare, and a person has to look: logged here
            return MathFiOutcomeUnknown(message, status=status, trouble=trouble_of(cause))
        message = self._scrub(
            f"MathFi unreachable: {what} on {method} {path} after {failure.attempts} attempts"
        )
        logger.debug("%s", message)  # the poller logs the outage once, on its edge
        return MathFiUnavailable(message, status=status, trouble=trouble_of(cause))

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

    def _ensure_write_session(self) -> aiohttp.ClientSession:
        if self._write_session is None:
            connector = aiohttp.TCPConnector(force_close=True)
            self._write_session = aiohttp.ClientSession(connector=connector)
        return self._write_session
