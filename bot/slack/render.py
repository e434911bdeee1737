"""Events and snapshots → Slack messages (fallback text + Block Kit). Pure: no I/O, no clock.

The public rendering API: `render_card` and `render_status` (the job card, built in
`bot.slack.card`), `render_notification` (one thread reply per poll, or its short form
when the reply is broadcast to the channel), `render_error`.
"""

from __future__ import annotations

from collections.abc import Sequence

from slack_sdk.models.blocks import Block

from bot.core.diff import headline_rank
from bot.core.events import Event, EventKind, is_alert
from bot.core.models import Snapshot
from bot.slack.actions_render import retrain_actions
from bot.slack.card import (
    ACTION_MUTE,
    ACTION_REFRESH,
    ACTION_UNSUBSCRIBE,
    render_card,
    render_status,
)
from bot.slack.command_text import escape_mrkdwn
from bot.slack.text import (
    MAX_KEY,
    MAX_NAME,
    UNKNOWN_EMOJI,
    Message,
    clip,
    code,
    context,
    fold,
    perf,
    plural,
    section,
    status_parts,
    status_text,
    target_text,
    to_message,
)
from bot.slack.warning_text import missed, summary_notes, warning_line

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
SUMMARY_NAMES = 5  # algorithms named on a summary line before "… and N more"
BROADCAST_BUDGET = 600  # the one summary line of a broadcast reply

# What a group of algorithm status changes says: (emoji, verb, status shown in brackets).
# Statuses not listed here are shown as they are.
ALGORITHM_VERBS = {
    "FAILED": ("❌", "failed", False),
    "TIMED_OUT": ("⌛", "stopped", True),
    "NOT_COMPLETED": ("🛑", "stopped", True),
    "CANCELLED": ("🚫", "cancelled", False),
    "COMPLETED": ("🏁", "finished", False),
    "RUNNING": ("▶️", "started", False),
    "PENDING": ("⏳", "pending", False),
}
# Statuses whose summary names its algorithms (best first): the ones that ended.
_NAMED = frozenset({"FAILED", "TIMED_OUT", "NOT_COMPLETED", "CANCELLED", "COMPLETED"})


def render_notification(
    events: Sequence[Event],
    *,
    snapshot: Snapshot,
    mention: str | None = None,
    broadcast: bool = False,
    acting: bool = True,
) -> Message:
    """One thread reply for all events of one poll: a headline, then a line per other event,
    the algorithms' status changes summed up in one line per new status; a miss (or a
    warning of one) offers Retrain when acting from Slack is on (`acting`: ACTIONS is not
    `off`).

    `mention` (a Slack handle as Slack writes it) is put unchanged at the start of the
    text and of the first block, only when an event is an alert.

    `broadcast`: the reply is also shown in the channel (`reply_broadcast`), so it is short:
    the headline, one line that sums up the other events (no algorithm names; the card
    lists every algorithm) and the job's summary line, three lines in all.
    """
    if not events:
        raise ValueError("render_notification needs at least one event")
    lines = _lines(events, snapshot=snapshot, short=broadcast)
    headline = lines[0]
    if mention and any(is_alert(e) for e in events):
        headline = f"{mention} {headline}"
    others = lines[1:]
    blocks: list[Block] = [section(headline)]
    if broadcast:
        if others:
            blocks.append(section(_one_line(others, budget=BROADCAST_BUDGET)))
    else:
        texts, shown = fold(others, budget=NOTIFICATION_BUDGET)
        blocks.extend(section(text) for text in texts)
        if shown < len(others):
            blocks.append(context(f"… and {plural(len(others) - shown, 'more update')}"))
    retrain = retrain_actions(events) if acting else None  # a miss: offer MathFi's advice
    if retrain is not None:
        blocks.append(retrain)
    blocks.append(context(_job_summary(snapshot, events)))
    text = headline if not others else f"{headline} (and {plural(len(others), 'more update')})"
    return to_message(text, blocks)


def _lines(events: Sequence[Event], *, snapshot: Snapshot, short: bool) -> list[str]:
    """One line per event in headline order; algorithm status changes (which rank last)
    one line per new status, worst news first. A status that one algorithm changed to
    keeps the one-change wording."""
    ordered = sorted(events, key=headline_rank)
    lines = [
        headline_text(e, snapshot=snapshot)
        for e in ordered
        if e.kind is not EventKind.ALGORITHM_STATUS
    ]
    groups: dict[str, list[Event]] = {}
    for event in ordered:
        if event.kind is EventKind.ALGORITHM_STATUS:
            groups.setdefault(event.new_status or "", []).append(event)
    seen = list(groups)
    order = list(ALGORITHM_VERBS)
    for status in sorted(
        seen, key=lambda s: (order.index(s) if s in order else len(order), seen.index(s))
    ):
        changed = groups[status]
        if len(changed) == 1:
            lines.append(headline_text(changed[0], snapshot=snapshot))
        else:
            lines.append(_algorithm_summary(status, changed, snapshot=snapshot, short=short))
    return lines


def _algorithm_summary(
    status: str, changed: Sequence[Event], *, snapshot: Snapshot, short: bool
) -> str:
    """ "🛑 3 algorithms stopped (NOT_COMPLETED): `BSIX01` 0.7300 · `BSEV02` 0.7200 · …"."""
    count = plural(len(changed), "algorithm")
    known = ALGORITHM_VERBS.get(status)
    if known is None:
        label = status_parts(status)[1] if status else "—"
        line = f"{UNKNOWN_EMOJI} {count} {label}"
    else:
        emoji, verb, bracket = known
        line = f"{emoji} {count} {verb}" + (f" ({status})" if bracket else "")
    if short or (known is not None and status not in _NAMED):
        return line
    latest: dict[str, float | None] = {}
    for algorithm in snapshot.algorithms:
        latest.setdefault(algorithm.algorithm, algorithm.latest_performance)
    names = sorted(
        {e.algorithm or "?" for e in changed},
        key=lambda n: (latest.get(n) is None, -(latest.get(n) or 0.0), n),
    )
    shown = []
    for name in names[:SUMMARY_NAMES]:
        value = latest.get(name)
        shown.append(code(name, MAX_NAME) + ("" if value is None else f" {perf(value)}"))
    line += ": " + " · ".join(shown)
    if len(names) > SUMMARY_NAMES:
        line += f" … and {len(names) - SUMMARY_NAMES} more"
    return line


def _one_line(lines: Sequence[str], *, budget: int) -> str:
    """As many of `lines` as fit in `budget` characters on one line, then a count."""
    room = budget - len(" · … and 9999 more updates")
    kept: list[str] = []
    used = 0
    for line in lines:
        if used + len(line) + 3 > room:
            break
        kept.append(line)
        used += len(line) + 3
    text = " · ".join(kept)
    if len(kept) < len(lines):
        more = plural(len(lines) - len(kept), "more update")
        text = f"{text} · … and {more}" if kept else f"… {more}"
    return text


def headline_text(event: Event, *, snapshot: Snapshot) -> str:
    """The line that tells one event, in mrkdwn with every foreign string escaped."""
    kind = event.kind
    if kind is EventKind.CHAMPION:
        return _champion(event, snapshot)
    if kind is EventKind.JOB_STATUS:
        emoji, label = status_parts(event.new_status or snapshot.status)
        was = f" (was {status_parts(event.old_status)[1]})" if event.old_status else ""
        return f"{emoji} Job {label}{was}{missed(event)}"
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
    warning = warning_line(event)
    if warning is not None:
        return warning
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


def _job_summary(snapshot: Snapshot, events: Sequence[Event] = ()) -> str:
    best = snapshot.best()
    parts = [f"Job {code(snapshot.job_key, MAX_KEY)}", status_text(snapshot.status)]
    if best is not None:
        parts.append(f"best {perf(best.latest_performance)}")
    if snapshot.target_performance is not None:
        parts.append(f"target {target_text(snapshot.target_performance)}")
    return " · ".join([*parts, *summary_notes(events)])
