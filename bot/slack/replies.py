"""Replies to commands (ephemeral): subscribe confirmation, `list`, mute. Pure."""

from __future__ import annotations

from collections.abc import Sequence

from slack_sdk.models.blocks import Block

from bot.core.models import Snapshot
from bot.slack.card import (
    Message,
    clip,
    code,
    context,
    fold,
    perf,
    section,
    status_text,
    to_message,
)
from bot.slack.command_text import format_duration
from store import Subscription, SubscriptionView

LIST_BUDGET = 11000  # Slack refuses messages whose blocks total much more (msg_blocks_too_long)


def plain(text: str) -> Message:
    return Message(text=text, blocks=[])


def _options(sub: Subscription) -> str:
    parts = [f"min +{sub.min_improvement:g}", f"events: {sub.events}"]
    if sub.mention:
        parts.append(f"alerts {sub.mention}")
    return ", ".join(parts)


def subscribed(sub: Subscription, snapshot: Snapshot, *, created: bool, command: str) -> Message:
    best = snapshot.best()
    state = f"{status_text(snapshot.status)}"
    if best is not None:
        state += f", best {perf(best.latest_performance)} ({clip(best.algorithm, 60)})"
    if snapshot.target_performance is not None:
        state += f" of target {perf(snapshot.target_performance)}"
    if created:
        head = f"👀 Now watching {code(sub.job_key)} in this channel: {state}."
        tail = "The job card is posted in the channel; updates go to its thread."
    else:
        head = f"This channel already watches {code(sub.job_key)}: {state}."
        tail = "Options updated."
    if snapshot.terminal:
        tail += " The job has finished, so there will be no further updates."
    stop = f"`{command} unsubscribe {sub.job_key}`"
    text = f"{head}\n{tail}\nOptions: {_options(sub)}. Stop with {stop}."
    return to_message(text, [section(text)])


def subscription_list(views: Sequence[SubscriptionView], *, now: float, command: str) -> Message:
    if not views:
        text = f"This channel watches no training job. Start with `{command} subscribe <key>`."
        return to_message(text, [section(text)])
    lines = []
    for view in views:
        sub = view.subscription
        line = f"• {code(sub.job_key)} {status_text(view.status or 'UNKNOWN')}"
        if view.best_performance is not None:
            line += f", best {perf(view.best_performance)}"
            if view.best_algorithm:
                line += f" ({clip(view.best_algorithm, 60)})"
        if view.unreachable:
            line += " · 🔌 MathFi cannot reach it"
        if sub.disabled_reason:
            line += (
                f"\n    ⚠️ not posting: {clip(sub.disabled_reason, 300)}. "
                f"Fix that, then `{command} subscribe {sub.job_key}` again."
            )
        elif sub.muted_until and sub.muted_until > now:
            line += f" · 🔕 muted for {format_duration(int(sub.muted_until - now) or 1)}"
        line += f"\n    {_options(sub)}"
        lines.append(line)
    head = f"This channel watches {len(views)} training job(s):"
    chunks, shown = fold(lines, budget=LIST_BUDGET)
    hidden = len(lines) - shown
    blocks: list[Block] = [section(head), *(section(chunk) for chunk in chunks)]
    if hidden:
        blocks.append(context(f"… and {hidden} more"))
    return to_message(head + "\n" + "\n".join(lines[:shown]), blocks[:50])


def muted(key: str, *, until: float | None, now: float) -> Message:
    if until is None:
        return plain(f"🔔 Progress updates for `{key}` are on again.")
    duration = format_duration(max(int(until - now), 1))
    return plain(
        f"🔕 Progress updates for `{key}` are muted for {duration}. "
        "Final statuses (COMPLETED, FAILED, …) still get through."
    )
