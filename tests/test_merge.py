"""`bot.slack.merge`: a job's final reply says, in one line, what its carried progress rows
said (issue #18), word for word; `claim` starts the attempt and takes the job's queued
progress only for a final row (issue #20: the module under mutation testing)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.core.diff import headline_kind
from bot.core.events import Event, EventKind
from bot.core.notification import Notification
from bot.slack.merge import MAX_LINE, carried_text, claim, with_carried
from bot.slack.text import Message
from store import AsyncStore, NewOutboxRow, OutboxRow


def note(*events: Event, channel: str = "C1", job: str = "J1", key: str = "k") -> Notification:
    return Notification(
        channel_id=channel,
        job_key=job,
        subscription_id=None,
        events=events,
        snapshot=None,
        headline=headline_kind(events),
        mention=None,
        dedupe_key=key,
    )


def best(value: float) -> Event:
    return Event(kind=EventKind.NEW_BEST, job_key="J1", algorithm="BSEV02", performance=value)


def algorithm(name: str | None, status: str | None) -> Event:
    return Event(
        kind=EventKind.ALGORITHM_STATUS,
        job_key="J1",
        algorithm=name,
        old_status="RUNNING",
        new_status=status,
    )


def job(status: str | None) -> Event:
    return Event(kind=EventKind.JOB_STATUS, job_key="J1", old_status="PENDING", new_status=status)


def test_the_line_names_each_part_in_order_once() -> None:
    carried = [
        note(best(0.8), algorithm("BSEV01", "FAILED")),
        note(job("RUNNING"), best(0.8), best(1234567.0)),
    ]
    assert carried_text(carried) == (
        "also: new best 0.8000, BSEV01 FAILED, RUNNING, new best 1.235e+06 (while queued)"
    )


@pytest.mark.parametrize(
    "events",
    [
        (Event(kind=EventKind.WATCH_STARTED, job_key="J1"),),
        (algorithm("BSEV01", None),),
        (job(None),),
        (Event(kind=EventKind.UNREACHABLE, job_key="J1", reason="404"),),
    ],
)
def test_events_without_progress_say_nothing(events: tuple[Event, ...]) -> None:
    assert carried_text([note(*events)]) is None
    message = Message(text="reply", blocks=[{"type": "divider"}])
    assert with_carried(message, [note(*events)]) is message
    assert carried_text([]) is None


def test_an_algorithm_without_a_name_and_long_names_are_clipped_to_40() -> None:
    events = (algorithm(None, "FAILED"), algorithm("A" * 50, "S" * 50), job("J" * 50))
    assert carried_text([note(*events)]) == (
        f"also: ? FAILED, {'A' * 39}… {'S' * 39}…, {'J' * 39}… (while queued)"
    )
    assert carried_text([note(algorithm("<b&>", "FAILED"))]) == (
        "also: &lt;b&amp;&gt; FAILED (while queued)"
    )


def test_a_long_line_is_cut_before_its_tail() -> None:
    carried = [note(best(0.5 + i / 10_000)) for i in range(60)]
    line = carried_text(carried)
    assert line is not None
    assert len(line) == MAX_LINE - 20 + len(" (while queued)")
    assert line.startswith("also: new best 0.5000, new best 0.5001, ")
    assert line.endswith("… (while queued)")


def test_the_reply_gets_the_line_as_its_last_block_and_in_its_text() -> None:
    carried = [note(best(0.8))]
    message = Message(text="BSEV01 FAILED", blocks=[{"type": "divider"}, {"type": "header"}])
    merged = with_carried(message, carried)
    line = "also: new best 0.8000 (while queued)"
    assert merged.text == f"BSEV01 FAILED ({line})"
    assert merged.blocks == [
        {"type": "divider"},
        {"type": "header"},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": line}]},
    ]


def test_the_merged_reply_keeps_to_slacks_limits() -> None:
    blocks = [{"type": "section", "n": i} for i in range(60)]
    merged = with_carried(Message(text="x" * 3000, blocks=blocks), [note(best(0.8))])
    assert merged.blocks[:49] == blocks[:49]
    assert len(merged.blocks) == 50 and merged.blocks[49]["type"] == "context"
    assert len(merged.text) == 3000 and merged.text.endswith("x…")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[AsyncStore]:
    opened = await AsyncStore.open(tmp_path / "bot.db", clock=lambda: 500.0)
    yield opened
    await opened.close()


async def queue(store: AsyncStore, *notes: Notification, payloads: dict[str, str]) -> None:
    rows = [
        NewOutboxRow(
            n.dedupe_key,
            n.channel_id,
            n.job_key,
            n.headline.value,
            payloads.get(n.dedupe_key, n.to_json()),
            priority=2 if n.headline in (EventKind.NEW_BEST, EventKind.JOB_STATUS) else 1,
        )
        for n in notes
    ]
    await store.enqueue(rows, now=900.0)


async def row(store: AsyncStore, key: str) -> OutboxRow:
    rows = await store.rows_in_state("pending") + await store.rows_in_state("sending")
    (found,) = [r for r in rows if r.dedupe_key == key]
    return found


async def test_a_final_row_claims_its_jobs_queued_progress(
    store: AsyncStore, caplog: pytest.LogCaptureFixture
) -> None:
    """The carried rows read as notifications, oldest first; one written before the
    payload's schema is filled in from its row; one that cannot be read is left out, and
    said why."""
    first, broken, legacy, second = (
        note(best(0.7), key="p1"),
        note(best(0.0), key="p2"),
        note(best(0.705), key="p3"),
        note(best(0.71), key="p4"),
    )
    final = note(job("FAILED"), key="end")
    old_payload = json.dumps({"version": 1, "mention": None, "events": [best(0.705).model_dump()]})
    payloads = {"p2": '{"events": []}', "p3": old_payload}
    await queue(store, first, broken, legacy, second, final, payloads=payloads)
    carrier = await row(store, "end")
    with caplog.at_level(logging.WARNING, logger="bot.slack.sender"):
        carried = await claim(store, carrier, final, now=1000.0)
    assert carried == [first, legacy, second]
    broken_id = (await row(store, "p2")).id
    assert [r.getMessage() for r in caplog.records] == [
        f"outbox row {broken_id} carried by a final reply cannot be read: "
        "outbox payload of a 'new_best' row has no events"
    ]
    claimed = await store.get_outbox_row(carrier.id)
    assert claimed is not None
    assert (claimed.state, claimed.attempts, claimed.call_started_at) == ("sending", 1, 1000.0)
    assert (await row(store, "p1")).carried_by == carrier.id


async def test_another_row_only_starts_its_attempt(store: AsyncStore) -> None:
    progress, running = note(best(0.7), key="p1"), note(job("RUNNING"), key="run")
    await queue(store, progress, running, payloads={})
    started = await row(store, "run")
    assert await claim(store, started, running, now=1000.0) == []
    claimed = await store.get_outbox_row(started.id)
    assert claimed is not None
    assert (claimed.state, claimed.attempts, claimed.call_started_at) == ("sending", 1, 1000.0)
    assert (await row(store, "p1")).carried_by is None
