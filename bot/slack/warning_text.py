"""The thread lines of the forecast's warnings and of MathFi's advice after a miss. Pure.

`bot.slack.render.headline_text` calls these for the kinds they tell; every name from
MathFi goes through `code`. Numbers: a projected value with two decimals (a third when it
says something), a threshold as MathFi takes it (0.80), times roughly ("about 3 min").
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.core.events import Event, EventKind
from bot.core.forecast import RETRY_STEP
from bot.slack.card import at_risk_text
from bot.slack.text import MAX_NAME, approx, code, perf, span, target_text


def advice(retry_at: float) -> str:
    """ "MathFi's advice: retrain at 0.80, then raise in 0.05 steps"."""
    return f"MathFi's advice: retrain at {retry_at:.2f}, then raise in {RETRY_STEP:.2f} steps"


def at_risk(event: Event) -> str:
    line = at_risk_text(event.target_performance)
    if event.best_projected is not None:
        by = f" by {code(event.algorithm, MAX_NAME)}" if event.algorithm else ""
        line += f" (best projected {approx(event.best_projected)}{by})"
    if event.retry_at is not None:
        line += f". {advice(event.retry_at)}"
    if event.stall_algorithm and event.seconds_left is not None:
        line += (
            f". {code(event.stall_algorithm, MAX_NAME)} may be stopped by the stall rule "
            f"in about {span(event.seconds_left)}"
        )
    return line


def back_on_track(event: Event) -> str:
    goal = (
        "the target" if event.target_performance is None else target_text(event.target_performance)
    )
    who = code(event.algorithm, MAX_NAME) if event.algorithm else "an algorithm"
    line = f"✅ Back on track: {who} is projected to reach {goal}"
    if event.eta is not None:
        line += f" (ETA ≈ {span(event.eta)})"
    elif event.best_projected is not None:
        line += f" (best projected {approx(event.best_projected)})"
    return line


def stall(event: Event) -> str:
    who = code(event.algorithm or "?", MAX_NAME)
    left = "soon" if event.seconds_left is None else f"in about {span(event.seconds_left)}"
    line = f"⏳ Stall ahead: {who} may be stopped {left}"
    if event.gained is not None and event.needed is not None and event.window is not None:
        line += (
            f" (gained {approx(event.gained)} of the {approx(event.needed)} it needs "
            f"over {span(event.window)})"
        )
    return line


def warning_line(event: Event) -> str | None:
    """The line of a warning event; None for any other kind."""
    if event.kind is EventKind.AT_RISK:
        return at_risk(event)
    if event.kind is EventKind.BACK_ON_TRACK:
        return back_on_track(event)
    if event.kind is EventKind.STALL_WARNING:
        return stall(event)
    return None


def missed(event: Event) -> str:
    """What a NOT_COMPLETED / TIMED_OUT status line adds: the best reached and the advice."""
    if event.retry_at is None:
        return ""
    return f". Best reached {perf(event.performance)}. {advice(event.retry_at)}"


def summary_notes(events: Sequence[Event]) -> list[str]:
    """What the reply's summary line adds about the forecast, if anything."""
    notes = []
    kinds = {e.kind for e in events}
    if EventKind.AT_RISK in kinds:
        notes.append("⚠️ at risk")
    if EventKind.STALL_WARNING in kinds:
        notes.append("⏳ stall ahead")
    if EventKind.BACK_ON_TRACK in kinds:
        notes.append("✅ on track")
    retry = next((e.retry_at for e in events if e.kind is EventKind.JOB_STATUS), None)
    if retry is not None:
        notes.append(f"retry at {retry:.2f}")
    return notes
