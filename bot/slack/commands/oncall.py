"""The Acknowledge button of an on-call alert (issue #17).

A click by a person the ACTIONS rule allows (`bot.slack.permissions`; guests refused)
acknowledges the alert in one store transaction that also queues the line "Acknowledged
by …" in its thread and the edit of the alert message (`bot.core.oncall.acknowledged`):
no more pages for it. A second click, a click after the channel unsubscribed, and a
refusal each get an ephemeral answer; every click is on the `bot.audit` log.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from bot.core.oncall import acknowledged
from bot.slack.answers import internal_error, patiently, reply_body
from bot.slack.audit import click_channel, clicker, log_line
from bot.slack.commands.context import CommandContext
from bot.slack.oncall_render import (
    ACTION_ACK,
    ack_done,
    ack_ended,
    ack_missing,
    already_acked,
)
from bot.slack.permissions import Verdict
from bot.slack.render import render_error
from bot.slack.text import Message
from store import Alert, NewOutboxRow, StoreUnavailable

log = logging.getLogger(__name__)

REFUSALS = {
    Verdict.OFF: "Acknowledging alerts from Slack is turned off for this bot (ACTIONS=off).",
    Verdict.GUEST: "Guests cannot acknowledge alerts; ask a full member of the workspace.",
    Verdict.NOT_A_MEMBER: "Only members of this workspace can acknowledge alerts.",
    Verdict.NOT_LISTED: (
        "Only the people this bot's ACTIONS setting names can acknowledge alerts; ask the "
        "bot's operator to add you."
    ),
}


def register(app: AsyncApp, ctx: CommandContext) -> None:
    """Attach the Acknowledge button's listener."""

    async def on_ack(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        try:
            text = await acknowledge(ctx, body)
            message = Message(text=text, blocks=[])
        except StoreUnavailable as err:
            log.error("database unavailable during an acknowledgement: %s", err)
            message = render_error("The bot's database is unavailable right now.")
        except Exception:
            message = internal_error("acknowledge button")
        await respond(replace_original=False, **reply_body(message))

    app.action(ACTION_ACK)(on_ack)


async def acknowledge(ctx: CommandContext, body: dict[str, Any]) -> str:
    """Acknowledge the clicked alert; the clicker's ephemeral answer."""
    value = str(body["actions"][0].get("value", ""))
    who = clicker(body, f"button acknowledge {value}")
    user_id, team, channel_id = who.user_id, who.team_id, click_channel(body)

    def audit(result: str) -> None:
        log_line(
            team=team,
            channel=channel_id,
            user=user_id,
            command=f"button acknowledge {value}",
            result=result,
        )

    if not value.isdigit():
        audit("missing")
        return ack_missing()
    if ctx.permissions is None:
        audit("refused: no permission check")
        return REFUSALS[Verdict.OFF]
    decision = await ctx.permissions.check(user_id)
    if not decision.allowed:
        audit(f"refused: {decision.verdict.value}")
        return REFUSALS.get(decision.verdict, decision.reason)

    def rows(alert: Alert) -> list[NewOutboxRow]:
        notes = acknowledged(
            alert_id=alert.id,
            alert_outbox_id=alert.outbox_id,
            channel_id=alert.channel_id,
            job_key=alert.job_key,
            status=alert.status,
            raised_at=alert.raised_at,
            actor=user_id,
            acked_at=alert.acked_at or ctx.clock(),
        )
        return [
            NewOutboxRow(
                dedupe_key=note.dedupe_key,
                channel_id=note.channel_id,
                job_key=note.job_key,
                kind=note.kind,
                payload=note.to_json(),
            )
            for note in notes
        ]

    now = ctx.clock()
    outcome, alert = await patiently(
        lambda: ctx.store.acknowledge_alert(
            outbox_id=int(value), channel_id=channel_id, user_id=user_id, rows=rows, now=now
        ),
        sleep=ctx.sleep,
    )
    audit(outcome if alert is None else f"{outcome} {alert.job_key}")
    if outcome == "acked":
        return ack_done()
    if outcome == "already" and alert is not None:
        return already_acked(alert.acked_by, alert.acked_at)
    if outcome == "ended" and alert is not None:
        return ack_ended(alert.job_key)
    return ack_missing()
