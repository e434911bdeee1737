"""The job card (and `/mathfi status`), plus the text primitives all rendering shares. Pure.

Import the public names from `bot.slack.render`. Every string that comes from MathFi or a
user goes through `clip` (escape + cut) or `code` before it reaches mrkdwn; blocks are
built with slack_sdk models so their validators run on `to_dict()`.

Longer than 300 lines: the card (with its forecast line) and the text primitives every
message shares.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.core.forecast import Verdict
from bot.core.forecast_state import ForecastSummary
from bot.core.models import COMPLETED, RUNNING, AlgorithmProgress, Snapshot
from bot.core.sparkline import sparkline
from bot.slack.command_text import escape_mrkdwn

SECTION_LIMIT = 3000  # Slack: section text
# The card's algorithm lines, "… and N more" included (issue #14: no channel message over
# 15 lines; the rest of a COMPLETED card, champion and footer, takes 11); `/mathfi status`
# shows them all.
CARD_ALGORITHMS = 4
ALGORITHM_BUDGET = 7000  # all algorithm lines together; keeps the payload well under ~12k chars
MAX_KEY = 100  # longest job/model key shown (real ones are 36-char UUIDs)
MAX_NAME = 60  # longest algorithm name shown
MAX_STATUS = 40  # longest unknown status shown
SPARK_MIN_SPAN = 0.01  # performance moves smaller than this are drawn nearly flat
ACTION_MUTE, ACTION_UNSUBSCRIBE, ACTION_REFRESH = (
    "mathfi_mute_1h",
    "mathfi_unsubscribe",
    "mathfi_refresh",
)
STATUS_EMOJI = {
    "PENDING": "⏳",
    "RUNNING": "🏃",
    "COMPLETED": "🏆",
    "TIMED_OUT": "⌛",
    "NOT_COMPLETED": "🛑",
    "CANCELLED": "🚫",
    "FAILED": "❌",
}
UNKNOWN_EMOJI = "❔"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True)
class Message:
    """What the sender posts: fallback `text` plus blocks already turned into dicts."""

    text: str
    blocks: list[dict[str, Any]]


def cut(escaped: str, limit: int) -> str:
    """Cut already-escaped text to at most `limit` characters, never inside an entity."""
    if len(escaped) <= limit:
        return escaped
    head = escaped[: limit - 1]
    amp = head.rfind("&", max(0, len(head) - 4))
    if amp != -1 and ";" not in head[amp:]:
        head = head[:amp]
    return head + "…"


def clip(text: str, limit: int) -> str:
    """Untrusted text on one line (control characters become spaces), escaped and cut."""
    return cut(escape_mrkdwn(_CONTROL.sub(" ", text)), limit)


def code(text: str, limit: int = MAX_KEY) -> str:
    """Untrusted identifier as inline code, so `*`, `_` and `~` in it stay literal."""
    return "`" + clip(text.replace("`", "ˋ"), limit) + "`"


def status_parts(status: str) -> tuple[str, str]:
    """(emoji, label) for a status; unknown statuses keep their raw (escaped) string."""
    emoji = STATUS_EMOJI.get(status)
    if emoji is None:
        return UNKNOWN_EMOJI, clip(status, MAX_STATUS)
    return emoji, status


def status_text(status: str) -> str:
    return " ".join(status_parts(status))


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def perf(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.4f}" if abs(value) < 1e6 else f"{value:.4g}"


def target_text(value: float) -> str:
    if abs(value) >= 1e6:
        return f"{value:.4g}"
    return f"{value:.4f}".rstrip("0").rstrip(".")


def progress_bar(best: float, target: float, *, cells: int = 10) -> str:
    """`▰▰▰▰▰▰▰▰▱▱ 87%`: best as a share of target, floored so 100% means reached."""
    ratio = min(max(best / target, 0.0), 1.0)
    filled = math.floor(ratio * cells)
    return "▰" * filled + "▱" * (cells - filled) + f" {math.floor(ratio * 100)}%"


def approx(value: float) -> str:
    """A projected value: two decimals, a third when it says something (0.81, 0.812)."""
    text = f"{value:.3f}"
    return text[:-1] if text.endswith("0") else text


def span(seconds: float) -> str:
    """A stretch of time, roughly: "40 s", "12 min", "1 h 5 min"."""
    if seconds < 59.5:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def at_risk_text(target: float | None) -> str:
    """ "⚠️ At risk: no algorithm is projected to reach 0.85" (the caller adds the best)."""
    goal = "the target" if target is None else target_text(target)
    return f"⚠️ At risk: no algorithm is projected to reach {goal}"


def forecast_line(snapshot: Snapshot, forecast: ForecastSummary | None, *, now: float) -> str:
    """The card's forecast: the ETA while on track (with its range when that says
    something), the projected miss when at risk; nothing before there is enough history,
    and nothing once the job is not running. The ETA counts from the forecast's own poll."""
    if forecast is None or snapshot.status != RUNNING:
        return ""
    if forecast.verdict is Verdict.AT_RISK:
        line = at_risk_text(forecast.target)
        if forecast.best_projected is not None:
            who = f", {code(forecast.best_algorithm, MAX_NAME)}" if forecast.best_algorithm else ""
            line += f" (best projected {approx(forecast.best_projected)}{who})"
        return line
    if forecast.verdict is not Verdict.ON_TRACK or forecast.eta is None:
        return ""
    elapsed = max(0.0, now - forecast.at)
    line = f"🎯 ETA ≈ {span(max(0.0, forecast.eta - elapsed))}"
    low, high = forecast.eta_low, forecast.eta_high
    if low is not None and high is not None:
        low, high = max(0.0, low - elapsed), max(0.0, high - elapsed)
        if span(low) != span(high) and high <= 4 * max(low, 60.0):
            line += f", likely {span(low)} to {span(high)}"
    about = [code(forecast.eta_algorithm, MAX_NAME)] if forecast.eta_algorithm else []
    if forecast.rate is not None:
        about.append(f"{forecast.rate * 60:+.2g}/min")
    return line + (f" ({', '.join(about)})" if about else "")


def ago(seconds: float) -> str:
    if not seconds >= 1:
        return "just now"
    if seconds < 60:
        return f"{int(seconds)} s ago"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min ago"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min ago" if minutes else f"{hours} h ago"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h ago" if hours else f"{days} d ago"


def fold(lines: Sequence[str], *, budget: int, limit: int = SECTION_LIMIT) -> tuple[list[str], int]:
    """Pack lines into as few texts of at most `limit` chars as fit in `budget` chars.

    Returns the texts and how many lines they hold (the rest did not fit).
    """
    chunks: list[str] = []
    used = 0
    for shown, line in enumerate(lines):
        line = cut(line, limit)
        if used + len(line) + 1 > budget:
            return chunks, shown
        if chunks and len(chunks[-1]) + 1 + len(line) <= limit:
            chunks[-1] += "\n" + line
        else:
            chunks.append(line)
        used += len(line) + 1
    return chunks, len(lines)


def slack_date(at: float, tokens: str, fallback: str) -> str | None:
    """Slack's `<!date^…>`: each reader sees `at` in their time zone, and `{ago}` stays true
    between edits of the message. None for a time that is no date."""
    if not math.isfinite(at):
        return None
    return f"<!date^{int(at)}^{tokens}|{fallback}>"


def utc_stamp(at: float) -> str | None:
    try:
        return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (OverflowError, OSError, ValueError):
        return None


def section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=cut(text, SECTION_LIMIT)))


def context(*texts: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=cut(t, 2000)) for t in texts[:10]])


def to_message(text: str, blocks: Sequence[Block]) -> Message:
    return Message(text=cut(text, 3000), blocks=[block.to_dict() for block in blocks[:50]])


def here(channel_id: str, *, start: bool = False) -> str:
    """How a message names where it is: "this DM" in a direct message (the person's own
    with the bot, where their personal subscriptions live, or any other), else "this
    channel"; capitalised with `start`."""
    place = "this DM" if channel_id.startswith("D") else "this channel"
    return place[:1].upper() + place[1:] if start else place


def render_card(
    snapshot: Snapshot,
    *,
    now: float,
    last_improvement_at: float | None = None,
    history: Mapping[str, Sequence[float]] | None = None,
    muted_until: float | None = None,
    forecast: ForecastSummary | None = None,
    buttons: Sequence[ButtonElement] = (),
    channel_id: str = "",
) -> Message:
    """The card of one job in one channel, edited in place as the job moves.

    The card is only redrawn when something changes, so everything on it must stay true
    until then: times are Slack dates (`{ago}` ages as it is read), a mute names its end,
    judged at `now` (an expired mute shows nothing), and a finished job shows no mute.
    `forecast`: the engine's last forecast of the job (`forecast_line`). `buttons`: more
    buttons after Mute, Unsubscribe and Refresh (the Cancel of a job still running).
    `channel_id`: where it is posted (Unsubscribe asks about "this DM" in a DM).
    """
    muted = muted_until is not None and muted_until > now and not snapshot.terminal
    blocks = _job_blocks(
        snapshot,
        now=now,
        last_improvement_at=last_improvement_at,
        history=history,
        muted_until=muted_until if muted else None,
        forecast=forecast_line(snapshot, forecast, now=now),
        algorithms=CARD_ALGORITHMS,
    )
    blocks.append(_actions(snapshot.job_key, buttons, place=here(channel_id)))
    return to_message(card_text(snapshot), blocks)


def render_status(
    snapshot: Snapshot,
    *,
    now: float,
    history: Mapping[str, Sequence[float]] | None = None,
    forecast: ForecastSummary | str | None = None,
) -> Message:
    """The answer to `/mathfi status <key>`: the card's content without buttons.
    `forecast`: the job's forecast now, or a line saying why there is none."""
    line = forecast if isinstance(forecast, str) else forecast_line(snapshot, forecast, now=now)
    blocks = _job_blocks(
        snapshot,
        now=now,
        last_improvement_at=None,
        history=history,
        muted_until=None,
        forecast=line,
    )
    return to_message(card_text(snapshot), blocks)


def card_text(snapshot: Snapshot) -> str:
    """Fallback text, e.g. "Training abc…: RUNNING, best 0.8123 (BSIX01) of target 0.85"."""
    best = snapshot.best()
    text = f"Training {clip(snapshot.job_key, MAX_KEY)}: {status_parts(snapshot.status)[1]}"
    if best is None:
        text += ", no performance yet"
    else:
        text += f", best {perf(best.latest_performance)} ({clip(best.algorithm, MAX_NAME)})"
    if snapshot.target_performance is not None:
        text += f" of target {target_text(snapshot.target_performance)}"
    return text


def _job_blocks(
    snapshot: Snapshot,
    *,
    now: float,
    last_improvement_at: float | None,
    history: Mapping[str, Sequence[float]] | None,
    muted_until: float | None,
    forecast: str = "",
    algorithms: int | None = None,
) -> list[Block]:
    emoji, label = status_parts(snapshot.status)
    known = snapshot.status in STATUS_EMOJI
    blocks: list[Block] = [
        HeaderBlock(text=f"{emoji} MathFi training · {label if known else 'unknown status'}"),
        SectionBlock(fields=[MarkdownTextObject(text=f) for f in _fact_fields(snapshot)]),
    ]
    progress = _progress_line(snapshot, now=now, last_improvement_at=last_improvement_at)
    if progress:
        blocks.append(section(progress))
    if forecast:
        blocks.append(section(forecast))
    if snapshot.status == COMPLETED and snapshot.model_key:
        blocks.append(section(_champion_line(snapshot)))
    blocks.append(DividerBlock())
    blocks.extend(_algorithm_blocks(snapshot.algorithms, history=history, limit=algorithms))
    blocks.append(context(*_footer(now=now, muted_until=muted_until)))
    return blocks


def _fact_fields(snapshot: Snapshot) -> list[str]:
    best = snapshot.best()
    target = snapshot.target_performance
    best_text = "no performance yet"
    if best is not None:
        best_text = f"{perf(best.latest_performance)} by {code(best.algorithm, MAX_NAME)}"
    return [
        f"*Job*\n{code(snapshot.job_key)}",
        f"*Status*\n{status_text(snapshot.status)}",
        f"*Target*\n{'—' if target is None else target_text(target)}",
        f"*Best*\n{best_text}",
    ]


def _progress_line(snapshot: Snapshot, *, now: float, last_improvement_at: float | None) -> str:
    parts: list[str] = []
    best = snapshot.best()
    target = snapshot.target_performance
    if best is not None and best.latest_performance is not None and target and target > 0:
        parts.append(f"*Progress* {progress_bar(best.latest_performance, target)}")
    if last_improvement_at is not None:
        parts.append(_last_improvement(snapshot, now=now, at=last_improvement_at))
    return " · ".join(parts)


def _last_improvement(snapshot: Snapshot, *, now: float, at: float) -> str:
    """A running job: an age that Slack keeps current. A finished one: the date (an age
    drawn at the final poll read "0 s ago" for good)."""
    at = min(at, now)
    if snapshot.terminal:
        stamp = utc_stamp(at)
        date = stamp and slack_date(at, "{date_short_pretty} {time}", stamp)
        return f"last improvement {date}" if date else "last improvement —"
    date = slack_date(at, "{ago}", ago(now - at))
    return f"last improvement {date or ago(now - at)}"


def _champion_line(snapshot: Snapshot) -> str:
    line = f"🏆 *Champion model* {code(snapshot.model_key or '')}"
    scores = [
        (name, value)
        for name, value in (
            ("achieved", snapshot.achieved_performance),
            ("training", snapshot.training_performance),
            ("test", snapshot.test_performance),
        )
        if value is not None
    ]
    if scores:
        line += "\n" + " · ".join(f"{name} {perf(value)}" for name, value in scores)
    return line


def _algorithm_blocks(
    algorithms: Sequence[AlgorithmProgress],
    *,
    history: Mapping[str, Sequence[float]] | None,
    limit: int | None = None,
) -> list[Block]:
    """One line per algorithm, best first, as many as fit in ALGORITHM_BUDGET, then how
    many more there are; with `limit`, at most that many lines in all (the best
    `limit - 1` and the count, when there are more than `limit`)."""
    if not algorithms:
        return [section("_No algorithm has reported yet._")]
    ranked = sorted(
        algorithms,
        key=lambda a: (a.latest_performance is None, -(a.latest_performance or 0.0), a.algorithm),
    )
    shown_at_most = limit - 1 if limit is not None and len(ranked) > limit else limit
    lines = [_algorithm_line(a, history=history) for a in ranked[:shown_at_most]]
    texts, shown = fold(lines, budget=ALGORITHM_BUDGET)
    blocks: list[Block] = [section(text) for text in texts]
    if shown < len(ranked):
        blocks.append(context(f"… and {plural(len(ranked) - shown, 'more algorithm')}"))
    return blocks


def _algorithm_line(
    algorithm: AlgorithmProgress, *, history: Mapping[str, Sequence[float]] | None
) -> str:
    values: Sequence[float] = algorithm.recent_performances
    if history is not None and algorithm.algorithm in history:
        values = history[algorithm.algorithm]
    spark = sparkline(values, min_span=SPARK_MIN_SPAN) or "·"
    return (
        f"`{spark}` {code(algorithm.algorithm, MAX_NAME)} "
        f"*{perf(algorithm.latest_performance)}* · {status_text(algorithm.status)}"
    )


def _footer(*, now: float, muted_until: float | None) -> list[str]:
    parts: list[str] = []
    if muted_until is not None:
        stamp = utc_stamp(muted_until)
        until = stamp and slack_date(muted_until, "{date_short_pretty} {time}", stamp)
        when = f" until {until}" if until else ""
        parts.append(f"🔕 muted{when}: only terminal statuses are posted")
    stamp = utc_stamp(now)
    if stamp is None:
        return parts or ["MathFi training job"]
    parts.append(f"updated {slack_date(now, '{date_short_pretty} {time}', stamp)}")
    return parts


def _actions(job_key: str, more: Sequence[ButtonElement], *, place: str) -> ActionsBlock:
    value = job_key[:2000]
    return ActionsBlock(
        elements=[
            ButtonElement(text="Mute 1 h", action_id=ACTION_MUTE, value=value),
            ButtonElement(
                text="Unsubscribe",
                action_id=ACTION_UNSUBSCRIBE,
                value=value,
                style="danger",
                confirm=ConfirmObject(
                    title="Unsubscribe?",
                    text=f"Stop watching {code(job_key, 60)} in {place}?",
                    confirm="Unsubscribe",
                    deny="Keep watching",
                ),
            ),
            ButtonElement(text="Refresh", action_id=ACTION_REFRESH, value=value),
            *more,
        ]
    )
