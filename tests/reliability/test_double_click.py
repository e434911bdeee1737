"""A double click against the real process: two signed clicks on Start training (and on a
card's Cancel) sent at the same moment start (cancel) the training once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bot.slack.actions_render import ACTION_CANCEL_JOB, ACTION_START_TRAINING
from simulator.slack_directory import SinkUser
from tests.conftest import TEAM, sign
from tests.reliability.harness import Harness, eventually, running

CHANNEL = "C0REL"
START = ("POST", "/api/v1/training/datasets/{key}")
CANCEL = ("PATCH", "/api/v1/training/{key}/cancel")


async def click(h: Harness, action_id: str, value: str, trigger: str) -> dict[str, Any]:
    url = h.sink.new_response_url()
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM, "domain": "demo"},
        "user": {"id": "U0ALICE", "team_id": TEAM},
        "channel": {"id": CHANNEL, "name": "reliability"},
        "trigger_id": trigger,
        "response_url": url,
        "actions": [{"action_id": action_id, "value": value, "type": "button"}],
    }
    body = urlencode({"payload": json.dumps(payload)})
    endpoint = f"{h.service.base_url}/slack/events"
    async with h.http.post(
        endpoint, data=body.encode(), headers=sign(body, secret=h.signing_secret)
    ) as response:
        assert response.status == 200
    return await h.reply(url)


def start_token(answer: dict[str, Any]) -> str:
    for block in answer.get("blocks") or []:
        for element in block.get("elements") or []:
            if element.get("action_id") == ACTION_START_TRAINING:
                return str(element["value"])
    raise AssertionError(f"no Start training button in {answer}")


async def test_simultaneous_clicks_start_and_cancel_once(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        h.sink.add_user(SinkUser("U0ALICE"))
        dataset = h.sim.create_dataset("reliability")
        asked = await h.command(f"train {dataset}", channel=CHANNEL)
        token = start_token(await h.reply(asked.response_url))

        both = await asyncio.gather(
            *(click(h, ACTION_START_TRAINING, token, f"s.{i}") for i in (1, 2))
        )
        assert h.sim.stats.requests[START] == 1
        texts = sorted(str(answer["text"]) for answer in both)
        assert any("started" in text for text in texts), texts
        job = next(r["result_job_key"] for r in h.rows("SELECT result_job_key FROM actions"))

        await eventually(
            lambda: h.posted(CHANNEL, "mathfi_card"), timeout=10.0, what="the new job's card"
        )
        cancels = await asyncio.gather(
            *(click(h, ACTION_CANCEL_JOB, job, f"c.{i}") for i in (1, 2))
        )
        assert h.sim.stats.requests[CANCEL] == 1
        assert any("is cancelled" in str(answer["text"]) for answer in cancels), cancels
        rows = h.rows("SELECT kind, state FROM actions ORDER BY id")
        assert [(r["kind"], r["state"]) for r in rows] == [("start", "done"), ("cancel", "done")]
