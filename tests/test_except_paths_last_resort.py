"""The last-resort branches (issue #20: every `except` of bot/ runs at least once): what a
person or the operator gets when something this version did not foresee happens. Two are
met with real input (a forged Acknowledge value, a click whose payload lacks its value);
the others are the answer to a bug of our own, met by putting one in (monkeypatch), and an
operating system that cannot lock files at all (NFS without a lock daemon)."""

from __future__ import annotations

import errno
import fcntl
import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from bot.app.startup import InstanceLock
from bot.slack.card import ACTION_MUTE
from store import StoreUnavailable
from tests.conftest import TEAM, Env, sign
from tests.test_oncall import click, people
from tests.test_sender import best, drain, enqueue, note_ids, tick, watch

WENT_WRONG = "Something went wrong on our side"


def reference_logged(caplog: pytest.LogCaptureFixture, where: str) -> logging.LogRecord:
    (record,) = [r for r in caplog.records if r.getMessage().startswith(f"{where} failed")]
    assert record.exc_info is not None  # the traceback is in the log, under the reference
    return record


async def test_a_forged_acknowledge_value_gets_an_answer_and_a_logged_reference(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    people(env)
    with caplog.at_level(logging.ERROR):
        text = await click(env, "9" * 30, user="U0ALICE")  # too large for SQLite's integer
    assert WENT_WRONG in text and "nothing was changed" in text
    reference_logged(caplog, "acknowledge button")


async def test_a_card_click_without_its_value_gets_an_answer(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    url = env.sink.new_response_url()
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM, "domain": "demo"},
        "user": {"id": "U0ALICE", "team_id": TEAM},
        "api_app_id": "A0TEST",
        "channel": {"id": "C0TEST", "name": "test"},
        "trigger_id": "1.2.3",
        "response_url": url,
        "actions": [{"action_id": ACTION_MUTE, "block_id": "b", "type": "button"}],
    }
    body = urlencode({"payload": json.dumps(payload)})
    with caplog.at_level(logging.ERROR):
        async with env.http.post(
            f"{env.base_url}/slack/events", data=body.encode(), headers=sign(body)
        ) as response:
            assert response.status == 200
        answer = await env.reply(url)
    assert WENT_WRONG in answer["text"] and answer["response_type"] == "ephemeral"
    reference_logged(caplog, "card button")


async def test_a_bug_in_a_command_is_answered_not_left_at_working_on_it(
    env: Env, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def bug(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr("bot.slack.commands.listeners.run_local", bug)
    with caplog.at_level(logging.ERROR):
        status, ack, url = await env.command("list")
    assert status == 200
    text = str(ack.get("text") if isinstance(ack, dict) and ack.get("text") else "")
    if WENT_WRONG not in text:  # answered on the response_url when the ack went first
        text = str((await env.reply(url))["text"])
    assert WENT_WRONG in text
    reference_logged(caplog, "/mathfi listsubs")
    errors = env.service.metrics.commands.labels(command="listsubs", outcome="error")
    assert errors._value.get() == 1


async def test_a_bug_in_one_delivery_leaves_the_others_and_the_loop_going(
    env: Env, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken, fine = await watch(env, "C1"), await watch(env, "C2")
    await drain(env)
    delivery = env.service.sender._rows
    real = delivery.deliver

    async def deliver(row: Any) -> None:
        if row.channel_id == "C1":
            raise RuntimeError("a bug of ours")
        await real(row)

    monkeypatch.setattr(delivery, "deliver", deliver)
    env.clock.advance(1.5)
    await enqueue(env, "C1", best(broken, 0.75))
    row = await enqueue(env, "C2", best(fine, 0.75))
    with caplog.at_level(logging.ERROR, logger="bot.slack.sender"):
        await tick(env)
    (failed,) = [r for r in caplog.records if r.name == "bot.slack.sender"]
    assert failed.getMessage() == "delivery to C1 failed unexpectedly"
    assert failed.exc_info is not None
    assert note_ids(env, "C2") == [row]
    monkeypatch.undo()  # the bug fixed: the row that waited goes, once
    env.clock.advance(60)
    await tick(env)
    assert len(note_ids(env, "C1")) == 1


def test_a_filesystem_that_cannot_lock_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    lock = InstanceLock(tmp_path / "bot.db")
    with pytest.raises(StoreUnavailable, match=r"cannot lock .*: No locks available"):
        lock.try_acquire()
    assert not lock.held
