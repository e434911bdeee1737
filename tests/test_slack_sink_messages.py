"""The Slack sink's chat.delete, who posted a message, rate limits and late completion."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from slack_sdk.web.async_client import AsyncWebClient

from simulator.slack import RateLimits, SlackFault, SlackSink, start_in_background
from tests.sink_kit import CHANNEL, META, TOKEN, ManualClock, RecordingSleep, post, slack_error

OTHER_APP = {"user": "U0OTHER", "bot_id": "B0OTHER"}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_700_000_000.0)


@pytest.fixture
async def sink(clock: ManualClock) -> AsyncIterator[SlackSink]:
    sink = SlackSink(token=TOKEN, clock=clock, sleep=RecordingSleep())
    runner, _ = await start_in_background(sink)
    yield sink
    await runner.cleanup()


@pytest.fixture
def client(sink: SlackSink) -> AsyncWebClient:
    return AsyncWebClient(token=TOKEN, base_url=sink.api_url)


async def stats(sink: SlackSink) -> dict[str, object]:
    async with aiohttp.ClientSession() as http, http.get(sink.base_url + "/_sink/stats") as got:
        body: dict[str, object] = await got.json()
        return body


# ---- chat.delete --------------------------------------------------------------------


async def test_deleting_a_reply_removes_it_from_the_thread_and_the_channel(
    client: AsyncWebClient, sink: SlackSink
) -> None:
    deleted: list[str] = []
    sink.subscribe(lambda kind, message: deleted.append(message.ts) if kind == "delete" else None)
    card = await post(client, "card")
    keep = await post(client, "keep", thread_ts=card)
    loud = await post(client, "twice", thread_ts=card, reply_broadcast=True)
    answer = await client.chat_delete(channel=CHANNEL, ts=loud)
    assert (answer["channel"], answer["ts"]) == (CHANNEL, loud)
    thread = await client.conversations_replies(channel=CHANNEL, ts=card)
    assert [m["ts"] for m in thread["messages"]] == [card, keep]
    history = await client.conversations_history(channel=CHANNEL)
    assert [m["ts"] for m in history["messages"]] == [card]
    assert history["messages"][0]["reply_count"] == 1
    assert deleted == [loud]
    again = await slack_error(client.chat_delete(channel=CHANNEL, ts=loud))
    assert again.response["error"] == "message_not_found"


async def test_deleting_a_parent_leaves_a_tombstone_while_replies_remain(
    client: AsyncWebClient, sink: SlackSink
) -> None:
    lonely = await post(client, "no replies")
    await client.chat_delete(channel=CHANNEL, ts=lonely)
    assert sink.top_level(CHANNEL) == []  # a parent without replies simply goes
    card = await post(client, "card", metadata=META)
    reply = await post(client, "reply", thread_ts=card)
    await client.chat_delete(channel=CHANNEL, ts=card)
    history = await client.conversations_history(channel=CHANNEL, include_all_metadata=True)
    [tombstone] = history["messages"]
    assert (tombstone["ts"], tombstone["subtype"], tombstone["text"]) == (
        card,
        "tombstone",
        "This message was deleted.",
    )
    assert "metadata" not in tombstone and "bot_id" not in tombstone
    thread = await client.conversations_replies(channel=CHANNEL, ts=card)
    assert [m["ts"] for m in thread["messages"]] == [card, reply]
    gone = await slack_error(client.chat_delete(channel=CHANNEL, ts=card))
    assert gone.response["error"] == "message_not_found"
    await client.chat_delete(channel=CHANNEL, ts=reply)  # the last reply takes it along
    assert sink.channels[CHANNEL] == []


async def test_the_bot_deletes_and_edits_only_its_own_messages(
    client: AsyncWebClient, sink: SlackSink
) -> None:
    foreign = sink.plant(CHANNEL, "look-alike", metadata=META, **OTHER_APP)
    person = sink.plant(CHANNEL, "a person", user="U0ANN")
    for ts in (foreign.ts, person.ts):
        refused = await slack_error(client.chat_delete(channel=CHANNEL, ts=ts))
        assert refused.response["error"] == "cant_delete_message"
        unedited = await slack_error(client.chat_update(channel=CHANNEL, ts=ts, text="mine now"))
        assert unedited.response["error"] == "cant_update_message"
    assert [m.text for m in sink.channels[CHANNEL]] == ["look-alike", "a person"]


# ---- who posted ---------------------------------------------------------------------


async def test_messages_name_their_poster_and_planted_look_alikes_name_theirs(
    client: AsyncWebClient, sink: SlackSink
) -> None:
    me = (await client.auth_test()).data
    ours = await post(client, "ours", metadata=META)
    async with aiohttp.ClientSession() as http:
        body = {"channel": CHANNEL, "text": "theirs", "metadata": META, **OTHER_APP}
        async with http.post(sink.base_url + "/_sink/plant", json=body) as response:
            assert response.status == 200
            theirs = (await response.json())["ts"]
        async with http.post(sink.base_url + "/_sink/plant", json={"channel": CHANNEL}) as bad:
            assert bad.status == 400
    reply = sink.plant(CHANNEL, "a person's reply", user="U0ANN", thread_ts=ours)
    history = await client.conversations_history(channel=CHANNEL, include_all_metadata=True)
    posters = {m["ts"]: (m["user"], m.get("bot_id"), m["metadata"]) for m in history["messages"]}
    assert posters == {
        ours: (me["user_id"], me["bot_id"], META),
        theirs: ("U0OTHER", "B0OTHER", META),
    }
    thread = await client.conversations_replies(channel=CHANNEL, ts=ours)
    assert [(m["user"], "bot_id" in m) for m in thread["messages"]] == [
        ("U0BOT", True),
        ("U0ANN", False),
    ]
    assert thread["messages"][1]["ts"] == reply.ts


async def test_the_bot_identity_is_configurable() -> None:
    sink = SlackSink(token=TOKEN, bot_user_id="U0MINE", bot_id="B0MINE")
    runner, _ = await start_in_background(sink)
    try:
        client = AsyncWebClient(token=TOKEN, base_url=sink.api_url)
        me = await client.auth_test()
        posted = await client.chat_postMessage(channel=CHANNEL, text="x")
        assert (me["user_id"], me["bot_id"]) == ("U0MINE", "B0MINE")
        assert (posted["message"]["user"], posted["message"]["bot_id"]) == ("U0MINE", "B0MINE")
    finally:
        await runner.cleanup()


# ---- rate limits --------------------------------------------------------------------


async def test_rate_limits_are_off_by_default(client: AsyncWebClient, sink: SlackSink) -> None:
    ts = [await post(client) for _ in range(5)]
    for _ in range(5):
        await client.chat_update(channel=CHANNEL, ts=ts[0], text="again")
    assert sink.ratelimited == {}


async def test_one_post_per_second_per_channel(
    client: AsyncWebClient, sink: SlackSink, clock: ManualClock
) -> None:
    sink.set_limits(RateLimits(enabled=True))
    await post(client)
    await post(client, channel="C0ELSE")  # another channel has its own budget
    clock.now += 0.5
    limited = await slack_error(client.chat_postMessage(channel=CHANNEL, text="too soon"))
    assert limited.response.status_code == 429
    assert limited.response.headers["Retry-After"] == "1"
    assert (limited.response["ok"], limited.response["error"]) == (False, "ratelimited")
    clock.now += 0.5
    await post(client, "in time")
    assert [m.text for m in sink.channels[CHANNEL]] == ["hello", "in time"]
    assert sink.ratelimited == {"chat.postMessage": 1}


async def test_chat_update_has_one_budget_for_the_whole_workspace(
    client: AsyncWebClient, sink: SlackSink, clock: ManualClock
) -> None:
    first, second = await post(client), await post(client, channel="C0ELSE")
    sink.set_limits(RateLimits(enabled=True, update_per_workspace=2))
    await client.chat_update(channel=CHANNEL, ts=first, text="a")
    await client.chat_update(channel="C0ELSE", ts=second, text="b")
    limited = await slack_error(client.chat_update(channel=CHANNEL, ts=first, text="c"))
    assert limited.response.status_code == 429 and limited.response["error"] == "ratelimited"
    clock.now += 1.0
    await client.chat_update(channel=CHANNEL, ts=first, text="c")
    assert [m.text for m in sink.top_level(CHANNEL)] == ["c"]
    assert (await stats(sink))["ratelimited"] == {"chat.update": 1}


async def test_limits_and_429_counters_through_the_control_routes(
    client: AsyncWebClient, sink: SlackSink
) -> None:
    sink.add_fault(SlackFault("ratelimit", method="chat.update", count=1))
    base = sink.base_url + "/_sink"
    async with aiohttp.ClientSession() as http:
        for bad in ({"post_per_channel": 0}, {"enabled": "yes"}, {"per_minute": 5}):
            async with http.post(base + "/limits", json=bad) as response:
                assert response.status == 400
        async with http.post(base + "/limits", json={"enabled": True, "post_per_channel": 2}) as on:
            assert (await on.json())["limits"] == {
                "enabled": True,
                "post_per_channel": 2,
                "update_per_workspace": 1,
            }
    ts = [await post(client), await post(client)]
    third = await slack_error(client.chat_postMessage(channel=CHANNEL, text="third"))
    assert third.response.status_code == 429
    faulted = await slack_error(client.chat_update(channel=CHANNEL, ts=ts[0], text="x"))
    assert faulted.response.status_code == 429
    counted = await stats(sink)
    assert counted["ratelimited"] == {"chat.postMessage": 1, "chat.update": 1}
    assert counted["calls"] == {"chat.postMessage": 3, "chat.update": 1}
    async with (
        aiohttp.ClientSession() as http,
        http.post(base + "/limits", json={"enabled": False}) as off,
    ):
        assert off.status == 200
    await post(client, "free again")


# ---- late completion ----------------------------------------------------------------


async def test_a_held_post_is_stored_late_after_its_client_gave_up() -> None:
    sink = SlackSink(token=TOKEN)  # real sleep: the client must really time out
    runner, _ = await start_in_background(sink)
    try:
        sink.add_fault(SlackFault("hang", method="chat.postMessage", seconds=0.6, count=1))
        impatient = AsyncWebClient(token=TOKEN, base_url=sink.api_url, timeout=0.2)
        with pytest.raises(asyncio.TimeoutError):
            await impatient.chat_postMessage(channel=CHANNEL, text="late", metadata=META)
        assert sink.held == 1 and CHANNEL not in sink.channels  # not there when it gave up
        assert (await stats(sink))["held"] == 1
        await sink.settle()
        [late] = sink.channels[CHANNEL]
        assert (late.text, late.metadata, sink.held) == ("late", META, 0)
        client = AsyncWebClient(token=TOKEN, base_url=sink.api_url)
        history = await client.conversations_history(channel=CHANNEL, include_all_metadata=True)
        assert [m["metadata"] for m in history["messages"]] == [META]
    finally:
        await runner.cleanup()
