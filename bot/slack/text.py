"""The text primitives every message shares (pure): escaping and cutting what MathFi or a
person wrote (`clip`, `code`), numbers, statuses and times as the bot writes them, Slack's
limits, and the Block Kit building blocks (`section`, `context`, `to_message`).

Every string that comes from MathFi or a user goes through `clip` (escape + cut) or `code`
before it reaches mrkdwn; blocks are built with slack_sdk models so their validators run on
`to_dict()`. Import the public names from `bot.slack.render`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.slack.command_text import escape_mrkdwn

SECTION_LIMIT = 3000  # Slack: section text
MAX_KEY = 100  # longest job/model key shown (real ones are 36-char UUIDs)
MAX_NAME = 60  # longest algorithm name shown
MAX_STATUS = 40  # longest unknown status shown
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
