"""What personal notifications show (issue #15). Pure: no I/O, `now` passed in.

`notify_me_button`: the channel card's button (after its others). `render_home`: a
person's App Home tab (their personal subscriptions and the channel
subscriptions they created, newest first; an empty state that teaches the two ways to
follow a job). `followers_line` and `followed_line`: the card's lines for the people who
follow a job personally (no mention: nobody is pinged) and for a DM's own card.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    DividerBlock,
    HeaderBlock,
)

from bot.core.forecast_state import read_state
from bot.core.models import Snapshot
from bot.slack.card import forecast_line
from bot.slack.command_text import escape_mrkdwn
from bot.slack.text import (
    MAX_KEY,
    MAX_NAME,
    clip,
    code,
    context,
    perf,
    section,
    slack_date,
    status_parts,
    target_text,
    utc_stamp,
)
from store import HomeItem

ACTION_NOTIFY_ME = "mathfi_notify_me"  # a channel card's: follow the job in my DM
ACTION_HOME_UNSUBSCRIBE = "mathfi_home_unsubscribe"
ACTION_HOME_MUTE = "mathfi_home_mute_1h"
ACTION_HOME_UNMUTE = "mathfi_home_unmute"
HOME_ACTIONS = (ACTION_HOME_UNSUBSCRIBE, ACTION_HOME_MUTE, ACTION_HOME_UNMUTE)
# Slack: 100 blocks a view. Two header blocks, three per item, one for "and N more".
MAX_HOME_ITEMS = 30


def notify_me_button(job_key: str) -> ButtonElement:
    """The channel card's "Notify me": follow the job personally, in the clicker's DM."""
    return ButtonElement(text="Notify me", action_id=ACTION_NOTIFY_ME, value=job_key[:2000])


def followers_line(count: int) -> str:
    """ "👥 3 people follow this job" (the channel card's line; no mention, no ping)."""
    if count == 1:
        return "👤 1 person follows this job in their DM"
    return f"👥 {count} people follow this job in their DMs"


def followed_line(since: float) -> str:
    """A DM card's line: the person follows the job here, since when."""
    stamp = utc_stamp(since)
    when = stamp and slack_date(since, "{date_short_pretty} {time}", stamp)
    line = "🔔 you follow this job personally, here in your DM"
    return line + (f" since {when}" if when else "")


def render_home(items: Sequence[HomeItem], *, now: float, command: str) -> dict[str, Any]:
    """The `home` view of views.publish."""
    cmd = escape_mrkdwn(command)
    blocks: list[Block] = [HeaderBlock(text="Your MathFi jobs")]
    if not items:
        blocks += [
            section(
                "You follow no MathFi job yet. Two ways to start:\n"
                f"• `{cmd} subscribe <trainingJobKey> --dm` in any channel (or "
                f"`{cmd} subscribe <trainingJobKey>` here, in your DM with the bot): the job's "
                "card and its status changes come to your DM.\n"
                "• *Notify me* on a job's card in a channel does the same in one click.\n"
                f"Jobs you make a channel watch (`{cmd} subscribe <trainingJobKey>` in the "
                "channel) are listed here too."
            )
        ]
        return {"type": "home", "blocks": [block.to_dict() for block in blocks]}
    blocks.append(
        context(
            "Your personal subscriptions and the channel subscriptions you created, newest "
            "first. Updated when a job changes (at most once a minute)."
        )
    )
    for item in items[:MAX_HOME_ITEMS]:
        blocks += [DividerBlock(), section(_item_text(item, now=now)), _item_actions(item, now)]
    if len(items) > MAX_HOME_ITEMS:
        more = len(items) - MAX_HOME_ITEMS
        blocks.append(context(f"… and {more} older ones (`{cmd} list` where they are)."))
    return {"type": "home", "blocks": [block.to_dict() for block in blocks]}


def _snapshot(item: HomeItem) -> Snapshot | None:
    if item.snapshot_json is None:
        return None
    try:
        return Snapshot.model_validate_json(item.snapshot_json)
    except ValidationError:
        return None


def _item_text(item: HomeItem, *, now: float) -> str:
    sub = item.subscription
    emoji, status = status_parts(item.status or "UNKNOWN")
    where = "your DM" if item.personal else f"<#{sub.channel_id}>"
    lines = [f"*{code(sub.job_key, MAX_KEY)}* · {emoji} {status} · in {where}"]
    snapshot = _snapshot(item)
    facts = []
    if item.best_performance is not None:
        best = f"best *{perf(item.best_performance)}*"
        if item.best_algorithm:
            best += f" ({clip(item.best_algorithm, MAX_NAME)})"
        facts.append(best)
    else:
        facts.append("no performance yet")
    if snapshot is not None and snapshot.target_performance is not None:
        facts.append(f"target {target_text(snapshot.target_performance)}")
    lines.append(" · ".join(facts))
    if snapshot is not None:
        eta = forecast_line(snapshot, read_state(item.forecast_json).last, now=now)
        if eta:
            lines.append(eta)
    if sub.muted_until is not None and sub.muted_until > now:
        stamp = utc_stamp(sub.muted_until)
        until = stamp and slack_date(sub.muted_until, "{date_short_pretty} {time}", stamp)
        lines.append(f"🔕 muted until {until}" if until else "🔕 muted")
    return "\n".join(lines)


def _item_actions(item: HomeItem, now: float) -> ActionsBlock:
    sub = item.subscription
    value = str(sub.id)
    muted = sub.muted_until is not None and sub.muted_until > now
    where = "in your DM" if item.personal else "in that channel"
    mute = (
        ButtonElement(text="Unmute", action_id=ACTION_HOME_UNMUTE, value=value)
        if muted
        else ButtonElement(text="Mute 1 h", action_id=ACTION_HOME_MUTE, value=value)
    )
    return ActionsBlock(
        block_id=f"home_{sub.id}",
        elements=[
            mute,
            ButtonElement(
                text="Unsubscribe",
                action_id=ACTION_HOME_UNSUBSCRIBE,
                value=value,
                style="danger",
                confirm=ConfirmObject(
                    title="Unsubscribe?",
                    text=f"Stop watching {code(sub.job_key, 60)} {where}?",
                    confirm="Unsubscribe",
                    deny="Keep watching",
                ),
            ),
        ],
    )
