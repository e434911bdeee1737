"""The local Slack sink (simulator/slack.py) with a directory of people and user groups,
for the permission and action tests: users.info and usergroups.users.list as Slack does."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from slack_sdk.web.async_client import AsyncWebClient

from simulator.slack import SlackSink, start_in_background
from simulator.slack_directory import SinkUser, UserKind

TOKEN = "xoxb-directory-test"


@asynccontextmanager
async def serve_directory(
    users: Mapping[str, UserKind], groups: Mapping[str, list[str]] | None = None
) -> AsyncIterator[SlackSink]:
    sink = SlackSink(token=TOKEN)
    for user_id, kind in users.items():
        sink.add_user(SinkUser(user_id, kind))
    for group, members in (groups or {}).items():
        sink.add_usergroup(group, list(members))
    runner, _ = await start_in_background(sink)
    try:
        yield sink
    finally:
        await runner.cleanup()


def client_of(sink: SlackSink) -> AsyncWebClient:
    return AsyncWebClient(token=TOKEN, base_url=sink.api_url, timeout=2)


def calls(sink: SlackSink, method: str | None = None) -> int:
    return sum(1 for name, _ in sink.calls if method in (None, name))
