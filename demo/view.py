"""The demo's terminal view: a Slack channel as a person would see it, drawn with rich."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.text import Text

_ENTITY = re.compile(r"<([@#!][^>|]*)(?:\|([^>]*))?>")


def slack_to_plain(text: str) -> str:
    """mrkdwn to what a reader sees: `<@U1>` -> @U1, `<!subteam^S1|@oncall>` -> @oncall."""

    def entity(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if target.startswith("!date^"):
            return label or ""
        if label:
            return label if label.startswith(("@", "#")) else "@" + label
        if target.startswith("!subteam^"):
            return "@" + target.removeprefix("!subteam^")
        if target.startswith("!"):
            return "@" + target[1:]
        return target

    text = _ENTITY.sub(entity, text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _styled(text: str) -> Text:
    """Plain text with Slack's *bold* and `code` shown in the terminal's styles."""
    out = Text()
    for part in re.split(r"(\*[^*\n]+\*|`[^`\n]+`)", slack_to_plain(text)):
        if part.startswith("*") and part.endswith("*") and len(part) > 2:
            out.append(part[1:-1], style="bold")
        elif part.startswith("`") and part.endswith("`") and len(part) > 2:
            out.append(part[1:-1], style="cyan")
        else:
            out.append(part)
    return out


def blocks_to_lines(
    blocks: Sequence[dict[str, Any]], fallback: str, *, context: bool = True
) -> list[Text]:
    lines: list[Text] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            lines.append(Text(str(block.get("text", {}).get("text", "")), style="bold underline"))
        elif kind == "section":
            if "text" in block:
                lines.append(_styled(str(block["text"].get("text", ""))))
            fields = [str(f.get("text", "")).replace("\n", " ") for f in block.get("fields", [])]
            for pair in range(0, len(fields), 2):
                lines.append(_styled("   ".join(fields[pair : pair + 2])))
        elif kind == "context" and context:
            texts = [str(e.get("text", "")) for e in block.get("elements", []) if "text" in e]
            lines.append(Text(slack_to_plain("  ".join(texts)), style="dim"))
        elif kind == "actions":
            labels = [str(e.get("text", {}).get("text", "")) for e in block.get("elements", [])]
            lines.append(Text("  ".join(f"[ {label} ]" for label in labels), style="blue"))
        elif kind == "divider":
            lines.append(Text("─" * 40, style="dim"))
    return lines or [_styled(fallback)]


def render_channel(
    channel: str,
    messages: Iterable[Any],
    *,
    width_hint: int = 100,
    max_replies: int = 50,
    max_lines: int = 50,
) -> RenderableType:
    """Cards (top-level messages) with their thread replies under them."""
    messages = list(messages)
    top = [m for m in messages if not m.thread_ts or m.thread_ts == m.ts]
    panels: list[RenderableType] = [Text(f"#{channel}", style="bold magenta")]
    for card in top:
        body: list[RenderableType] = list(blocks_to_lines(card.blocks, card.text))
        replies = [m for m in messages if m.thread_ts == card.ts and m.ts != card.ts]
        if replies:
            body.append(
                Text(
                    f"🧵 {len(replies)} repl{'y' if len(replies) == 1 else 'ies'}", style="bold dim"
                )
            )
        hidden = max(len(replies) - max_replies, 0)
        if hidden:
            body.append(
                Text(f"    … {hidden} earlier repl{'y' if hidden == 1 else 'ies'}", style="dim")
            )
        for reply in replies[hidden:]:
            prefix = "  ↳ " + ("(also sent to channel) " if reply.reply_broadcast else "")
            lines = [
                part
                for line in blocks_to_lines(reply.blocks, reply.text, context=False)
                for part in line.split()
            ]
            for i, line in enumerate(lines[:max_lines]):
                body.append(Text(prefix if i == 0 else "    ") + line)
            if len(lines) > max_lines:
                body.append(Text(f"    (+{len(lines) - max_lines} more lines)", style="dim"))
        edited = f" (edited {card.edits}×)" if card.edits else ""
        panels.append(
            Panel(
                Group(*body),
                title=f"MathFi bot{edited}",
                title_align="left",
                width=min(width_hint, 110),
            )
        )
    return Group(*panels)
