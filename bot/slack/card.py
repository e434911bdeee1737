"""The job card (and `/mathfi status`). Pure.

(About 320 lines, kept whole: one layout, the card and `/mathfi status` drawn by the same
block builders from one snapshot, history and forecast.)

Import the public names from `bot.slack.render`. The text primitives it is written with
(`clip`, `code`, `section`, ...) are in `bot.slack.text`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.core.forecast import Verdict
from bot.core.forecast_state import ForecastSummary
from bot.core.models import COMPLETED, RUNNING, AlgorithmProgress, Snapshot
from bot.core.sparkline import sparkline
from bot.slack.text import (
    MAX_KEY,
    MAX_NAME,
    STATUS_EMOJI,
    Message,
    ago,
    approx,
    clip,
    code,
    context,
    fold,
    here,
    perf,
    plural,
    section,
    slack_date,
    span,
    status_parts,
    status_text,
    target_text,
    to_message,
    utc_stamp,
)

# The card's algorithm lines, "… and N more" included (issue #14: no channel message over
# 15 lines; the rest of a COMPLETED card, champion and footer, takes 11); `/mathfi status`
# shows them all.
CARD_ALGORITHMS = 4
ALGORITHM_BUDGET = 7000  # all algorithm lines together; keeps the payload well under ~12k chars
SPARK_MIN_SPAN = 0.01  # performance moves smaller than this are drawn nearly flat
ACTION_MUTE, ACTION_UNSUBSCRIBE, ACTION_REFRESH = (
    "mathfi_mute_1h",
    "mathfi_unsubscribe",
    "mathfi_refresh",
)


def progress_bar(best: float, target: float, *, cells: int = 10) -> str:
    """`▰▰▰▰▰▰▰▰▱▱ 87%`: best as a share of target, floored so 100% means reached."""
    ratio = min(max(best / target, 0.0), 1.0)
    filled = math.floor(ratio * cells)
    return "▰" * filled + "▱" * (cells - filled) + f" {math.floor(ratio * 100)}%"


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
