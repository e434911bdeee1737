"""The on-call rows to Slack (issue #17): a re-page (in the alert's thread, broadcast to
the channel), the line that says who acknowledged, and the edit of the alert message.

Called by `bot.slack.delivery.Delivery` for the rows whose kind is in
`bot.core.oncall.ONCALL_KINDS`, with its failure handling (`failed`). The re-page and the
acknowledgement line go through `bot.slack.note_post.NotePoster`, as a subscription
change's line does: a post whose last attempt had an unknown outcome is looked up first
(its metadata names its row), so a re-page interrupted by a crash is posted once. The edit is
a `chat.update` of the alert's own message with the same content each time: repeating it
is harmless, so it needs no lookup.
"""

from __future__ import annotations

import logging
from functools import partial

from bot.core.models import Snapshot
from bot.core.notification import read_notification
from bot.core.oncall import OncallNote, read_note
from bot.errors import SlackDeliveryError
from bot.metrics import Metrics
from bot.slack.api import SlackCaller
from bot.slack.live_cards import LiveCards
from bot.slack.note_post import NotePoster, drop_unrenderable
from bot.slack.oncall_render import acked_line, acknowledged_alert, alert_reply, repage_message
from store import AsyncStore, OutboxRow

log = logging.getLogger("bot.slack.sender")

# Slack will not edit this message any more: the edit is dropped, the alert stays acked.
_CANNOT_EDIT = frozenset(
    {"message_not_found", "cant_update_message", "edit_window_closed", "msg_too_long"}
)


class OncallDelivery:
    def __init__(
        self,
        store: AsyncStore,
        slack: SlackCaller,
        cards: LiveCards,
        *,
        metrics: Metrics,
        notes: NotePoster,
    ) -> None:
        self._store, self._slack, self._cards = store, slack, cards
        self._metrics = metrics
        self._notes = notes  # posts the re-page and the line, and fails their rows

    async def deliver(self, row: OutboxRow) -> None:
        try:
            note = read_note(row.payload)
        except ValueError as err:
            await drop_unrenderable(self._store, row, err)
            return
        if note.note == "edit":
            await self._edit(row, note)
        else:
            await self._post(row, note)

    async def _post(self, row: OutboxRow, note: OncallNote) -> None:
        card_ts = await self._cards.posted_ts(row.channel_id, row.job_key)
        repage = note.note == "repage"
        render = partial(repage_message if repage else acked_line, note)
        await self._notes.post(row, render, card_ts=card_ts, broadcast=repage)

    async def _edit(self, row: OutboxRow, note: OncallNote) -> None:
        """The alert message shows who acknowledged it, and when; its button goes."""
        alert = await self._store.get_outbox_row(note.alert_outbox_id)
        if alert is None or alert.slack_ts is None:
            await self._store.mark_dead(row.id, error="the alert message is gone")
            return
        try:
            notification = read_notification(
                alert.payload,
                channel_id=alert.channel_id,
                job_key=alert.job_key,
                kind=alert.kind,
                dedupe_key=alert.dedupe_key,
            )
            snapshot = notification.snapshot or await self._cards.snapshot(alert.job_key)
            message = acknowledged_alert(
                alert_reply(notification, snapshot or Snapshot(job_key=alert.job_key, status="?")),
                note,
            )
        except ValueError as err:
            await drop_unrenderable(self._store, row, err)
            return
        try:
            await self._store.mark_sending(row.id)
            await self._slack.call(
                "chat.update",
                channel=alert.channel_id,
                ts=alert.slack_ts,
                text=message.text,
                blocks=message.blocks,
            )
        except SlackDeliveryError as err:
            if err.error in _CANNOT_EDIT:
                log.warning("cannot edit alert %s (%s); leaving it", alert.slack_ts, err.error)
                await self._store.mark_dead(row.id, error=err.error)
                return
            await self._notes.failed(row, err, False)  # an edit is safe to repeat: no lookup
            return
        await self._store.mark_sent(row.id, ts=alert.slack_ts)
        self._metrics.messages_sent.labels(kind=row.kind).inc()
