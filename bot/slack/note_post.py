"""One message of an outbox row that is neither a job's card nor its reply to the poller:
the line saying who changed a subscription or acted on a job, the daily digest
(`bot.slack.delivery`), an on-call re-page or acknowledgement line
(`bot.slack.oncall_delivery`). Posted in the job card's thread when given one, else in the
channel, and never twice: when an earlier attempt may have reached Slack, the message is
looked up first (its metadata names its row).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from bot.errors import SlackDeliveryError
from bot.metrics import Metrics
from bot.slack.api import NOTE_EVENT, SlackCaller, metadata
from bot.slack.render import Message
from store import AsyncStore, OutboxRow

# The sender's logger: these lines read as before the sender was split.
log = logging.getLogger("bot.slack.sender")

# A row whose last attempt certainly did not reach Slack needs no lookup before a retry.
NOT_POSTED = "not_posted: "

Failed = Callable[[OutboxRow, SlackDeliveryError, bool], Awaitable[None]]  # row, error, unknown


def may_have_posted(row: OutboxRow) -> bool:
    """An earlier attempt of the row may have reached Slack: look before posting."""
    return bool(row.attempts) and not (row.last_error or "").startswith(NOT_POSTED)


async def drop_unrenderable(store: AsyncStore, row: OutboxRow, err: ValueError) -> None:
    """A row this version cannot render can never be sent: left pending or `sending`, it
    would block its channel for good. It is marked dead, with why."""
    log.error("outbox row %s cannot be rendered, dropping it: %s", row.id, err)
    await store.mark_dead(row.id, error=f"unrenderable: {err}"[:500])


async def post_message(
    slack: SlackCaller, row: OutboxRow, message: Message, event: str, **thread: str | bool
) -> str:
    """`chat.postMessage` of a row's message (`event`: a card or a note; its metadata names
    the row, for the lookups), in the channel or with `thread` in a thread; its ts."""
    answer = await slack.call(
        "chat.postMessage",
        channel=row.channel_id,
        text=message.text,
        blocks=message.blocks,
        metadata=metadata(event, row),
        unfurl_links=False,
        unfurl_media=False,
        **thread,
    )
    return str(answer["ts"])


class NotePoster:
    """`failed`: what a failed attempt means for the row (`Delivery._failed`); `posted`: a
    message went to the channel (counts, pacing)."""

    def __init__(
        self,
        store: AsyncStore,
        slack: SlackCaller,
        *,
        metrics: Metrics,
        failed: Failed,
        posted: Callable[[str], None],
    ) -> None:
        self._store, self._slack, self._metrics = store, slack, metrics
        self.failed = failed  # also for the rows it does not post (the on-call edit)
        self._posted = posted

    async def post(
        self,
        row: OutboxRow,
        render: Callable[[], Message],
        *,
        card_ts: str | None,
        broadcast: bool | None = None,
    ) -> None:
        """Post `render()` for the row (in the thread of `card_ts`; `broadcast`, when given,
        is the reply's `reply_broadcast`), after the lookup when an earlier attempt may
        have landed. A render that raises ValueError drops the row (`drop_unrenderable`)."""
        if may_have_posted(row) and await self._found(row, card_ts):
            return
        thread: dict[str, str | bool] = {"thread_ts": card_ts} if card_ts else {}
        if card_ts and broadcast is not None:
            thread["reply_broadcast"] = broadcast
        try:
            message = render()
            await self._store.mark_sending(row.id)
            ts = await post_message(self._slack, row, message, NOTE_EVENT, **thread)
        except SlackDeliveryError as err:
            if err.error == "thread_not_found":  # the card was deleted: post in the channel
                await self._store.forget_card(channel_id=row.channel_id, job_key=row.job_key)
            await self.failed(row, err, err.posted_unknown)
            return
        except ValueError as err:  # bad payload (pydantic's errors are ValueErrors)
            await drop_unrenderable(self._store, row, err)
            return
        self._posted(row.channel_id)
        await self._store.mark_sent(row.id, ts=ts)
        self._metrics.messages_sent.labels(kind=row.kind).inc()

    async def _found(self, row: OutboxRow, card_ts: str | None) -> bool:
        """Whether the row is settled without a post: Slack has its message (marked sent),
        or Slack could not be asked now (retried later, the outcome still unknown). A
        lookup Slack refuses for good (e.g. missing_scope) cannot help: post rather than
        block the channel forever."""
        where = {"channel": row.channel_id} | ({"ts": card_ts} if card_ts else {})
        method = "conversations.replies" if card_ts else "conversations.history"
        try:
            found = await self._slack.find_message(row, NOTE_EVENT, method, **where)
        except SlackDeliveryError as err:
            if err.transient:  # still unknown: look again next time
                await self.failed(row, err, True)
                return True
            log.warning(
                "cannot check whether outbox row %s reached Slack (%s); posting it",
                row.id,
                err.error,
            )
            return False
        if found is None:
            return False
        await self._store.mark_sent(row.id, ts=found)
        return True
