"""Rendering of actions (bot/slack/actions_render.py): tables of inputs and exact outputs,
and Block Kit limits with hostile inputs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.core.models import Dataset
from bot.slack.actions import ActionKind, ActionOutcome, Result, StartParameters
from bot.slack.actions_render import (
    ACTION_CANCEL_JOB,
    ACTION_CONFIRM_CANCEL,
    ACTION_START_TRAINING,
    cancel_button,
    cancelled_line,
    refused_line,
    render_cancel_confirmation,
    render_dataset_not_ready,
    render_datasets,
    render_outcome,
    render_train_confirmation,
    started_line,
    unknown_line,
    what_to_check,
)
from bot.slack.card import Message
from store import ActionRecord

DS = "feebb52a-f098-4e0e-b1eb-459d833e5aa4"
JOB = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
HOSTILE = "<!channel> *bold* & `tick` " + "x" * 3000


def dataset(
    name: str | None = "oilplantv4", status: str = "COMPLETED", created: str | None = None
) -> Dataset:
    return Dataset.model_validate(
        {"datasetKey": DS, "datasetName": name, "status": status, "createdOn": created}
    )


def params(**overrides: Any) -> StartParameters:
    values: dict[str, Any] = {"dataset_key": DS, "target": 0.85, "scaling_factor": 19}
    return StartParameters.model_validate(values | overrides)


def texts(message: Message) -> str:
    """Every text a person can see: blocks (as JSON) and the fallback."""
    return message.text + json.dumps(message.blocks, ensure_ascii=False)


def buttons(message: Message) -> list[dict[str, Any]]:
    return [e for b in message.blocks if b["type"] == "actions" for e in b["elements"]]


def within_limits(message: Message) -> None:
    assert len(message.blocks) <= 50 and len(message.text) <= 3000
    assert len(json.dumps(message.blocks, ensure_ascii=False)) < 12_000
    for block in message.blocks:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000
    for button in buttons(message):
        assert len(button["text"]["text"]) <= 75 and len(button["value"]) <= 2000
        if "confirm" in button:
            assert len(button["confirm"]["title"]["text"]) <= 100
            assert len(button["confirm"]["text"]["text"]) <= 300


def test_train_confirmation_names_the_dataset_the_parameters_and_carries_the_token() -> None:
    message = render_train_confirmation(
        dataset(), params(mention="<!subteam^S1|@ml>", events="failures"), token="tok-123"
    )
    first = message.blocks[0]["text"]["text"]
    assert first == (
        f"*Start a training* on dataset *oilplantv4* `{DS}`?\n"
        "Target performance *0.85* · scaling factor *19*\n"
        "Watched in this channel: events failures, alerts mention &lt;!subteam^S1|@ml&gt;"
    )
    (button,) = buttons(message)
    assert (button["action_id"], button["value"], button["style"]) == (
        ACTION_START_TRAINING, "tok-123", "primary",
    )  # fmt: skip
    assert button["text"]["text"] == "Start training"
    assert message.text == "Start a training on dataset oilplantv4?"
    within_limits(message)


def test_retrain_confirmation_says_which_job_it_follows() -> None:
    message = render_train_confirmation(
        dataset(name=None), params(target=0.75, retrain_of=JOB), token="t"
    )
    first = message.blocks[0]["text"]["text"]
    assert first.startswith(f"*Retrain* on dataset `{DS}`?\nTarget performance *0.75*")
    assert f"Follows job `{JOB}`" in first and "events all" in first


def test_a_hostile_dataset_name_is_escaped_and_cut() -> None:
    message = render_train_confirmation(dataset(name=HOSTILE), params(), token="t")
    seen = texts(message)
    assert "<!channel>" not in seen and "&lt;!channel&gt;" in seen
    within_limits(message)


@pytest.mark.parametrize("token", ["", "t" * 201])
def test_a_confirmation_token_must_fit_a_button_value(token: str) -> None:
    with pytest.raises(ValueError, match="confirmation token"):
        render_train_confirmation(dataset(), params(), token=token)


@pytest.mark.parametrize(
    ("status", "words"),
    [
        ("PENDING", "is still waiting for its data"),
        ("PROCESSING", "is still being prepared: try again in a few minutes"),
        ("FAILED", "failed to prepare"),
        ("ARCHIVED", "is ARCHIVED, not COMPLETED"),
        ("<b>", "is &lt;b&gt;, not COMPLETED"),
    ],
)
def test_a_dataset_that_is_not_ready_gets_a_clear_answer(status: str, words: str) -> None:
    message = render_dataset_not_ready(dataset(status=status), DS)
    assert message.text.startswith(f"⚠️ Dataset *oilplantv4* `{DS}` {words}")
    assert message.text.endswith("A training starts on a COMPLETED dataset.")


def test_cancel_confirmation_and_the_card_button_use_slacks_confirm_dialog() -> None:
    message = render_cancel_confirmation(JOB, status="RUNNING", token="tok-9")
    assert message.blocks[0]["text"]["text"] == (
        f"*Cancel* training job `{JOB}`? It is 🏃 RUNNING."
    )
    (button,) = buttons(message)
    assert (button["action_id"], button["value"], button["style"]) == (
        ACTION_CONFIRM_CANCEL, "tok-9", "danger",
    )  # fmt: skip
    confirm = button["confirm"]
    assert confirm["title"]["text"] == "Cancel this training?"
    assert confirm["confirm"]["text"] == "Cancel training"
    assert confirm["deny"]["text"] == "Keep it running"
    assert JOB in confirm["text"]["text"]
    within_limits(message)
    card = cancel_button("k" * 3000).to_dict()
    assert card["action_id"] == ACTION_CANCEL_JOB and len(card["value"]) == 2000
    assert len(card["confirm"]["text"]["text"]) <= 300


def test_datasets_are_listed_newest_first_with_name_key_status_and_a_next_page() -> None:
    page = [
        dataset("older", "COMPLETED", "2025-10-02T18:09:48Z"),
        dataset("newest", "PROCESSING", "2025-10-24T08:35:36Z"),
        dataset(None, "FAILED", None),
    ]
    message = render_datasets(page, page=1, per_page=3, total=7, command="/notify")
    assert message.blocks[0]["text"]["text"] == "*MathFi datasets* · page 1 of 3 (7 in all)"
    assert message.blocks[1]["text"]["text"].splitlines() == [
        f"• *newest* `{DS}` · ⚙️ PROCESSING · created 2025-10-24T08:35:36Z",
        f"• *older* `{DS}` · ✅ COMPLETED · created 2025-10-02T18:09:48Z",
        f"• *(no name)* `{DS}` · ❌ FAILED",
    ]
    assert message.blocks[-1]["elements"][0]["text"] == "More: `/notify datasets 2`"
    last = render_datasets(page, page=3, per_page=3, total=7)
    assert last.blocks[-1]["type"] == "section"  # no "more" on the last page


@pytest.mark.parametrize(
    ("total", "page", "text"),
    [(0, 1, "The MathFi account has no datasets."), (5, 9, "There is no page 9.")],
)
def test_an_empty_datasets_page(total: int, page: int, text: str) -> None:
    assert render_datasets([], page=page, per_page=10, total=total).text == text


def test_a_huge_datasets_page_of_hostile_names_stays_within_block_kit() -> None:
    page = [dataset(HOSTILE, "<x>", "2025-01-01T00:00:00Z") for _ in range(500)]
    message = render_datasets(page, page=1, per_page=500, total=500)
    within_limits(message)
    assert "<x>" not in texts(message)
    assert message.blocks[-1]["elements"][0]["text"].startswith("… and ")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (cancelled_line("U0ALICE"), "🚫 Cancelled by <@U0ALICE>"),
        (
            started_line("U0ALICE", params()),
            "▶️ Started by <@U0ALICE>: target 0.85, scaling factor 19",
        ),
        (
            started_line("U0BOB", params(target=0.8, retrain_of=JOB)),
            f"▶️ Started by <@U0BOB>: target 0.8, scaling factor 19, retraining `{JOB}`",
        ),
        (
            refused_line("U0GUEST", ActionKind.CANCEL, "Guests cannot <act>."),
            "🙅 <@U0GUEST> may not cancel this training: Guests cannot &lt;act&gt;.",
        ),
        (
            unknown_line("U0ALICE", ActionKind.RETRAIN, "the dashboard"),
            "❔ <@U0ALICE> asked to retrain this training; outcome unknown: check the dashboard",
        ),
    ],
)
def test_thread_lines(line: str, expected: str) -> None:
    assert line == expected


def record(state: str, *, kind: str = "start", answer: str | None = None) -> ActionRecord:
    return ActionRecord(
        id=1, idempotency_key="k", kind=kind, team_id="T1", channel_id="C1", user_id="U0ALICE",
        subject_key=DS, parameters="{}", state=state, answer=answer, result_job_key=JOB,
        created_at=1.0, updated_at=1.0,
    )  # fmt: skip


def outcome(
    result: Result, kind: ActionKind = ActionKind.START, state: str = "done", **extra: Any
) -> ActionOutcome:
    return ActionOutcome(result, kind, record(state, kind=kind.value, answer="x"), **extra)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            outcome(Result.DONE, job_key=JOB, status="PENDING"),
            f"▶️ Training `{JOB}` started (⏳ PENDING).",
        ),
        (outcome(Result.DONE, ActionKind.CANCEL, job_key=JOB), f"🚫 Job `{JOB}` is cancelled."),
        (
            outcome(Result.DUPLICATE, job_key=JOB),
            f"▶️ Already done: <@U0ALICE> started training `{JOB}`.",
        ),
        (
            outcome(Result.DUPLICATE, ActionKind.CANCEL, job_key=JOB),
            f"🚫 Already done: <@U0ALICE> cancelled job `{JOB}`.",
        ),
        (
            outcome(Result.DUPLICATE, state="requested"),
            "⏳ Already under way: <@U0ALICE> asked for this a moment ago.",
        ),
        (
            outcome(Result.DUPLICATE, state="unknown"),
            "❔ Already asked by <@U0ALICE>; the outcome is unknown: x.",
        ),
        (
            outcome(Result.DUPLICATE, state="failed"),
            "⚠️ This attempt already failed (x): ask again.",
        ),
        (
            outcome(Result.UNKNOWN, state="unknown", reason="MathFi did not say <why>."),
            "❔ Outcome unknown: MathFi did not say &lt;why&gt;.",
        ),
        (outcome(Result.FAILED, state="failed", reason="No & no."), "⚠️ No &amp; no."),
        (outcome(Result.REFUSED, state="refused", reason="Guests cannot."), "⚠️ Guests cannot."),
    ],
)
def test_the_answer_to_the_person_who_clicked(given: ActionOutcome, expected: str) -> None:
    message = render_outcome(given)
    assert message.text == expected
    assert message.blocks == [{"type": "section", "text": {"type": "mrkdwn", "text": expected}}]


def test_what_to_check_names_the_job_or_the_dataset() -> None:
    cancel = outcome(Result.UNKNOWN, ActionKind.CANCEL, "unknown")
    assert what_to_check(cancel, JOB) == (
        f"job {JOB}'s status on the MathFi dashboard before cancelling again"
    )
    start = outcome(Result.UNKNOWN, ActionKind.START, "unknown")
    assert what_to_check(start, DS).startswith(
        f"the MathFi dashboard for a training of dataset {DS}"
    )
