"""Rendering of actions (bot/slack/actions_render.py): tables of inputs and exact outputs,
and Block Kit limits with hostile inputs."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from bot.core.events import Event, EventKind
from bot.core.models import Dataset, Snapshot
from bot.slack.actions import ActionKind, ActionOutcome, Result, StartParameters
from bot.slack.actions_render import (
    ACTION_CANCEL_JOB,
    ACTION_CONFIRM_CANCEL,
    ACTION_RETRAIN,
    ACTION_START_TRAINING,
    action_line,
    cancel_button,
    cancelled_line,
    card_buttons,
    origin_line,
    refused_line,
    render_action_line,
    render_cancel_confirmation,
    render_dataset_not_ready,
    render_dataset_unknown,
    render_datasets,
    render_outcome,
    render_train_confirmation,
    retrain_actions,
    started_line,
    unknown_line,
    what_to_check,
)
from bot.slack.text import Message
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
            started_line("U0ALICE", params(), "new-job"),
            "▶️ Started by <@U0ALICE>: job `new-job`, target 0.85, scaling factor 19",
        ),
        (
            started_line("U0BOB", params(target=0.8, retrain_of=JOB), "k" * 120),
            f"▶️ Started by <@U0BOB>: job `{'k' * 99}…`, target 0.8, scaling factor 19, "
            f"retraining `{JOB}`",
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
    assert what_to_check(start, DS) == (
        f"the MathFi dashboard for a training of dataset {DS} started just now, "
        "before starting another"
    )


# ---- exact texts at the cut limits, the thread lines of ACTION_TAKEN (issue #20) --------
def cut_to(char: str, limit: int) -> str:
    """What `clip` shows of a long run of `char`: limit - 1 of them and an ellipsis."""
    return char * (limit - 1) + "…"


def test_a_token_of_200_characters_fits_one_more_does_not() -> None:
    message = render_cancel_confirmation(JOB, status="RUNNING", token="t" * 200)
    assert buttons(message)[0]["value"] == "t" * 200
    with pytest.raises(ValueError, match=r"^a confirmation token is 1 to 200 characters$"):
        render_cancel_confirmation(JOB, status="RUNNING", token="t" * 201)


@pytest.mark.parametrize(
    ("status", "shown"),
    [
        ("PROCESSING", "⚙️ PROCESSING"),
        ("ARCHIVED", "❔ ARCHIVED"),
        ("S" * 50, "❔ " + cut_to("S", 40)),
    ],
)
def test_a_dataset_line_per_status(status: str, shown: str) -> None:
    message = render_datasets([dataset(status=status)], page=1, per_page=10, total=1)
    assert message.blocks[1]["text"]["text"] == f"• *oilplantv4* `{DS}` · {shown}"


def test_a_dataset_line_without_key_name_or_date_and_a_long_date() -> None:
    bare = Dataset.model_validate({"status": "COMPLETED"})
    dated = dataset(created="D" * 50)
    message = render_datasets([bare, dated], page=1, per_page=10, total=2)
    assert message.blocks[1]["text"]["text"] == (
        f"• *oilplantv4* `{DS}` · ✅ COMPLETED · created {cut_to('D', 40)}\n"
        "• *(no name)* `?` · ✅ COMPLETED"
    )


@pytest.mark.parametrize(
    ("per_page", "total", "page", "header", "more"),
    [
        (10, 21, 1, "page 1 of 3 (21 in all)", "More: `/mathfi datasets 2`"),
        (10, 20, 2, "page 2 of 2 (20 in all)", None),
        (1, 1, 1, "page 1 of 1 (1 in all)", None),
        (1, 2, 1, "page 1 of 2 (2 in all)", "More: `/mathfi datasets 2`"),
        (0, 5, 1, "page 1 of 1 (5 in all)", None),  # no page size: one page
        (10, 0, 1, "page 1 of 1 (0 in all)", None),  # a stale total: still one page
    ],
)
def test_datasets_pages(
    per_page: int, total: int, page: int, header: str, more: str | None
) -> None:
    message = render_datasets([dataset()], page=page, per_page=per_page, total=total)
    assert message.blocks[0]["text"]["text"] == f"*MathFi datasets* · {header}"
    notes = [e["text"] for b in message.blocks if b["type"] == "context" for e in b["elements"]]
    assert notes == ([more] if more else [])


def test_datasets_next_page_command_is_cut_at_200_and_notes_join() -> None:
    many = [dataset(name="n" * 60, created=f"2027-01-{day:02d}") for day in range(1, 29)] * 4
    command = "/" + "c" * 250
    message = render_datasets(
        many, page=1, per_page=len(many), total=10 * len(many), command=command
    )
    (note,) = [e["text"] for b in message.blocks if b["type"] == "context" for e in b["elements"]]
    hidden, more = note.split(" · ")
    shown = sum(t["text"]["text"].count("\n") + 1 for t in message.blocks[1:-1])
    assert hidden == f"… and {len(many) - shown} more on this page"
    assert more == "More: `" + ("/" + "c" * 250)[:199] + "…`"


def test_not_ready_of_an_unknown_status_cuts_it_at_40() -> None:
    message = render_dataset_not_ready(dataset(status="Q" * 50), DS)
    assert message.text == (
        f"⚠️ Dataset *oilplantv4* `{DS}` is {cut_to('Q', 40)}, not COMPLETED. A training "
        "starts on a COMPLETED dataset."
    )


def test_an_unknown_dataset() -> None:
    message = render_dataset_unknown("nope")
    text = "⚠️ MathFi has no dataset `nope`. `/mathfi datasets` lists the account's datasets."
    assert message.text == text
    assert message.blocks == [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]


def test_the_train_confirmation_word_for_word_at_its_limits() -> None:
    message = render_train_confirmation(
        dataset(name="N" * 150),
        params(events="e" * 30, mention="m" * 250),
        token="tok",
    )
    assert message.text == f"Start a training on dataset {cut_to('N', 100)}?"
    assert message.blocks[0]["text"]["text"].endswith(
        f"Watched in this channel: events {cut_to('e', 20)}, alerts mention {cut_to('m', 200)}"
    )
    assert message.blocks[2]["elements"][0]["text"] == (
        "Starting spends MathFi compute. The button starts it once, however often it is clicked."
    )


def test_the_cancel_confirmation_word_for_word() -> None:
    message = render_cancel_confirmation("k" * 150, status="RUNNING", token="tok")
    assert message.text == f"Cancel training job {cut_to('k', 100)}?"
    assert buttons(message)[0]["text"]["text"] == "Cancel training"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (outcome(Result.DONE, job_key=JOB), f"▶️ Training `{JOB}` started (⏳ PENDING)."),
        (
            outcome(Result.UNKNOWN, state="unknown", reason="r" * 700),
            f"❔ Outcome unknown: {cut_to('r', 600)}",
        ),
        (outcome(Result.FAILED, state="failed", reason="r" * 700), f"⚠️ {cut_to('r', 600)}"),
    ],
)
def test_an_answer_at_its_limits(given: ActionOutcome, expected: str) -> None:
    assert render_outcome(given).text == expected


@pytest.mark.parametrize(
    ("state", "answer", "expected"),
    [
        ("unknown", None, "❔ Already asked by <@{u}>; the outcome is unknown: ."),
        ("unknown", "a" * 250, "❔ Already asked by <@{u}>; the outcome is unknown: {a}."),
        ("failed", None, "⚠️ This attempt already failed (): ask again."),
        ("failed", "a" * 250, "⚠️ This attempt already failed ({a}): ask again."),
    ],
)
def test_a_duplicate_at_its_limits(state: str, answer: str | None, expected: str) -> None:
    row = dataclasses.replace(record(state, answer=answer), user_id="U" * 40)
    given = ActionOutcome(Result.DUPLICATE, ActionKind.START, row)
    text = render_outcome(given).text
    assert text == expected.format(u=cut_to("U", 30), a=cut_to("a", 200))


def taken(outcome_: Result | None, act: str | None = None, **fields: Any) -> Event:
    return Event.model_validate(
        {"kind": EventKind.ACTION_TAKEN, "job_key": JOB, "actor": "U0ALICE"}
        | {"outcome": outcome_, "act": act}
        | fields
    )


LONG_USER = "U" * 40
U30 = cut_to("U", 30)


@pytest.mark.parametrize(
    ("event", "line"),
    [
        (taken(Result.DONE, "cancel"), "🚫 Cancelled by <@U0ALICE>"),
        (
            taken(Result.DONE, "start", target_performance=0.85, scaling_factor=19),
            f"▶️ Started by <@U0ALICE>: job `{JOB}`, target 0.85, scaling factor 19",
        ),
        (taken(Result.DONE), f"▶️ Started by <@U0ALICE>: job `{JOB}`, target 0, scaling factor 0"),
        (
            taken(
                Result.DONE,
                "retrain",
                target_performance=0.8,
                scaling_factor=3,
                retrain_of="old-job",
            ),
            f"▶️ Started by <@U0ALICE>: job `{JOB}`, target 0.8, scaling factor 3, retraining "
            "`old-job`",
        ),
        (
            taken(Result.REFUSED, "cancel", reason="guests <cannot>"),
            "🙅 <@U0ALICE> may not cancel this training: guests &lt;cannot&gt;",
        ),
        (
            taken(Result.REFUSED, "start", reason="r" * 400),
            f"🙅 <@U0ALICE> may not start this training: {cut_to('r', 300)}",
        ),
        (
            taken(Result.UNKNOWN, "retrain", reason="c" * 400),
            f"❔ <@U0ALICE> asked to retrain this training; outcome unknown: check "
            f"{cut_to('c', 300)}",
        ),
        (
            taken(Result.FAILED, "start", reason="MathFi said no"),
            "⚠️ <@U0ALICE> asked to start this training; nothing was done: MathFi said no",
        ),
        (
            taken(Result.FAILED, "cancel"),
            "⚠️ <@U0ALICE> asked to cancel this training; nothing was done: ",
        ),
        (
            taken(Result.FAILED, "retrain", reason="f" * 400),
            f"⚠️ <@U0ALICE> asked to retrain this training; nothing was done: {cut_to('f', 300)}",
        ),
        (taken(Result.DONE, "cancel", actor=LONG_USER), f"🚫 Cancelled by <@{U30}>"),
        (
            taken(Result.DONE, "start", actor=LONG_USER),
            f"▶️ Started by <@{U30}>: job `{JOB}`, target 0, scaling factor 0",
        ),
        (
            taken(Result.REFUSED, "start", actor=LONG_USER),
            f"🙅 <@{U30}> may not start this training: ",
        ),
        (
            taken(Result.UNKNOWN, "start", actor=LONG_USER),
            f"❔ <@{U30}> asked to start this training; outcome unknown: check ",
        ),
        (
            taken(Result.FAILED, "start", actor=LONG_USER),
            f"⚠️ <@{U30}> asked to start this training; nothing was done: ",
        ),
    ],
)
def test_the_thread_line_of_each_action(event: Event, line: str) -> None:
    assert action_line(event) == line
    message = render_action_line(event)
    assert message.text == line
    assert message.blocks == [{"type": "context", "elements": [{"type": "mrkdwn", "text": line}]}]


def test_only_an_action_with_its_actor_has_a_line() -> None:
    with pytest.raises(ValueError, match=r"^not an action line: new_best$"):
        action_line(Event(kind=EventKind.NEW_BEST, job_key=JOB, actor="U0ALICE"))
    with pytest.raises(ValueError, match=r"^not an action line: action_taken$"):
        action_line(taken(Result.DONE, "cancel", actor=None))


def test_the_cards_origin_line() -> None:
    assert origin_line("U0ALICE", retrain_of=None) == "▶️ started by <@U0ALICE>"
    assert origin_line(LONG_USER, retrain_of="old-job") == (
        f"▶️ started by <@{U30}> · retrain of `old-job`"
    )


def test_the_cards_cancel_button() -> None:
    button = cancel_button(JOB).to_dict()
    assert (button["text"]["text"], button["style"], button["value"]) == (
        "Cancel training",
        "danger",
        JOB,
    )
    dialog = cancel_button("k" * 80).to_dict()["confirm"]
    assert dialog["style"] == "danger"
    assert dialog["text"]["text"] == (
        f"MathFi stops job `{'k' * 59}…` and its work is lost. This cannot be undone."
    )


@pytest.mark.parametrize(
    ("status", "shown"),
    [("PENDING", True), ("RUNNING", True), ("COMPLETED", False), ("FAILED", False)],
)
def test_the_card_offers_cancel_while_the_job_can_still_be_stopped(
    status: str, shown: bool
) -> None:
    got = [b.to_dict() for b in card_buttons(Snapshot(job_key=JOB, status=status), acting=True)]
    assert got == ([cancel_button(JOB).to_dict()] if shown else [])
    # ACTIONS=off: a button that could only refuse is not offered
    assert card_buttons(Snapshot(job_key=JOB, status=status), acting=False) == []


def status_event(new: str) -> Event:
    return Event(kind=EventKind.JOB_STATUS, job_key="j" * 2100, new_status=new)


@pytest.mark.parametrize(
    ("events", "offered"),
    [
        ([status_event("NOT_COMPLETED")], True),
        ([status_event("TIMED_OUT")], True),
        ([Event(kind=EventKind.NEW_BEST, job_key="j" * 2100), status_event("TIMED_OUT")], True),
        ([Event(kind=EventKind.AT_RISK, job_key="j" * 2100)], True),
        ([status_event("FAILED")], False),
        ([status_event("COMPLETED")], False),
        ([Event(kind=EventKind.ALGORITHM_STATUS, job_key="j", new_status="TIMED_OUT")], False),
        ([], False),
    ],
)
def test_a_retrain_button_after_a_miss_or_an_at_risk_warning(
    events: list[Event], offered: bool
) -> None:
    block = retrain_actions(events)
    if not offered:
        assert block is None
        return
    assert block is not None
    assert block.to_dict()["elements"] == [
        {
            "type": "button",
            "text": {"type": "plain_text", "text": "Retrain…", "emoji": True},
            "action_id": ACTION_RETRAIN,
            "value": "j" * 2000,
        }
    ]
