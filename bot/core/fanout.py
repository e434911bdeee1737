"""Who hears what after one poll: the pure fan-out from a job's change to its subscriptions.

One shared poll feeds every channel watching the job; each subscription then hears its own
slice: the diff against its last-announced best with its own `--min-improvement`, through
its `--events` filter and its mute. The engine hands in `Recipient`s (the core knows
nothing of the store) and writes the `Notification`s it gets back to the outbox.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bot.core.broadcast import BroadcastMode
from bot.core.diff import (
    DiffOptions,
    diff,
    filter_for_subscription,
    headline_kind,
    job_recovered,
    job_unreachable,
)
from bot.core.events import Event, EventKind, EventsFilter
from bot.core.models import Snapshot
from bot.core.notification import Notification, dedupe_key, watch_dedupe_key


@dataclass(frozen=True, slots=True)
class Recipient:
    """What the fan-out needs of one subscription."""

    id: int
    channel_id: str
    events: EventsFilter
    min_improvement: float
    last_best: float | None  # best already announced to it; None: the previous snapshot's
    muted_until: float | None
    mention: str | None
    broadcast: BroadcastMode = BroadcastMode.FINAL  # `--broadcast`: which replies reach the channel


@dataclass(frozen=True, slots=True)
class Unreachable:
    """A poll that found nothing: MathFi has not reached the job for too long."""

    job_key: str
    reason: str


def fan_out(
    previous: Snapshot | None,
    current: Snapshot | Unreachable,
    subscriptions: Iterable[Recipient],
    now: float,
    *,
    version: int,
    recovered: bool = False,
    warnings: Sequence[Event] = (),
) -> list[Notification]:
    """What each subscription is told after one poll; subscriptions told nothing are left out.

    `current` is the snapshot the poll found (`previous` the one before it, None before
    the first; `version` the job version this poll writes; `recovered` when the job was
    unreachable until now), or `Unreachable` when the poll made the job unreachable
    (`version` the job version it stays at: nothing new was seen, nothing is diffed).
    `warnings`: the forecast's warning events of this poll (the job's, the same for every
    subscription; `bot.core.forecast_state.advance`), told after the diff's events and
    through the same filter and mute.
    """
    lost = isinstance(current, Unreachable)
    told = []
    for sub in subscriptions:
        events = _events(previous, current, sub, recovered=recovered)
        if not lost:
            events = [*events, *warnings]
        events = filter_for_subscription(
            events, events_filter=sub.events, muted_until=sub.muted_until, now=now
        )
        if not events:
            continue
        told.append(
            Notification(
                channel_id=sub.channel_id,
                job_key=current.job_key,
                subscription_id=sub.id,
                events=tuple(events),
                snapshot=None if isinstance(current, Unreachable) else current,
                headline=headline_kind(events),
                mention=sub.mention,
                broadcast=sub.broadcast,
                dedupe_key=dedupe_key(
                    current.job_key, sub.channel_id, version=version, unreachable=lost
                ),
            )
        )
    return told


def _events(
    previous: Snapshot | None,
    current: Snapshot | Unreachable,
    sub: Recipient,
    *,
    recovered: bool,
) -> list[Event]:
    if isinstance(current, Unreachable):
        return [job_unreachable(current.job_key, current.reason)]
    options = DiffOptions(min_improvement=sub.min_improvement, reference_best=sub.last_best)
    events = diff(previous, current, options)
    return [job_recovered(current.job_key), *events] if recovered else events


def watch_started(
    job_key: str,
    channel_id: str,
    *,
    mention: str | None,
    now: float,
    nonce: str,
) -> Notification:
    """The first card of a new (or renewed) subscription: the job card, drawn live."""
    return Notification(
        channel_id=channel_id,
        job_key=job_key,
        subscription_id=None,
        events=(Event(kind=EventKind.WATCH_STARTED, job_key=job_key),),
        snapshot=None,
        headline=EventKind.WATCH_STARTED,
        mention=mention,
        dedupe_key=watch_dedupe_key(job_key, channel_id, at=now, nonce=nonce),
    )
