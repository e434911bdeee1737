"""The Slack Web API as the sender sees it: one call, classified failures, message lookup.

`SlackCaller.call` is the single place a Slack Web API method is invoked; it measures the
latency and turns every failure into a `SlackDeliveryError` whose `kind` the outbox
understands: rate limited (with Retry-After), outcome unknown or timed out (5xx, connection,
no answer: the message may have been posted), permanent (the channel or the token is gone),
or refused on purpose.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import SlackDeliveryError, SlackFailure
from bot.metrics import Metrics
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


class SlackCaller:
    def __init__(self, client: AsyncWebClient, *, metrics: Metrics) -> None:
        self._client = client
        self._metrics = metrics

    @property
    def timeout(self) -> float:
        """Seconds before a call is given up (the client's timeout)."""
        return float(self._client.timeout)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
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
                self._metrics.slack_ratelimited.inc()
                retry_after = float(err.response.headers.get("Retry-After", "1") or 1)
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

    async def find_message(
        self, row: OutboxRow, event_type: str, method: str, **params: Any
    ) -> str | None:
        cursor: str | None = None
        for _ in range(20):
            answer = await self.call(
                method, include_all_metadata=True, limit=200, cursor=cursor, **params
            )
            for message in answer.get("messages", []):
                meta = message.get("metadata") or {}
                payload = meta.get("event_payload") or {}
                if meta.get("event_type") != event_type:
                    continue
                if event_type == CARD_EVENT and payload.get("job_key") == row.job_key:
                    return str(message["ts"])
                if payload.get("outbox_id") == row.id:
                    return str(message["ts"])
            cursor = (answer.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                return None
        return None


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
