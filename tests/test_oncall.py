"""On-call (issue #17) through the real signed paths: the Acknowledge button of a FAILED
alert (a member, a guest, twice, after unsubscribe), re-pages on the manual clock (timing,
the cap, none after an ack or an unsubscribe, a mute does not stop them), `list`,
/healthz and /metrics."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from bot.engine.oncall import Oncall, OncallConfig
from bot.slack.oncall_render import ACTION_ACK
from simulator.slack import SinkMessage
from simulator.slack_directory import SinkUser
from store import NewOutboxRow, Store
from tests.conftest import TEAM, Env, sign
from tests.scripts import payload

ONCALL = "<!subteam^S0ONCALL|@oncall>"
CHANNEL = "C0TEST"
PERFS = {"BSEV01": 0.60, "BSEV02": 0.62, "BSIX01": 0.55, "BFIF01": 0.58}
FAILING = [
    payload("RUNNING", PERFS),
    payload("FAILED", PERFS, statuses={name: "FAILED" for name in PERFS}),
]


# ----------------------------------------------------------------------------- helpers
def people(env: Env) -> None:
    env.sink.add_user(SinkUser("U0ALICE", "member"))
    env.sink.add_user(SinkUser("U0BOB", "member"))
    env.sink.add_user(SinkUser("U0GUEST", "guest"))


def repage_every(env: Env, seconds: float, max_pages: int = 2) -> Oncall:
    """The service's on-call loop with a short ONCALL_REPAGE (ticked by the test)."""
    env.service.oncall = Oncall(
        env.service.store,
        config=OncallConfig(repage=seconds, max_pages=max_pages),
        metrics=env.service.metrics,
        clock=env.clock,
    )
    return env.service.oncall


async def failed_alert(env: Env, *, mention: str | None = ONCALL) -> tuple[str, SinkMessage]:
    """A job subscribed with `mention` that then FAILED; its key and the alert reply."""
    key = env.sim.script_job(FAILING)
    text = f"subscribe {key}" + (f" --mention {mention}" if mention else "")
    _, _, url = await env.command(text)
    await env.reply(url)
    await send(env)  # the card (a channel's posts are paced)
    env.sim.advance(key)
    await env.cycle(10)  # the poll that sees FAILED, and its reply
    await send(env, rounds=1)
    replies = thread(env, key)
    assert len(replies) == 1 and "FAILED" in replies[0].text, replies
    return key, replies[0]


def card(env: Env, key: str) -> SinkMessage:
    (top,) = [
        m
        for m in env.sink.top_level(CHANNEL)
        if m.thread_ts is None and (m.metadata or {}).get("event_payload", {}).get("job_key") == key
    ]
    return top


def thread(env: Env, key: str) -> list[SinkMessage]:
    return env.sink.replies(CHANNEL, card(env, key).ts)


def button_values(message: SinkMessage) -> list[str]:
    return [
        element["value"]
        for block in message.blocks
        if block["type"] == "actions"
        for element in block["elements"]
        if element.get("action_id") == ACTION_ACK
    ]


async def click(env: Env, value: str, *, user: str, channel: str = CHANNEL) -> str:
    """A signed click on the Acknowledge button; the ephemeral answer's text."""
    response_url = env.sink.new_response_url()
    body = urlencode(
        {
            "payload": json.dumps(
                {
                    "type": "block_actions",
                    "team": {"id": TEAM, "domain": "demo"},
                    "user": {"id": user, "team_id": TEAM},
                    "api_app_id": "A0TEST",
                    "channel": {"id": channel, "name": "test"},
                    "trigger_id": "1.2.3",
                    "response_url": response_url,
                    "container": {"type": "message", "message_ts": "1.0", "channel_id": channel},
                    "message": {"ts": "1.0", "text": "alert"},
                    "actions": [
                        {"action_id": ACTION_ACK, "block_id": "b", "value": value,
                         "type": "button", "action_ts": "1.1"}
                    ],
                }
            )
        }
    )  # fmt: skip
    async with env.http.post(
        f"{env.base_url}/slack/events", data=body.encode(), headers=sign(body)
    ) as response:
        assert response.status == 200
    answer: dict[str, Any] = await env.reply(response_url)
    assert answer["response_type"] == "ephemeral"
    return str(answer["text"])


async def send(env: Env, rounds: int = 3) -> None:
    for _ in range(rounds):
        await env.cycle(1.5)


def repages(env: Env, key: str) -> list[SinkMessage]:
    return [m for m in thread(env, key) if "Still not acknowledged" in m.text]


# ----------------------------------------------------------------------------- ack
async def test_a_member_acknowledges_the_alert_once(env: Env) -> None:
    people(env)
    key, alert = await failed_alert(env)
    assert alert.text.startswith(ONCALL)
    (value,) = button_values(alert)

    answer = await click(env, value, user="U0ALICE")
    assert "You acknowledged this alert" in answer
    await send(env)

    line = thread(env, key)[-1]
    assert line.text.startswith("✅ Acknowledged by <@U0ALICE> after")
    assert not line.reply_broadcast
    edited = thread(env, key)[0]
    assert (edited.ts, edited.edits) == (alert.ts, 1)
    assert button_values(edited) == []
    assert "Acknowledged by <@U0ALICE>" in json.dumps(edited.blocks)

    # a second click, by somebody else: told who did, nothing posted or edited
    again = await click(env, value, user="U0BOB")
    assert again.startswith("This alert was already acknowledged by <@U0ALICE>")
    await send(env)
    assert len(thread(env, key)) == 2 and thread(env, key)[0].edits == 1


async def test_a_guest_is_refused_and_the_alert_stays_open(env: Env) -> None:
    people(env)
    key, alert = await failed_alert(env)
    (value,) = button_values(alert)

    answer = await click(env, value, user="U0GUEST")
    assert answer.startswith("Guests cannot acknowledge alerts")
    await send(env)
    assert len(thread(env, key)) == 1 and thread(env, key)[0].edits == 0
    assert len(await env.service.store.open_alerts()) == 1


async def test_a_click_from_another_channel_acknowledges_nothing(env: Env) -> None:
    people(env)
    _, alert = await failed_alert(env)
    (value,) = button_values(alert)
    answer = await click(env, value, user="U0ALICE", channel="C0OTHER")
    assert "not known" in answer
    assert len(await env.service.store.open_alerts()) == 1


async def test_no_mention_no_alert_no_button(env: Env) -> None:
    _, alert = await failed_alert(env, mention=None)
    assert button_values(alert) == []
    assert await env.service.store.open_alerts() == []


# ----------------------------------------------------------------------------- re-page
async def test_repages_come_on_time_say_how_long_and_stop_at_the_cap(env: Env) -> None:
    oncall = repage_every(env, 60.0, max_pages=2)
    key, alert = await failed_alert(env)
    (opened,) = await env.service.store.open_alerts()
    sent = await env.service.store.get_outbox_row(opened.outbox_id)
    assert sent is not None and sent.slack_ts == alert.ts
    posted = sent.updated_at  # ONCALL_REPAGE counts from the alert's post

    env.clock.now = posted + 59
    assert await oncall.tick() == 0
    env.clock.now = posted + 60
    assert await oncall.tick() == 1
    assert await oncall.tick() == 0  # never doubled
    await send(env, rounds=1)
    (first,) = repages(env, key)
    assert first.text.startswith(ONCALL) and first.reply_broadcast
    assert f"job `{key}` ❌ FAILED" in first.text and "(page 1 of 2)" in first.text
    assert button_values(first) == button_values(alert)  # acknowledges the alert

    env.clock.now = posted + 119
    assert await oncall.tick() == 0
    env.clock.now = posted + 121
    assert await oncall.tick() == 1
    await send(env, rounds=1)
    second = repages(env, key)[-1]
    assert "(page 2 of 2)" in second.text
    assert "waited" not in second.text and " 2m" in second.text  # how long it has waited

    env.clock.advance(3600)
    assert await oncall.tick() == 0  # ONCALL_REPAGE_MAX reached
    assert len(repages(env, key)) == 2
    assert oncall.unacknowledged == 1  # still not acknowledged


async def test_no_repage_after_an_ack(env: Env) -> None:
    people(env)
    oncall = repage_every(env, 60.0)
    key, alert = await failed_alert(env)
    await click(env, button_values(alert)[0], user="U0ALICE")
    await send(env)
    env.clock.advance(600)
    assert await oncall.tick() == 0
    assert repages(env, key) == [] and oncall.unacknowledged == 0


async def test_no_repage_after_unsubscribe_and_a_late_ack_says_why(env: Env) -> None:
    people(env)
    oncall = repage_every(env, 60.0)
    key, alert = await failed_alert(env)
    env.clock.advance(60)
    assert await oncall.tick() == 1  # queued, not yet sent ...
    status, _, _ = await env.command(f"unsubscribe {key}")
    assert status == 200
    await send(env)
    assert repages(env, key) == []  # ... and dropped by the unsubscribe
    env.clock.advance(600)
    assert await oncall.tick() == 0 and oncall.unacknowledged == 0

    answer = await click(env, button_values(alert)[0], user="U0ALICE")
    assert "no longer watches" in answer and key in answer


async def test_a_mute_does_not_silence_the_pages(env: Env) -> None:
    oncall = repage_every(env, 60.0)
    key, _ = await failed_alert(env)
    status, _, _ = await env.command(f"mute {key} 2h")
    assert status == 200
    env.clock.advance(60)
    assert await oncall.tick() == 1
    await send(env)
    assert len(repages(env, key)) == 1


def test_a_page_is_queued_once_by_two_writers(tmp_path: Any) -> None:
    """Two loops that read the same due alert: the second `page_alert` queues nothing."""
    store = Store(tmp_path / "bot.db", clock=lambda: 1000.0)
    conn = store.db.conn
    with conn:
        conn.execute(
            "INSERT INTO jobs (job_key, snapshot_json, snapshot_hash, status, next_poll_at, "
            "updated_at) VALUES ('J1', '{}', 'h', 'FAILED', 0, 0)"
        )
        conn.execute(
            "INSERT INTO subscriptions (channel_id, job_key, created_at, min_improvement, "
            "events, active) VALUES ('C1', 'J1', 0, 0.005, 'all', 1)"
        )
        conn.execute(
            "INSERT INTO outbox (dedupe_key, channel_id, job_key, kind, payload, state, "
            "attempts, next_attempt_at, created_at, updated_at, slack_ts) "
            "VALUES ('a', 'C1', 'J1', 'job_status', '{}', 'sent', 1, 0, 0, 0, '1.1')"
        )
        conn.execute(
            "INSERT INTO alerts (outbox_id, job_key, channel_id, subscription_id, mention, "
            "status, raised_at, pages) VALUES (1, 'J1', 'C1', 1, '@x', 'FAILED', 0, 0)"
        )
    (due,) = store.due_alerts(now=100.0, repage=60.0, max_pages=3)
    row = NewOutboxRow(dedupe_key="p1", channel_id="C1", job_key="J1", kind="k", payload="{}")
    assert store.page_alert(due.id, pages=due.pages, next_page_at=160.0, row=row)
    assert not store.page_alert(due.id, pages=due.pages, next_page_at=160.0, row=row)
    assert store.outbox_counts()["pending"] == 1
    assert store.due_alerts(now=159.0, repage=60.0, max_pages=3) == []
    store.close()


# ----------------------------------------------------------------------------- visibility
async def test_list_health_and_metrics_show_the_unacknowledged_alerts(env: Env) -> None:
    people(env)
    quiet = env.sim.script_job([payload("RUNNING", PERFS)])
    _, _, url = await env.command(f"subscribe {quiet}")
    await env.reply(url)
    key, alert = await failed_alert(env)
    await env.service.oncall.tick()

    _, listing, _ = await env.command("list")
    text = json.dumps(listing)
    assert text.index(key) < text.index(quiet)
    assert "🚨 FAILED not acknowledged for" in listing["text"]
    async with env.http.get(f"{env.base_url}/healthz") as response:
        assert (await response.json())["unacknowledged_alerts"] == 1
    async with env.http.get(f"{env.base_url}/metrics") as response:
        assert "mathfi_unacknowledged_alerts 1.0" in await response.text()

    await click(env, button_values(alert)[0], user="U0ALICE")
    await env.service.oncall.tick()
    _, listing, _ = await env.command("list")
    assert "🚨" not in listing["text"]
    async with env.http.get(f"{env.base_url}/healthz") as response:
        assert (await response.json())["unacknowledged_alerts"] == 0
    async with env.http.get(f"{env.base_url}/metrics") as response:
        assert "mathfi_unacknowledged_alerts 0.0" in await response.text()
