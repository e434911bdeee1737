"""What one subscription is told after one poll, as the outbox stores it. Pure: no I/O.

A `Notification` is built by `bot.core.fanout`, written to the outbox as versioned JSON
(`to_json`) and read back by the sender (`read_notification`), which renders the reply
from it. Rows queued before this schema (no `schema_version`) are read too: a running
deployment may still hold them when it is upgraded.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bot.core.broadcast import BroadcastMode
from bot.core.diff import headline_kind
from bot.core.events import Event, EventKind
from bot.core.models import Snapshot

SCHEMA_VERSION: Literal[1] = 1


class Notification(BaseModel):
    """One reply (or, for WATCH_STARTED, the job card) owed to one channel."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    schema_version: Literal[1] = SCHEMA_VERSION
    channel_id: str = Field(min_length=1)
    job_key: str = Field(min_length=1)
    # None for the first card (written in the transaction that creates the subscription)
    # and for rows queued before this schema.
    subscription_id: int | None
    events: tuple[Event, ...] = Field(min_length=1)
    # The job as it was when the events were seen: the reply is drawn from it, not from
    # what the job looks like at send time. None: draw from the stored snapshot (the first
    # card, which shows the job live, and an UNREACHABLE, which saw nothing new).
    snapshot: Snapshot | None
    headline: EventKind
    mention: str | None  # put before the headline when an event is an alert
    # the subscription's `--broadcast` (`bot.core.broadcast`); rows queued before it: final
    broadcast: BroadcastMode = BroadcastMode.FINAL
    dedupe_key: str = Field(min_length=1)

    @model_validator(mode="after")
    def _headline_heads(self) -> Notification:
        if self.headline is not headline_kind(self.events):
            raise ValueError(f"headline {self.headline} is not the events' headline")
        return self

    @property
    def new_best(self) -> float | None:
        """The new best performance this notification announces, if any."""
        for event in self.events:
            if event.kind is EventKind.NEW_BEST:
                return event.performance
        return None

    def to_json(self) -> str:
        """The outbox payload: compact, keys sorted, events without their empty fields."""
        data = self.model_dump(mode="json", exclude={"events"})
        data["events"] = [e.model_dump(mode="json", exclude_none=True) for e in self.events]
        return json.dumps(data, sort_keys=True, separators=(",", ":"))


def read_notification(
    payload: str, *, channel_id: str, job_key: str, kind: str, dedupe_key: str
) -> Notification:
    """The notification an outbox row holds; ValueError if it holds none.

    The row's own columns fill in what payloads written before `schema_version` existed
    did not carry: `{"version", "mention", "events", "snapshot"}` from the poller, and
    `{"events": []}` for the first card (whose one event is then WATCH_STARTED).
    """
    try:
        data: Any = json.loads(payload)
    except json.JSONDecodeError as err:
        raise ValueError(f"outbox payload is not JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError("outbox payload is not a JSON object")
    try:
        if "schema_version" in data:
            return Notification.model_validate(data)
        return _legacy(data, channel_id=channel_id, job_key=job_key, kind=kind, key=dedupe_key)
    except ValidationError as err:
        raise ValueError(f"outbox payload is not a notification: {err}") from err


def _legacy(
    data: dict[str, Any], *, channel_id: str, job_key: str, kind: str, key: str
) -> Notification:
    events = [Event.model_validate(e) for e in data.get("events") or []]
    if not events and kind == EventKind.WATCH_STARTED.value:
        events = [Event(kind=EventKind.WATCH_STARTED, job_key=job_key)]
    if not events:
        raise ValueError(f"outbox payload of a {kind!r} row has no events")
    snapshot = data.get("snapshot")
    return Notification(
        channel_id=channel_id,
        job_key=job_key,
        subscription_id=None,
        events=tuple(events),
        snapshot=Snapshot.model_validate(snapshot) if snapshot else None,
        headline=headline_kind(events),
        mention=data.get("mention"),
        dedupe_key=key,
    )


def dedupe_key(job_key: str, channel_id: str, *, version: int, unreachable: bool = False) -> str:
    """The outbox key of what a poll tells a channel: a poll written twice is queued once.

    `version` is the job's version the poll produced (a change) or found (unreachable)."""
    if unreachable:
        return f"{job_key}:v{version}:unreachable:{channel_id}"
    return f"{job_key}:v{version}:{channel_id}"


def watch_dedupe_key(job_key: str, channel_id: str, *, at: float, nonce: str) -> str:
    """The first card's key: unique per (re)subscription, so a channel that comes back gets
    a new card (`nonce` tells apart two subscriptions in the same microsecond)."""
    return f"{job_key}:watch:{channel_id}:{at:.6f}:{nonce}"


# The job key of a notification about every job of a channel (`unsubscribe all`): it is
# posted in the channel, not in a job's thread.
EVERY_JOB = "*"


def subscription_changed(
    channel_id: str, job_key: str, event: Event, *, now: float, nonce: str
) -> Notification:
    """The visible line that says who changed a channel's subscription (one channel, no
    fan-out): posted in the job's thread, or in the channel for EVERY_JOB."""
    if event.kind is not EventKind.SUBSCRIPTION_CHANGED or event.actor is None:
        raise ValueError("a subscription change needs a SUBSCRIPTION_CHANGED event with an actor")
    return _line(
        channel_id, job_key, event, dedupe_key=f"{job_key}:changed:{channel_id}:{now:.6f}:{nonce}"
    )


def action_taken(channel_id: str, job_key: str, event: Event, *, action_id: int) -> Notification:
    """The line in a job's thread that says who acted on it from Slack (one channel, no
    fan-out). Keyed by the action's row: one action is told once per channel."""
    if event.kind is not EventKind.ACTION_TAKEN or event.actor is None:
        raise ValueError("an action line needs an ACTION_TAKEN event with an actor")
    return _line(
        channel_id, job_key, event, dedupe_key=f"{job_key}:action:{action_id}:{channel_id}"
    )


def _line(channel_id: str, job_key: str, event: Event, *, dedupe_key: str) -> Notification:
    """One line of one event for one channel (no fan-out, no snapshot, no mention)."""
    return Notification(
        channel_id=channel_id,
        job_key=job_key,
        subscription_id=None,
        events=(event,),
        snapshot=None,
        headline=event.kind,
        mention=None,
        dedupe_key=dedupe_key,
    )
