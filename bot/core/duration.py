"""Durations as people write them: `30m`, `2h`, `1d`, `90s`, `1h30m` (spaces allowed;
`min`, `hours`, `days` ... spelled out too). Pure.

The slash command's `mute` (bot/slack/command_text.py, which bounds it to 1 s .. 30 days)
and the settings that are durations (bot/config.py) read them here.
"""

from __future__ import annotations

import re

MAX_TEXT = 40

_DURATION = re.compile(
    r"(?:([0-9]+)d(?:ays?)?)?(?:([0-9]+)h(?:(?:ou)?rs?)?)?"
    r"(?:([0-9]+)m(?:in(?:ute)?s?)?)?(?:([0-9]+)s(?:ec(?:ond)?s?)?)?",
    re.IGNORECASE,
)


def duration_seconds(text: str) -> int:
    """`1h30m` -> 5400. ValueError when `text` is not a duration (a bare number is not:
    its unit would be a guess). `0m` is 0: the caller bounds the range."""
    compact = "".join(text.split())
    match = _DURATION.fullmatch(compact) if len(compact) <= MAX_TEXT else None
    if match is None or not any(match.groups()):
        raise ValueError(f"not a duration: {text[:MAX_TEXT]!r}")
    days, hours, minutes, seconds = (int(group or 0) for group in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds
