"""The Slack Web API as the sender sees it: one call, classified failures, message lookup.

`SlackCaller.call` is the single place a Slack Web API method is invoked; it takes a token
of the method's workspace budget first (`bot.slack.budget`), measures the latency and turns
every failure into a `SlackDeliveryError` whose `kind` the outbox understands: rate limited
(with Retry-After; the method's budget pauses for every caller), outcome unknown or timed
out (5xx, connection, no answer: the message may have been posted), permanent (the channel
or the token is gone), or refused on purpose.

Lookups adopt only messages the bot itself posted (`SlackIdentity`, from `auth.test`): a
look-alike another app or a person posted with matching metadata is ignored, with one
WARNING per message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import SlackDeliveryError, SlackFailure
from bot.metrics import Metrics
from bot.slack.budget import Budget
from store import OutboxRow

log = logging.getLogger(__name__)

PERMANENT_ERRORS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "account_inactive",
        "invalid_auth",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "team_access_not_granted",
        "ekm_access_denied",
        "restricted_action",
    }
)
# Slack's own trouble, answered with HTTP 200 and ok:false: part of the call may have
# happened (Slack says so of fatal_error), so it is retried like a 5xx, after a lookup.
SERVER_TROUBLE = frozenset(
    {"fatal_error", "internal_error", "service_unavailable", "request_timeout"}
)
CARD_EVENT = "mathfi_card"
NOTE_EVENT = "mathfi_notification"


@dataclass(frozen=True, slots=True)
class SlackIdentity:
    """Who the bot is in Slack, as `auth.test` says: its user and its bot id."""

    user_id: str | None
    bot_id: str | None

    @classmethod
    def from_auth_test(cls, answer: Any) -> SlackIdentity:
        return cls(
            user_id=str(answer.get("user_id") or "") or None,
            bot_id=str(answer.get("bot_id") or "") or None,
        )

    def posted(self, message: dict[str, Any]) -> bool:
        """The message was posted by this bot (every id `auth.test` gave matches)."""
        known = (self.user_id, message.get("user")), (self.bot_id, message.get("bot_id"))
        return any(ours for ours, _ in known) and all(
            theirs == ours for ours, theirs in known if ours
        )


class SlackCaller:
    def __init__(
        self,
        client: AsyncWebClient,
        *,
        metrics: Metrics,
        identity: SlackIdentity | None = None,
        budget: Budget | None = None,
    ) -> None:
        self._client = client
        self._metrics = metrics
        self._identity = identity
        self.budget = budget or Budget()
        self._ignored: set[tuple[str, str]] = set()  # look-alikes warned about (channel, ts)

    @property
    def timeout(self) -> float:
        """Seconds before a call is given up (the client's timeout)."""
        return float(self._client.timeout)

    async def acquire(self, method: str) -> None:
        """Wait for the method's workspace budget (`bot.slack.budget`); then `call_granted`
        (e.g. a card rendered once the token is granted, never before)."""
        await self.budget.acquire(method)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Take a token of the method's budget, then call it."""
        await self.budget.acquire(method)
        return await self.call_granted(method, **params)

    async def call_granted(self, method: str, **params: Any) -> dict[str, Any]:
        """Call the method; its budget's token was taken (`acquire`)."""
        await self.budget.space(method)
        params = {k: v for k, v in params.items() if v is not None}
        started = time.perf_counter()
        try:
            # slack_sdk applies its `timeout` only to sessions it creates itself; with a
            # shared aiohttp session (as the service passes) a hung call would wait for
            # aiohttp's 5-minute default. Enforce the client's timeout here, always.
            async with asyncio.timeout(self._client.timeout):
                response = await getattr(self._client, method.replace(".", "_"))(**params)
        except SlackApiError as err:
            status = err.response.status_code
            error = str(err.response.get("error") or f"http_{status}")
            self._metrics.slack_errors.labels(error=error).inc()
            if status == 429:
                self._metrics.slack_ratelimited.labels(method=method).inc()
                retry_after = float(err.response.headers.get("Retry-After", "1") or 1)
                self.budget.pause(method, retry_after)  # every caller of a workspace method
                raise SlackDeliveryError(
                    "ratelimited", kind=SlackFailure.RATE_LIMITED, retry_after=retry_after
                ) from err
            if status >= 500 or error in SERVER_TROUBLE:
                raise SlackDeliveryError(error, kind=SlackFailure.OUTCOME_UNKNOWN) from err
            kind = SlackFailure.PERMANENT if error in PERMANENT_ERRORS else SlackFailure.REFUSED
            raise SlackDeliveryError(error, kind=kind) from err
        except (aiohttp.ClientError, TimeoutError) as err:
            self._metrics.slack_errors.labels(error="connection").inc()
            raise SlackDeliveryError(
                f"connection: {type(err).__name__}",
                kind=SlackFailure.TIMED_OUT
                if isinstance(err, TimeoutError)
                else SlackFailure.OUTCOME_UNKNOWN,
            ) from err
        finally:
            self._metrics.slack_send_latency.labels(method=method).observe(
                time.perf_counter() - started
            )
        return dict(response.data) if isinstance(response.data, dict) else {}

    async def identity(self) -> SlackIdentity:
        """The bot's own ids: given at start, else asked of `auth.test` once."""
        if self._identity is None:
            self._identity = SlackIdentity.from_auth_test(await self.call("auth.test"))
        return self._identity

    async def find_message(
        self, row: OutboxRow, event_type: str, method: str, **params: Any
    ) -> str | None:
        """The first message of ours for the row (a card: any card of the row's job)."""
        async for kind, ts in self._ours(row, method, by_job=event_type == CARD_EVENT, **params):
            if kind == event_type:
                return ts
        return None

    async def copies(self, row: OutboxRow, method: str, **params: Any) -> dict[str, list[str]]:
        """Every message of ours that names this very row (`outbox_id`), per event type,
        oldest first."""
        found: dict[str, list[str]] = {}
        async for kind, ts in self._ours(row, method, by_job=False, **params):
            found.setdefault(kind, []).append(ts)
        return {kind: sorted(stamps, key=float) for kind, stamps in found.items()}

    async def delete(self, channel: str, ts: str) -> None:
        await self.call("chat.delete", channel=channel, ts=ts)

    async def _ours(
        self, row: OutboxRow, method: str, *, by_job: bool, **params: Any
    ) -> AsyncIterator[tuple[str, str]]:
        """(event type, ts) of each message of ours naming the row (or, `by_job`, a card of
        its job), page after page."""
        me = await self.identity()
        cursor: str | None = None
        for _ in range(20):
            answer = await self.call(
                method, include_all_metadata=True, limit=200, cursor=cursor, **params
            )
            for message in answer.get("messages", []):
                meta = message.get("metadata") or {}
                payload = meta.get("event_payload") or {}
                kind = meta.get("event_type")
                if kind not in (CARD_EVENT, NOTE_EVENT):
                    continue
                job_card = by_job and kind == CARD_EVENT and payload.get("job_key") == row.job_key
                if payload.get("outbox_id") != row.id and not job_card:
                    continue
                if not me.posted(message):
                    self._ignore(row, message)
                    continue
                yield str(kind), str(message["ts"])
            cursor = (answer.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                return

    def _ignore(self, row: OutboxRow, message: dict[str, Any]) -> None:
        key = (row.channel_id, str(message.get("ts")))
        if key in self._ignored:
            return
        self._ignored.add(key)
        log.warning(
            "ignored a message in %s (ts %s) that names outbox row %s but was posted by "
            "user %s, bot %s, not by this bot",
            row.channel_id,
            key[1],
            row.id,
            message.get("user"),
            message.get("bot_id"),
        )


def metadata(event_type: str, row: OutboxRow) -> dict[str, Any]:
    return {
        "event_type": event_type,
        "event_payload": {"outbox_id": row.id, "job_key": row.job_key, "kind": row.kind},
    }


def disable_reason(error: str) -> str:
    hints = {
        "not_in_channel": "the bot is not in this channel: invite it with /invite @MathFi",
        "channel_not_found": "Slack cannot find this channel (deleted, or private without the bot)",
        "is_archived": "the channel is archived: unarchive it and subscribe again",
        "invalid_auth": "the bot token was refused: an admin must reinstall the app",
        "token_revoked": "the bot token was revoked: an admin must reinstall the app",
        "account_inactive": "the bot account is inactive: an admin must reinstall the app",
    }
    return hints.get(error, f"Slack refused to post here ({error})")
