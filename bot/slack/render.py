"""Events and snapshots → Slack messages (fallback text + Block Kit). Pure: no I/O, no clock.

The public rendering API: `render_card` and `render_status` (the job card, built in
`bot.slack.card`), `render_notification` (one thread reply per poll), `render_error`.
"""

from __future__ import annotations

from collections.abc import Sequence

from slack_sdk.models.blocks import Block

from bot.core.diff import headline_rank
from bot.core.events import Event, EventKind, is_alert
from bot.core.models import Snapshot
from bot.slack.card import (
    ACTION_MUTE,
    ACTION_REFRESH,
    ACTION_UNSUBSCRIBE,
    MAX_KEY,
    MAX_NAME,
    Message,
    clip,
    code,
    context,
    fold,
    perf,
    plural,
    render_card,
    render_status,
    section,
    status_parts,
    status_text,
    target_text,
    to_message,
)
from bot.slack.command_text import escape_mrkdwn

__all__ = [
    "ACTION_MUTE",
    "ACTION_REFRESH",
    "ACTION_UNSUBSCRIBE",
    "Message",
    "escape_mrkdwn",
    "is_alert",
    "render_card",
    "render_error",
    "render_notification",
    "render_status",
]

NOTIFICATION_BUDGET = 2900  # the lines after the headline, in one section
MAX_REASON = 300


def render_notification(
    events: Sequence[Event], *, snapshot: Snapshot, mention: str | None = None
) -> Message:
    """One thread reply for all events of one poll: a headline, then a line per other event.

    `mention` (a Slack handle as Slack writes it) is put unchanged at the start of the
    text and of the first block, only when an event is an alert.
    """
    if not events:
        raise ValueError("render_notification needs at least one event")
    ordered = sorted(events, key=headline_rank)
    headline = headline_text(ordered[0], snapshot=snapshot)
    if mention and any(is_alert(e) for e in events):
        headline = f"{mention} {headline}"
    blocks: list[Block] = [section(headline)]
    others = [headline_text(e, snapshot=snapshot) for e in ordered[1:]]
    texts, shown = fold(others, budget=NOTIFICATION_BUDGET)
    blocks.extend(section(text) for text in texts)
    if shown < len(others):
        blocks.append(context(f"… and {plural(len(others) - shown, 'more update')}"))
    blocks.append(context(_job_summary(snapshot)))
    text = headline if not others else f"{headline} (and {plural(len(others), 'more update')})"
    return to_message(text, blocks)


def headline_text(event: Event, *, snapshot: Snapshot) -> str:
    """The line that tells one event, in mrkdwn with every foreign string escaped."""
    kind = event.kind
    if kind is EventKind.CHAMPION:
        return _champion(event, snapshot)
    if kind is EventKind.JOB_STATUS:
        emoji, label = status_parts(event.new_status or snapshot.status)
        was = f" (was {status_parts(event.old_status)[1]})" if event.old_status else ""
        return f"{emoji} Job {label}{was}"
    if kind is EventKind.NEW_BEST:
        return _new_best(event, snapshot)
    if kind is EventKind.ALGORITHM_STATUS:
        new = status_parts(event.new_status or "")[1]
        change = f"{status_parts(event.old_status)[1]} → {new}" if event.old_status else new
        return f"⚙️ {code(event.algorithm or '?', MAX_NAME)}: {change}"
    if kind is EventKind.UNREACHABLE:
        reason = f": {clip(event.reason, MAX_REASON)}" if event.reason else ""
        return f"🔌 MathFi cannot reach this job{reason}"
    if kind is EventKind.RECOVERED:
        return "✅ Reachable again"
    return f"👀 Watching {code(event.job_key)} ({status_text(snapshot.status)})"


def render_error(text: str, *, usage: str | None = None, reference: str | None = None) -> Message:
    """A command's error reply: what went wrong, how to use it, and a reference to quote."""
    message = f"⚠️ {escape_mrkdwn(text)}"
    blocks: list[Block] = [section(message)]
    if usage:
        blocks.append(section(f"*Usage:* {code(usage, 2900)}"))
    if reference:
        blocks.append(context(f"Reference: {code(reference)}"))
    return to_message(message, blocks)


def _champion(event: Event, snapshot: Snapshot) -> str:
    best = snapshot.best()
    algorithm = event.algorithm or (best.algorithm if best else None)
    value = event.performance
    if value is None:
        value = snapshot.achieved_performance
    if value is None and best is not None:
        value = best.latest_performance
    target = event.target_performance
    if target is None:
        target = snapshot.target_performance
    line = "🏆 Champion"
    if algorithm:
        line += f": {code(algorithm, MAX_NAME)}"
    line += f" reached {perf(value)}"
    if target is not None:
        line += f" (target {target_text(target)})"
    model_key = event.model_key or snapshot.model_key
    if model_key:
        line += f" — model {code(model_key)}"
    return line


def _new_best(event: Event, snapshot: Snapshot) -> str:
    best = snapshot.best()
    algorithm = event.algorithm or (best.algorithm if best else None)
    line = f"📈 New best {perf(event.performance)}"
    if algorithm:
        line += f" by {code(algorithm, MAX_NAME)}"
    if event.performance is not None and event.previous_performance is not None:
        delta = event.performance - event.previous_performance
        line += f" ({delta:+.4f})" if abs(delta) < 1e6 else f" ({delta:+.4g})"
    return line


def _job_summary(snapshot: Snapshot) -> str:
    best = snapshot.best()
    parts = [f"Job {code(snapshot.job_key, MAX_KEY)}", status_text(snapshot.status)]
    if best is not None:
        parts.append(f"best {perf(best.latest_performance)}")
    if snapshot.target_performance is not None:
        parts.append(f"target {target_text(snapshot.target_performance)}")
    return " · ".join(parts)
