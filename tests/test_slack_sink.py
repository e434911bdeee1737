"""The local Slack sink, driven over real HTTP by slack_sdk's AsyncWebClient."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from simulator.slack import SlackFault, SlackSink, start_in_background
from tests.sink_kit import CHANNEL, META, TOKEN, ManualClock, RecordingSleep, post, slack_error


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_700_000_000.0)


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
async def sink(clock: ManualClock, sleep: RecordingSleep) -> AsyncIterator[SlackSink]:
    sink = SlackSink(token=TOKEN, clock=clock, sleep=sleep)
    runner, base_url = await start_in_background(sink)
    assert base_url == sink.base_url and sink.api_url == base_url + "/api/"
    assert sink.token == TOKEN
    yield sink
    await runner.cleanup()


@pytest.fixture
def client(sink: SlackSink) -> AsyncWebClient:
    return AsyncWebClient(token=TOKEN, base_url=sink.api_url)


async def test_auth_test_names_team_and_bot(client: AsyncWebClient) -> None:
    response = await client.auth_test()
    assert response["team_id"] == "T0DEMO"
    assert response["user_id"] == "U0BOT"
    assert response["bot_id"] and response["url"].startswith("https://")


async def test_post_message_is_recorded_with_increasing_slack_shaped_ts(
    client: AsyncWebClient, sink: SlackSink, clock: ManualClock
) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*card*"}}]
    first = await client.chat_postMessage(
        channel=CHANNEL, text="card", blocks=blocks, metadata=META
    )
    second = await post(client)  # same clock reading: ts must still grow
    clock.now += 5
    third = await post(client)
    assert first["channel"] == CHANNEL and first["message"]["text"] == "card"
    assert all(re.fullmatch(r"\d{10}\.\d{6}", ts) for ts in (first["ts"], second, third))
    assert float(first["ts"]) < float(second) < float(third)
    assert first["ts"] == "1700000000.000000" and third.startswith("1700000005.")
    stored = sink.channels[CHANNEL][0]
    assert (stored.text, stored.blocks, stored.metadata) == ("card", blocks, META)
    assert stored.user == "U0BOT" and stored.thread_ts is None and stored.edits == 0
    assert [method for method, _ in sink.calls] == ["chat.postMessage"] * 3


async def test_thread_reply_and_broadcast(client: AsyncWebClient, sink: SlackSink) -> None:
    parent = await post(client, "card")
    quiet = await post(client, "reply", thread_ts=parent)
    loud = await post(client, "alert", thread_ts=parent, reply_broadcast=True)
    nested = await post(client, "reply to a reply", thread_ts=quiet)
    assert [m.ts for m in sink.top_level(CHANNEL)] == [parent]
    assert [m.ts for m in sink.replies(CHANNEL, parent)] == [quiet, loud, nested]
    assert [m.reply_broadcast for m in sink.replies(CHANNEL, parent)] == [False, True, False]
    history = await client.conversations_history(channel=CHANNEL)
    assert [m["ts"] for m in history["messages"]] == [loud, parent]
    assert history["messages"][0]["subtype"] == "thread_broadcast"
    assert history["messages"][1]["reply_count"] == 3


async def test_update_edits_in_place_and_notifies(client: AsyncWebClient, sink: SlackSink) -> None:
    seen: list[tuple[str, str, int]] = []
    sink.subscribe(lambda kind, message: seen.append((kind, message.text, message.edits)))
    blocks = [{"type": "divider"}]
    ts = await post(client, "v1", blocks=blocks)
    updated = await client.chat_update(
        channel=CHANNEL, ts=ts, text="v2", blocks=blocks, metadata=META
    )
    assert updated["ts"] == ts and updated["text"] == "v2"
    await client.chat_update(channel=CHANNEL, ts=ts, text="v3")  # text alone drops the blocks
    [message] = sink.channels[CHANNEL]
    assert (message.text, message.blocks, message.edits, message.metadata) == ("v3", [], 2, META)
    assert seen == [("post", "v1", 0), ("update", "v2", 1), ("update", "v3", 2)]


async def test_history_is_newest_first_paged_and_shows_metadata_only_on_request(
    client: AsyncWebClient,
) -> None:
    stamps = [await post(client, f"m{i}", metadata=META) for i in range(5)]
    plain = await client.conversations_history(channel=CHANNEL, limit=3)
    assert [m["ts"] for m in plain["messages"]] == stamps[:1:-1]
    assert plain["has_more"] and all("metadata" not in m for m in plain["messages"])
    cursor = plain["response_metadata"]["next_cursor"]
    rest = await client.conversations_history(
        channel=CHANNEL, limit=3, cursor=cursor, include_all_metadata=True
    )
    assert [m["ts"] for m in rest["messages"]] == stamps[1::-1]
    assert not rest["has_more"] and rest["response_metadata"]["next_cursor"] == ""
    assert all(m["metadata"] == META for m in rest["messages"])
    newer = await client.conversations_history(channel=CHANNEL, oldest=stamps[2])
    assert [m["ts"] for m in newer["messages"]] == stamps[:2:-1]


async def test_replies_list_parent_first_with_metadata(client: AsyncWebClient) -> None:
    parent = await post(client, "card")
    reply = await post(client, "note", thread_ts=parent, metadata=META)
    await post(client, "elsewhere")
    thread = await client.conversations_replies(
        channel=CHANNEL, ts=parent, include_all_metadata=True
    )
    assert [m["ts"] for m in thread["messages"]] == [parent, reply]
    assert (
        thread["messages"][1]["metadata"] == META and thread["messages"][1]["thread_ts"] == parent
    )
    unknown = await slack_error(client.conversations_replies(channel=CHANNEL, ts="1.000001"))
    assert unknown.response["error"] == "thread_not_found"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"channel": "general", "text": "x"}, "channel_not_found"),
        pytest.param(
            {"channel": CHANNEL},
            "no_text",
            marks=pytest.mark.filterwarnings("ignore:The top-level `text`:UserWarning"),
        ),
        ({"channel": CHANNEL, "text": "x" * 40_001}, "msg_too_long"),
        ({"channel": CHANNEL, "text": "x", "blocks": [{"type": "divider"}] * 51}, "invalid_blocks"),
        (
            {
                "channel": CHANNEL,
                "text": "x",
                "blocks": [{"type": "header", "text": {"text": "h" * 151}}],
            },
            "invalid_blocks",
        ),
        ({"channel": CHANNEL, "text": "x", "thread_ts": "1.000001"}, "thread_not_found"),
        (
            {"channel": CHANNEL, "text": "x", "metadata": {"event_payload": {}}},
            "invalid_metadata_format",
        ),
    ],
)
async def test_post_message_refuses_what_slack_refuses(
    client: AsyncWebClient, sink: SlackSink, kwargs: dict[str, Any], error: str
) -> None:
    failure = await slack_error(client.chat_postMessage(**kwargs))
    assert failure.response.status_code == 200 and failure.response["error"] == error
    assert sink.channels == {}


async def test_update_of_unknown_message_is_message_not_found(client: AsyncWebClient) -> None:
    failure = await slack_error(client.chat_update(channel=CHANNEL, ts="1.000001", text="x"))
    assert failure.response["error"] == "message_not_found"


async def test_form_encoded_json_strings_are_normalised(sink: SlackSink) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]
    form = {"channel": CHANNEL, "text": "hi", "blocks": json.dumps(blocks)}
    form |= {"metadata": json.dumps(META), "reply_broadcast": "false"}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(sink.api_url + "chat.postMessage", data=form, headers=headers) as response,
    ):
        body = await response.json()
    assert body["ok"] is True
    [message] = sink.channels[CHANNEL]
    assert message.blocks == blocks and message.metadata == META


async def test_bad_token_is_invalid_auth(sink: SlackSink) -> None:
    intruder = AsyncWebClient(token="xoxb-wrong", base_url=sink.api_url)
    failure = await slack_error(intruder.chat_postMessage(channel=CHANNEL, text="x"))
    assert failure.response["error"] == "invalid_auth"
    assert sink.channels == {}


async def test_ratelimit_fault_answers_429_with_retry_after(
    client: AsyncWebClient, sink: SlackSink
) -> None:
    sink.add_fault(SlackFault("ratelimit", method="chat.postMessage", count=1, retry_after=7))
    failure = await slack_error(client.chat_postMessage(channel=CHANNEL, text="x"))
    assert failure.response.status_code == 429
    assert failure.response.headers["Retry-After"] == "7"
    assert failure.response["error"] == "ratelimited"
    assert sink.channels == {}
    await post(client)  # count=1: the next call goes through
    assert len(sink.channels[CHANNEL]) == 1


async def test_status_and_error_faults_hit_only_their_method_and_channel(
    client: AsyncWebClient, sink: SlackSink
) -> None:
    sink.add_fault(SlackFault("status", status=503, channel="C0OTHER"))
    sink.add_fault(SlackFault("error", method="chat.update", error="not_in_channel"))
    ts = await post(client)
    down = await slack_error(client.chat_postMessage(channel="C0OTHER", text="x"))
    assert down.response.status_code == 503
    refused = await slack_error(client.chat_update(channel=CHANNEL, ts=ts, text="y"))
    assert (refused.response.status_code, refused.response["error"]) == (200, "not_in_channel")
    sink.clear_faults()
    await post(client, channel="C0OTHER")
    assert len(sink.channels["C0OTHER"]) == 1


async def test_hang_fault_waits_then_answers(
    client: AsyncWebClient, sink: SlackSink, sleep: RecordingSleep
) -> None:
    sink.add_fault(SlackFault("hang", seconds=42.0, count=1))
    await post(client)
    await post(client)
    assert sleep.slept == [42.0]
    assert len(sink.channels[CHANNEL]) == 2


async def test_fail_after_commit_stores_then_answers_500(
    client: AsyncWebClient, sink: SlackSink
) -> None:
    sink.add_fault(SlackFault("fail_after_commit", method="chat.postMessage", count=1))
    lost = await slack_error(client.chat_postMessage(channel=CHANNEL, text="x", metadata=META))
    assert lost.response.status_code == 500
    [message] = sink.channels[CHANNEL]
    history = await client.conversations_history(channel=CHANNEL, include_all_metadata=True)
    assert history["messages"][0]["ts"] == message.ts
    assert history["messages"][0]["metadata"] == META


async def test_archived_channel_refuses_posts_and_updates(
    client: AsyncWebClient, sink: SlackSink
) -> None:
    ts = await post(client)
    sink.archive(CHANNEL)
    for call in (
        client.chat_postMessage(channel=CHANNEL, text="x"),
        client.chat_update(channel=CHANNEL, ts=ts, text="y"),
    ):
        assert (await slack_error(call)).response["error"] == "is_archived"
    info = await client.conversations_info(channel=CHANNEL)
    assert info["channel"]["is_archived"] is True
    assert [m.text for m in sink.channels[CHANNEL]] == ["hello"]


async def test_ephemeral_is_kept_apart_from_the_channel(
    client: AsyncWebClient, sink: SlackSink
) -> None:
    response = await client.chat_postEphemeral(channel=CHANNEL, user="U1", text="only you")
    assert response["message_ts"]
    assert [(m.user, m.text) for m in sink.ephemerals[CHANNEL]] == [("U1", "only you")]
    assert CHANNEL not in sink.channels


async def test_response_url_records_bodies_and_allows_five_uses(sink: SlackSink) -> None:
    url = sink.new_response_url(channel=CHANNEL)
    url_id = url.rsplit("/", 1)[1]
    webhook = AsyncWebhookClient(url)
    first = await webhook.send(text="private")
    second = await webhook.send(text="for all", response_type="in_channel")
    assert (first.status_code, first.body) == (200, "ok") and second.status_code == 200
    assert [b["text"] for b in sink.responses[url_id]] == ["private", "for all"]
    assert [m.text for m in sink.channels[CHANNEL]] == ["for all"]
    for _ in range(3):
        assert (await webhook.send(text="again")).status_code == 200
    used = await webhook.send(text="sixth")
    assert (used.status_code, used.body) == (404, "used_url")
    assert len(sink.responses[url_id]) == 5


async def test_response_url_expires_after_30_minutes(sink: SlackSink, clock: ManualClock) -> None:
    webhook = AsyncWebhookClient(sink.new_response_url())
    clock.now += 30 * 60 + 1
    expired = await webhook.send(text="late")
    assert (expired.status_code, expired.body) == (404, "expired_url")


async def test_control_routes_drive_the_sink_from_another_process(
    client: AsyncWebClient, sink: SlackSink
) -> None:
    base = sink.base_url + "/_sink"
    async with aiohttp.ClientSession() as http:
        fault = {"kind": "error", "method": "chat.postMessage", "error": "account_inactive"}
        async with http.post(base + "/faults", json={"faults": [fault]}) as response:
            assert response.status == 200
        async with http.post(base + "/faults", json={"kind": "nonsense"}) as response:
            assert response.status == 400
        failure = await slack_error(client.chat_postMessage(channel=CHANNEL, text="x"))
        assert failure.response["error"] == "account_inactive"
        async with http.delete(base + "/faults") as response:
            assert response.status == 200
        await post(client, metadata=META)
        async with http.post(base + "/archive/C0GONE") as response:
            assert response.status == 200
        async with http.get(base + "/messages") as response:
            messages = await response.json()
        async with http.get(base + "/calls") as response:
            calls = (await response.json())["calls"]
    assert sink.archived == {"C0GONE"}
    [stored] = messages["channels"][CHANNEL]
    assert stored["text"] == "hello" and stored["metadata"] == META
    assert [c["method"] for c in calls] == ["chat.postMessage", "chat.postMessage"]
    assert calls[1]["params"]["channel"] == CHANNEL


def test_new_response_url_needs_a_running_sink() -> None:
    with pytest.raises(RuntimeError):
        SlackSink().new_response_url()
