"""bot.core.notification: the outbox payload, versioned, and the payloads queued before it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.core.events import ChangeAction, Event, EventKind
from bot.core.models import AlgorithmProgress, Snapshot
from bot.core.notification import (
    EVERY_JOB,
    SCHEMA_VERSION,
    Notification,
    dedupe_key,
    read_notification,
    subscription_changed,
    watch_dedupe_key,
)

KEY = "job-1"
K = EventKind
SNAPSHOT = Snapshot(
    job_key=KEY,
    status="FAILED",
    target_performance=0.9,
    algorithms=(AlgorithmProgress(algorithm="BSEV01", status="FAILED", latest_performance=0.8),),
)
FAILED = Event(kind=K.JOB_STATUS, job_key=KEY, old_status="RUNNING", new_status="FAILED")
BEST = Event(
    kind=K.NEW_BEST, job_key=KEY, algorithm="BSEV01", performance=0.8, previous_performance=0.7
)
ROW = {"channel_id": "C1", "job_key": KEY, "kind": "job_status", "dedupe_key": f"{KEY}:v3:C1"}


def notification(**changes: Any) -> Notification:
    fields: dict[str, Any] = {
        "channel_id": "C1",
        "job_key": KEY,
        "subscription_id": 12,
        "events": (FAILED, BEST),
        "snapshot": SNAPSHOT,
        "headline": K.JOB_STATUS,
        "mention": "<!here>",
        "dedupe_key": f"{KEY}:v3:C1",
    }
    return Notification(**(fields | changes))


@pytest.mark.parametrize(
    "original",
    [notification(), notification(snapshot=None, mention=None, subscription_id=None)],
    ids=["full", "sparse"],
)
def test_round_trip(original: Notification) -> None:
    payload = original.to_json()
    assert json.loads(payload)["schema_version"] == SCHEMA_VERSION == 1
    assert read_notification(payload, **ROW) == original


def test_the_row_does_not_override_a_versioned_payload() -> None:
    payload = notification().to_json()
    other = {"channel_id": "C9", "job_key": "job-9", "kind": "new_best", "dedupe_key": "x"}
    assert read_notification(payload, **other) == notification()


def legacy_poller_payload(
    events: list[Event], *, version: int, mention: str | None, snapshot: Snapshot | None
) -> str:
    """What `notification_payload` in bot/engine/poller.py wrote before this schema."""
    return json.dumps(
        {
            "version": version,
            "mention": mention,
            "events": [e.model_dump(mode="json", exclude_none=True) for e in events],
            "snapshot": snapshot.model_dump(mode="json") if snapshot is not None else None,
        },
        sort_keys=True,
    )


def test_reads_a_change_row_written_by_the_old_poller() -> None:
    payload = legacy_poller_payload([FAILED, BEST], version=3, mention="<!here>", snapshot=SNAPSHOT)
    assert read_notification(payload, **ROW) == notification(subscription_id=None)


def test_reads_an_unreachable_row_written_by_the_old_poller() -> None:
    down = Event(kind=K.UNREACHABLE, job_key=KEY, reason="HTTP 503")
    payload = legacy_poller_payload([down], version=3, mention=None, snapshot=None)
    row = ROW | {"kind": "unreachable", "dedupe_key": f"{KEY}:v3:unreachable:C1"}
    got = read_notification(payload, **row)
    assert (got.events, got.headline, got.snapshot, got.mention) == (
        (down,),
        K.UNREACHABLE,
        None,
        None,
    )
    assert got.dedupe_key == f"{KEY}:v3:unreachable:C1" and got.channel_id == "C1"


def test_reads_the_first_card_row_written_by_the_old_subscribe_command() -> None:
    row = ROW | {"kind": "watch_started", "dedupe_key": f"{KEY}:watch:C1:1.000000:ab12"}
    got = read_notification('{"events": []}', **row)
    assert got.events == (Event(kind=K.WATCH_STARTED, job_key=KEY),)
    assert got.headline is K.WATCH_STARTED and got.snapshot is None and got.mention is None


@pytest.mark.parametrize(
    ("payload", "kind", "problem"),
    [
        ("not json", "new_best", "^outbox payload is not JSON: "),
        ("[1, 2]", "new_best", "^outbox payload is not a JSON object$"),
        ("{}", "new_best", "no events"),  # only a first card may come without events
        ('{"events": []}', "job_status", "no events"),
        ('{"events": [{"kind": "exploded", "job_key": "j"}]}', "new_best", "kind"),
        (
            notification().to_json().replace('"schema_version":1', '"schema_version":2'),
            "",
            "schema",
        ),
        (
            notification().to_json().replace('"headline":"job_status"', '"headline":"new_best"'),
            "",
            "headline",
        ),
        (notification().to_json().replace('"events":[', '"surprise":1,"events":['), "", "surprise"),
    ],
    ids=[
        "bad json",
        "not an object",
        "empty",
        "no events",
        "bad event",
        "future schema",
        "wrong headline",
        "unknown field",
    ],
)
def test_refuses_what_is_no_notification(payload: str, kind: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        read_notification(payload, **(ROW | {"kind": kind}))


def test_dedupe_keys() -> None:
    assert dedupe_key(KEY, "C1", version=5) == f"{KEY}:v5:C1"
    assert dedupe_key(KEY, "C1", version=5, unreachable=True) == f"{KEY}:v5:unreachable:C1"
    assert watch_dedupe_key(KEY, "C1", at=12.5, nonce="ff") == f"{KEY}:watch:C1:12.500000:ff"


def test_the_payload_is_compact_sorted_json_without_empty_event_fields() -> None:
    payload = notification().to_json()
    data = json.loads(payload)
    assert payload == json.dumps(data, sort_keys=True, separators=(",", ":"))
    assert data["events"] == [
        {"kind": "job_status", "job_key": KEY, "old_status": "RUNNING", "new_status": "FAILED"},
        {
            "kind": "new_best",
            "job_key": KEY,
            "algorithm": "BSEV01",
            "performance": 0.8,
            "previous_performance": 0.7,
        },
    ]
    # The notification's own empty fields are kept: the reader needs them all.
    sparse = json.loads(notification(snapshot=None, mention=None).to_json())
    assert (sparse["snapshot"], sparse["mention"]) == (None, None)


ALICE = "U0ALICE"
MUTED = Event(
    kind=K.SUBSCRIPTION_CHANGED,
    job_key=KEY,
    actor=ALICE,
    action=ChangeAction.MUTED,
    duration=3600.0,
)


def test_a_subscription_change_is_one_line_for_one_channel() -> None:
    got = subscription_changed("C1", KEY, MUTED, now=12.5, nonce="ff")
    assert (got.channel_id, got.job_key, got.subscription_id) == ("C1", KEY, None)
    assert (got.events, got.headline, got.snapshot, got.mention) == (
        (MUTED,),
        K.SUBSCRIPTION_CHANGED,
        None,
        None,
    )
    assert got.dedupe_key == f"{KEY}:changed:C1:12.500000:ff"
    every = subscription_changed("C1", EVERY_JOB, MUTED, now=12.5, nonce="ff")
    assert every.dedupe_key == "*:changed:C1:12.500000:ff"


@pytest.mark.parametrize(
    "event",
    [
        MUTED.model_copy(update={"actor": None}),
        Event(kind=K.NEW_BEST, job_key=KEY, actor=ALICE, performance=0.8),
        Event(kind=K.JOB_STATUS, job_key=KEY),
    ],
    ids=["no actor", "another kind with an actor", "another kind without an actor"],
)
def test_a_subscription_change_needs_its_kind_and_an_actor(event: Event) -> None:
    message = "a subscription change needs a SUBSCRIPTION_CHANGED event with an actor"
    with pytest.raises(ValueError, match=f"^{message}$"):
        subscription_changed("C1", KEY, event, now=12.5, nonce="ff")
