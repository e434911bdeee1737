"""Replies to commands (ephemeral): subscribe confirmation, `list`, mute. Pure."""

from __future__ import annotations

from collections.abc import Sequence

from slack_sdk.models.blocks import Block

from bot.core.models import Snapshot
from bot.errors import MathFiAuthError, MathFiError, MathFiRequestError, TrainingJobNotFound
from bot.slack.command_text import format_duration
from bot.slack.render import render_error
from bot.slack.text import (
    Message,
    clip,
    code,
    context,
    cut,
    fold,
    perf,
    plural,
    section,
    status_text,
    to_message,
)
from bot.slack.text import here as here  # how replies name the place (commands use it)
from store import Alert, Subscription, SubscriptionLimitReached, SubscriptionView

LIST_BUDGET = 11000  # Slack refuses messages whose blocks total much more (msg_blocks_too_long)


def plain(text: str) -> Message:
    return Message(text=text, blocks=[])


def _options(sub: Subscription) -> str:
    parts = [
        f"min +{sub.min_improvement:g}",
        f"events: {sub.events}",
        f"broadcast: {sub.broadcast}",
    ]
    if sub.mention:
        parts.append(f"alerts {sub.mention}")
    return ", ".join(parts)


def subscribed(sub: Subscription, snapshot: Snapshot, *, created: bool, command: str) -> Message:
    place = here(sub.channel_id)
    best = snapshot.best()
    state = f"{status_text(snapshot.status)}"
    if best is not None:
        state += f", best {perf(best.latest_performance)} ({clip(best.algorithm, 60)})"
    if snapshot.target_performance is not None:
        state += f" of target {perf(snapshot.target_performance)}"
    if created:
        head = f"👀 Now watching {code(sub.job_key)} in {place}: {state}."
        tail = f"The job card is posted in {place}; updates go to its thread."
    else:
        head = f"{here(sub.channel_id, start=True)} already watches {code(sub.job_key)}: {state}."
        tail = "Options updated."
    if snapshot.terminal:
        tail += " The job has finished, so there will be no further updates."
    stop = f"`{command} unsubscribe {sub.job_key}`"
    text = f"{head}\n{tail}\nOptions: {_options(sub)}. Stop with {stop}."
    return to_message(text, [section(text)])


def subscription_list(
    views: Sequence[SubscriptionView],
    *,
    now: float,
    command: str,
    page: int = 1,
    alerts: Sequence[Alert] = (),
    note: str | None = None,
    channel_id: str = "",
) -> Message:
    """One page of the channel's subscriptions: as many as fit in one message (LIST_BUDGET),
    the next ones on `list 2`, `list 3`, …; each page says where the rest are. Jobs with
    an unacknowledged on-call alert (`alerts`) come first, and say so. `note` (the
    channel's digest setting) ends every page. `channel_id` names the place (`here`)."""
    message = _subscription_list(
        views, now=now, command=command, page=page, alerts=alerts, place=here(channel_id)
    )
    if note is None:
        return message
    text = f"{cut(message.text, 2900 - len(note))}\n{note}"  # the note is never cut off
    return Message(text=text, blocks=[*message.blocks, context(note).to_dict()])


def _subscription_list(
    views: Sequence[SubscriptionView],
    *,
    now: float,
    command: str,
    page: int,
    alerts: Sequence[Alert],
    place: str,
) -> Message:
    capital = place[:1].upper() + place[1:]
    notes = _alert_notes(alerts, now=now)
    views = sorted(views, key=lambda v: list(notes).index(v.subscription.job_key)
                   if v.subscription.job_key in notes else len(notes))  # fmt: skip
    if not views:
        text = f"{capital} watches no training job. Start with `{command} subscribe <key>`."
        return to_message(text, [section(text)])
    pages = _pages(_list_lines(views, now=now, command=command, notes=notes))
    if page > len(pages):
        text = (
            f"There is no page {page}: {place}'s {len(views)} subscription(s) fit on "
            f"{plural(len(pages), 'page')}. See `{command} list`."
        )
        return to_message(text, [section(text)])
    chunks, first, count = pages[page - 1]
    head = f"{capital} watches {len(views)} training job(s):"
    if len(pages) > 1:
        head = (
            f"{capital} watches {len(views)} training job(s); page {page} of {len(pages)} "
            f"(#{first + 1}–#{first + count}):"
        )
    blocks: list[Block] = [section(head), *(section(chunk) for chunk in chunks)]
    after = len(views) - first - count
    if after:
        blocks.append(context(f"… and {after} more: `{command} list {page + 1}`"))
    elif page > 1:
        blocks.append(context(f"End of the list. The first page: `{command} list`"))
    return to_message(head + "\n" + "\n".join(chunks), blocks)


def _alert_notes(alerts: Sequence[Alert], *, now: float) -> dict[str, str]:
    """Job key -> what its oldest open alert says, oldest alert first."""
    notes: dict[str, str] = {}
    for alert in alerts:
        notes.setdefault(alert.job_key, _alert_note(alert, now=now))
    return notes


def _alert_note(alert: Alert, *, now: float) -> str:
    paged = f", paged again {alert.pages}×" if alert.pages else ""
    waited = format_duration(max(int(now - alert.raised_at), 1))
    return f"🚨 {alert.status or 'alert'} not acknowledged for {waited}{paged}"


def _pages(lines: Sequence[str]) -> list[tuple[list[str], int, int]]:
    """Split the lines into pages of at most LIST_BUDGET characters: (texts, first, count)."""
    pages: list[tuple[list[str], int, int]] = []
    first = 0
    while first < len(lines):
        chunks, shown = fold(lines[first:], budget=LIST_BUDGET)
        shown = max(shown, 1)  # never stuck: fold cuts a line to 3000 characters
        if not chunks:
            chunks = [lines[first][:LIST_BUDGET]]
        pages.append((chunks, first, shown))
        first += shown
    return pages


def _list_lines(
    views: Sequence[SubscriptionView], *, now: float, command: str, notes: dict[str, str]
) -> list[str]:
    lines = []
    for view in views:
        sub = view.subscription
        line = f"• {code(sub.job_key)} {status_text(view.status or 'UNKNOWN')}"
        if sub.job_key in notes:
            line = f"{line} · {notes[sub.job_key]}"
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
            line += f" · 🔕 muted for {format_duration(max(sub.muted_until - now, 1))}"
        line += f"\n    {_options(sub)}"
        lines.append(line)
    return lines


def muted(key: str, *, until: float | None, now: float) -> Message:
    if until is None:
        return plain(f"🔔 Progress updates for `{key}` are on again.")
    duration = format_duration(max(until - now, 1))
    return plain(
        f"🔕 Progress updates for `{key}` are muted for {duration}. "
        "Final statuses (COMPLETED, FAILED, …) still get through."
    )


def mathfi_problem(err: MathFiError, key: str) -> str:
    if isinstance(err, TrainingJobNotFound):
        return f"MathFi has no training job `{key}`. Check the key on the MathFi dashboard."
    if isinstance(err, MathFiAuthError):
        return (
            "MathFi refused the bot's credentials, so nothing was done. "
            "Ask whoever runs the bot to check MATHFI_USERNAME and MATHFI_PASSWORD."
        )
    if isinstance(err, MathFiRequestError):  # it answered: not "cannot be reached"
        return f"MathFi refused the request about `{key}` (HTTP {err.status}), so nothing was done."
    return "MathFi cannot be reached right now, so nothing was done. Try again in a minute."


def limit_reached(err: SubscriptionLimitReached, *, command: str, channel_id: str = "") -> Message:
    """Which limit refused the subscription, and what to do about it."""
    if err.scope == "channel":
        return render_error(
            f"{here(channel_id, start=True)} already watches {err.limit} jobs, the most allowed "
            f"(SUBSCRIPTION_LIMIT); nothing was changed. Unsubscribe from finished ones "
            f"first (`{command} list`)."
        )
    return render_error(
        f"The bot already has {err.limit} subscriptions across all channels, the most "
        "allowed (MAX_SUBSCRIPTIONS); nothing was changed. Unsubscribe from finished jobs, "
        "or ask whoever runs the bot to raise MAX_SUBSCRIPTIONS."
    )
