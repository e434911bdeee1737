"""Shared by the Slack sink's test files: a manual clock, a recording sleep, small calls."""

from __future__ import annotations

from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

TOKEN = "xoxb-test-token"
CHANNEL = "C0TEST"
META = {"event_type": "mathfi_outbox", "event_payload": {"row": 7}}


class ManualClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class RecordingSleep:
    def __init__(self) -> None:
        self.slept: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)


async def post(client: AsyncWebClient, text: str = "hello", **kwargs: Any) -> str:
    response = await client.chat_postMessage(
        channel=kwargs.pop("channel", CHANNEL), text=text, **kwargs
    )
    return str(response["ts"])


async def slack_error(call: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as caught:
        await call
    return caught.value
