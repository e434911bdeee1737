"""A channel's daily digest as one Slack message (issue #14). Pure.

Jobs finished since the last digest (completed with the champion and the best; failed;
not completed, timed out or cancelled with the best and the target), then jobs still
running with their progress and ETA. Each group shows at most `MAX_PER_GROUP` jobs and
says how many more there are: the message stays short, well inside Block Kit's limits
(a few sections of at most 3,000 characters).
"""

from __future__ import annotations

import re

from slack_sdk.models.blocks import Block

from bot.core.digest import DailyDigest, DigestLine
from bot.core.models import COMPLETED
from bot.slack.text import (
    MAX_NAME,
    Message,
    clip,
    code,
    context,
    fold,
    perf,
    plural,
    section,
    span,
    status_text,
    target_text,
    to_message,
)

MAX_PER_GROUP = 10
_USER = re.compile(r"[UW][A-Z0-9]{1,20}")
GROUP_BUDGET = 2500  # characters of one group's lines: one section each


def render_digest(digest: DailyDigest) -> Message:
    """The digest message: a title, the finished jobs, the running ones."""
    title = f"📰 *Daily digest* · {digest.day} ({clip(digest.tz, 40)})"
    blocks: list[Block] = [section(title)]
    groups = (
        ("*Finished since the last digest*", digest.finished),
        ("*Still running*", digest.running),
    )
    for heading, jobs in groups:
        if not jobs:
            continue
        lines = [heading, *(_line(job, at=digest.at) for job in jobs[:MAX_PER_GROUP])]
        chunks, shown = fold(lines, budget=GROUP_BUDGET)
        hidden = len(jobs) - max(shown - 1, 0)
        blocks += [section(chunk) for chunk in chunks]
        if hidden:
            more = f"… and {hidden} more"
            blocks.append(context(more))
    if digest.set_by and _USER.fullmatch(digest.set_by):
        who = f"Daily at this hour since <@{digest.set_by}> asked for it"
        blocks.append(context(who))
    # the notification's text: short; the blocks have the detail
    counts = f"{len(digest.finished)} finished, {len(digest.running)} still running"
    return to_message(f"📰 Daily digest · {digest.day}: {counts}", blocks)


def _line(job: DigestLine, *, at: float) -> str:
    line = f"• {code(job.job_key)} {status_text(job.status)}"
    if job.status == COMPLETED and job.model_key:
        line += f" · champion {code(job.model_key)}"
    facts = _best(job)
    if job.algorithms and job.running:
        facts.insert(0, f"{job.running}/{plural(job.algorithms, 'algorithm')} running")
    if job.eta is not None:
        facts.append(f"🎯 ETA ≈ {span(max(0.0, job.eta - at))}")
    elif job.at_risk:
        facts.append("⚠️ at risk")
    return " · ".join([line, *facts])


def _best(job: DigestLine) -> list[str]:
    best = job.achieved if job.status == COMPLETED and job.achieved is not None else job.best
    if best is None:
        return []
    text = f"best {perf(best)}"
    if job.best_algorithm and not (job.status == COMPLETED and job.achieved is not None):
        text += f" ({clip(job.best_algorithm, MAX_NAME)})"
    if job.target is not None:
        text += f" of target {target_text(job.target)}"
    return [text]
