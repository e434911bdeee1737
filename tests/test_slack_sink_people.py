"""The Slack sink's people: users.info, user groups, IMs with the bot, App Home views."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from slack_sdk.web.async_client import AsyncWebClient

from simulator.slack import SinkUser, SlackSink, start_in_background
from tests.sink_kit import TOKEN, ManualClock, post, slack_error

HOME = {"type": "home", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]}


@pytest.fixture
async def sink() -> AsyncIterator[SlackSink]:
    sink = SlackSink(token=TOKEN, clock=ManualClock(1_700_000_000.0))
    for user in (
        SinkUser("U0ANN", name="ann"),
        SinkUser("U0GUEST", "guest"),
        SinkUser("U0SOLO", "single_channel_guest"),
        SinkUser("U0HELPER", "bot", bot_id="B0HELPER"),
        SinkUser("U0GONE", "deleted"),
    ):
        sink.add_user(user)
    runner, _ = await start_in_background(sink)
    yield sink
    await runner.cleanup()


@pytest.fixture
def client(sink: SlackSink) -> AsyncWebClient:
    return AsyncWebClient(token=TOKEN, base_url=sink.api_url)


async def test_users_info_tells_members_guests_bots_and_deleted_users_apart(
    client: AsyncWebClient,
) -> None:
    seen = {}
    for user_id in ("U0ANN", "U0GUEST", "U0SOLO", "U0HELPER", "U0GONE", "U0BOT"):
        seen[user_id] = (await client.users_info(user=user_id))["user"]
    ann = seen["U0ANN"]
    assert (ann["id"], ann["name"], ann["team_id"], ann["deleted"]) == (
        "U0ANN",
        "ann",
        "T0DEMO",
        False,
    )
    flags = {
        user_id: (u.get("is_restricted"), u.get("is_ultra_restricted"), u["is_bot"], u["deleted"])
        for user_id, u in seen.items()
    }
    assert flags == {
        "U0ANN": (False, False, False, False),
        "U0GUEST": (True, False, False, False),
        "U0SOLO": (True, True, False, False),
        "U0HELPER": (False, False, True, False),
        "U0GONE": (None, None, False, True),  # Slack leaves the role flags out
        "U0BOT": (False, False, True, False),  # the sink's own bot user is in the directory
    }
    assert seen["U0HELPER"]["profile"]["bot_id"] == "B0HELPER"
    assert seen["U0BOT"]["profile"]["bot_id"] == "B0BOT"
    unknown = await slack_error(client.users_info(user="U0NOBODY"))
    assert (unknown.response.status_code, unknown.response["error"]) == (200, "user_not_found")


async def test_usergroup_members_and_unknown_group(client: AsyncWebClient, sink: SlackSink) -> None:
    sink.add_usergroup("S0ONCALL", ["U0ANN", "U0GUEST"])
    listed = await client.usergroups_users_list(usergroup="S0ONCALL")
    assert listed["users"] == ["U0ANN", "U0GUEST"]
    unknown = await slack_error(client.usergroups_users_list(usergroup="S0NOPE"))
    assert unknown.response["error"] == "no_such_subteam"  # Slack's code for it
    with pytest.raises(ValueError):
        sink.add_usergroup("U0ANN", [])


async def test_conversations_open_gives_each_person_one_stable_im(client: AsyncWebClient) -> None:
    first = await client.conversations_open(users="U0ANN")
    again = await client.conversations_open(users="U0ANN", return_im=True)
    other = await client.conversations_open(users="U0GUEST")
    channel = first["channel"]["id"]
    assert channel.startswith("D") and "already_open" not in first.data
    assert again["channel"]["id"] == channel and again["already_open"] is True
    assert again["channel"]["is_im"] is True and again["channel"]["user"] == "U0ANN"
    assert other["channel"]["id"] not in (channel,) and other["channel"]["id"].startswith("D")
    resumed = await client.conversations_open(channel=channel)
    assert resumed["channel"]["id"] == channel
    group = await client.conversations_open(users="U0ANN,U0GUEST", return_im=True)
    assert group["channel"]["id"].startswith("G") and group["channel"]["is_mpim"] is True


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"users": "U0NOBODY"}, "user_not_found"),
        ({"users": "U0GONE"}, "user_disabled"),
        ({"users": ",".join(["U0ANN"] * 9)}, "too_many_users"),
        ({"users": " "}, "users_list_not_supplied"),
        ({"channel": "D0NEVER"}, "channel_not_found"),
    ],
)
async def test_conversations_open_refuses_what_slack_refuses(
    client: AsyncWebClient, kwargs: dict[str, str], error: str
) -> None:
    failure = await slack_error(client.conversations_open(**kwargs))
    assert failure.response["error"] == error


async def test_an_im_works_like_a_channel(client: AsyncWebClient, sink: SlackSink) -> None:
    im = (await client.conversations_open(users="U0ANN"))["channel"]["id"]
    card = await post(client, "card", channel=im)
    reply = await post(client, "reply", channel=im, thread_ts=card)
    await client.chat_update(channel=im, ts=card, text="card v2")
    history = await client.conversations_history(channel=im)
    assert [(m["ts"], m["text"]) for m in history["messages"]] == [(card, "card v2")]
    thread = await client.conversations_replies(channel=im, ts=card)
    assert [m["ts"] for m in thread["messages"]] == [card, reply]
    info = (await client.conversations_info(channel=im))["channel"]
    assert (info["is_im"], info["is_channel"], info["user"]) == (True, False, "U0ANN")
    assert [m.text for m in sink.top_level(im)] == ["card v2"]


async def test_posting_to_a_user_id_lands_in_their_im_and_unknown_ims_do_not_exist(
    client: AsyncWebClient, sink: SlackSink
) -> None:
    posted = await client.chat_postMessage(channel="U0GUEST", text="for you")
    assert posted["channel"] == sink.open_im("U0GUEST")
    never_opened = await slack_error(client.chat_postMessage(channel="D0SOMEONE", text="x"))
    assert never_opened.response["error"] == "channel_not_found"
    stranger = await slack_error(client.chat_postMessage(channel="U0NOBODY", text="x"))
    assert stranger.response["error"] == "channel_not_found"


async def test_views_publish_keeps_the_latest_home_view_per_user(
    client: AsyncWebClient, sink: SlackSink
) -> None:
    first = (await client.views_publish(user_id="U0ANN", view=HOME))["view"]
    assert first["type"] == "home" and first["blocks"] == HOME["blocks"]
    newer = {"type": "home", "blocks": [{"type": "divider"}], "private_metadata": "p1"}
    second = (
        await client.views_publish(user_id="U0ANN", view=json.dumps(newer), hash=first["hash"])
    )["view"]
    assert second["id"] == first["id"] and second["hash"] != first["hash"]
    assert sink.views["U0ANN"]["blocks"] == [{"type": "divider"}]
    assert sink.views["U0ANN"]["private_metadata"] == "p1"
    stale = await slack_error(client.views_publish(user_id="U0ANN", view=HOME, hash=first["hash"]))
    assert stale.response["error"] == "hash_conflict"
    assert sink.views["U0ANN"]["hash"] == second["hash"]
    async with aiohttp.ClientSession() as http, http.get(sink.base_url + "/_sink/views") as got:
        assert (await got.json())["views"]["U0ANN"]["id"] == first["id"]


@pytest.mark.parametrize(
    ("view", "error", "message"),
    [
        ({"type": "modal", "blocks": []}, "invalid_arguments", "/view/type"),
        (
            {"type": "home", "blocks": [{"type": "divider"}] * 101},
            "invalid_arguments",
            "no more than 100 items allowed [json-pointer:/view/blocks]",
        ),
        ({"type": "home", "blocks": [{"text": "no type"}]}, "invalid_arguments", "/view/blocks/0"),
        ("{not json", "invalid_arguments", None),
        (
            {"type": "home", "blocks": [{"type": "section", "text": {"text": "x" * 260_000}}]},
            "view_too_large",
            None,
        ),
    ],
)
async def test_views_publish_refuses_what_slack_refuses(
    client: AsyncWebClient, sink: SlackSink, view: object, error: str, message: str | None
) -> None:
    failure = await slack_error(client.views_publish(user_id="U0ANN", view=view))  # type: ignore[arg-type]
    assert failure.response["error"] == error
    if message is not None:
        [said] = failure.response["response_metadata"]["messages"]
        assert said.startswith("[ERROR]") and message in said
    assert sink.views == {}


async def test_views_publish_to_an_unknown_user(client: AsyncWebClient) -> None:
    failure = await slack_error(client.views_publish(user_id="U0NOBODY", view=HOME))
    assert failure.response["error"] == "user_not_found"


async def test_control_routes_fill_the_directory(client: AsyncWebClient, sink: SlackSink) -> None:
    base = sink.base_url + "/_sink"
    async with aiohttp.ClientSession() as http:
        users = {"users": [{"id": "U0NEW", "kind": "guest"}, {"id": "W0ENT"}]}
        async with http.post(base + "/users", json=users) as response:
            assert response.status == 200
        async with http.post(base + "/users", json={"id": "U0X", "kind": "admin"}) as response:
            assert response.status == 400
        async with http.post(base + "/usergroups", json={"S0NEW": ["U0NEW"]}) as response:
            assert response.status == 200
        async with http.post(base + "/usergroups", json={"S0BAD": "U0NEW"}) as response:
            assert response.status == 400
    assert (await client.users_info(user="U0NEW"))["user"]["is_restricted"] is True
    assert (await client.users_info(user="W0ENT"))["user"]["is_restricted"] is False
    assert (await client.usergroups_users_list(usergroup="S0NEW"))["users"] == ["U0NEW"]
