"""The channels and messages of the local Slack sink, and the Web API methods on them.

chat.postMessage, chat.update, chat.delete, chat.postEphemeral, conversations.history,
conversations.replies and conversations.info, answering with Slack's shapes and errors.
Channels are C… (public), G… (private) and D… (a person's IM with the bot: it exists once
opened, see `open_im`). A message records who posted it (`user`, and `bot_id` for an app),
so the bot's own messages can be told from another app's look-alikes (`plant`).

Imports nothing from bot/ or store/.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from simulator import slack_shapes as shapes
from simulator.slack_shapes import ApiError, Params

log = logging.getLogger("simulator.slack")

Listener = Callable[[str, "SinkMessage"], None]
TOMBSTONE_TEXT = "This message was deleted."
SLACKBOT = "USLACKBOT"


@dataclass
class SinkMessage:
    ts: str
    channel: str
    text: str
    blocks: list[dict[str, Any]]
    metadata: dict[str, Any] | None
    thread_ts: str | None
    reply_broadcast: bool
    edits: int
    user: str
    bot_id: str | None = None
    subtype: str | None = None  # "tombstone": a deleted thread parent whose replies remain


class MessageStore:
    """Every channel's messages, in posting order, as the bot's token sees them."""

    def __init__(self, *, team_id: str, bot_user_id: str, bot_id: str, clock: Any) -> None:
        self.team_id, self.bot_user_id, self.bot_id = team_id, bot_user_id, bot_id
        self._clock: Callable[[], float] = clock
        self.channels: dict[str, list[SinkMessage]] = {}
        self.ephemerals: dict[str, list[SinkMessage]] = {}
        self.archived: set[str] = set()
        self.ims: dict[str, str] = {}  # IM channel id -> the person's user id
        self.listeners: list[Listener] = []
        self.known_user: Callable[[str], bool] = lambda user_id: True
        self._last_micros = 0

    # ---- for tests and the sink ----------------------------------------------------

    def top_level(self, channel: str) -> list[SinkMessage]:
        return [m for m in self.channels.get(channel, []) if m.thread_ts is None]

    def replies(self, channel: str, thread_ts: str) -> list[SinkMessage]:
        return [m for m in self.channels.get(channel, []) if m.thread_ts == thread_ts]

    def open_im(self, user_id: str) -> tuple[str, bool]:
        """(the stable IM channel id of `user_id`, whether it was open already)."""
        channel = "D" + user_id[1:]
        already = channel in self.ims
        self.ims[channel] = user_id
        return channel, already

    def plant(
        self,
        channel: str,
        text: str,
        *,
        user: str,
        bot_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        thread_ts: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
    ) -> SinkMessage:
        """A message posted by someone else (a person, or another app when `bot_id`)."""
        message = SinkMessage(
            self.next_ts(), channel, text, blocks or [], metadata, thread_ts, False, 0, user
        )
        message.bot_id = bot_id
        self.store(message)
        return message

    def store(self, message: SinkMessage) -> None:
        self.channels.setdefault(message.channel, []).append(message)
        self.notify("post", message)

    def notify(self, kind: str, message: SinkMessage) -> None:
        for listener in self.listeners:
            try:
                listener(kind, message)
            except Exception:  # a broken live view must not break the sink
                log.exception("sink listener failed on %s of %s", kind, message.ts)

    def next_ts(self) -> str:
        """Strictly increasing, Slack-shaped ("1700000000.000100"), from the clock."""
        self._last_micros = max(self._last_micros + 1, int(self._clock() * 1_000_000))
        seconds, micros = divmod(self._last_micros, 1_000_000)
        return f"{seconds}.{micros:06d}"

    # ---- Web API methods -----------------------------------------------------------

    def post_message(self, params: Params) -> Params:
        channel = self.channel(params, writing=True)
        text, blocks = shapes.content(params)
        thread_ts: str | None = None
        if params.get("thread_ts"):
            parent = self._find(channel, str(params["thread_ts"]), "thread_not_found")
            thread_ts = parent.thread_ts or parent.ts  # a reply's ts means its thread
        message = SinkMessage(
            ts=self.next_ts(),
            channel=channel,
            text=text,
            blocks=blocks,
            metadata=shapes.metadata(params),
            thread_ts=thread_ts,
            reply_broadcast=thread_ts is not None and shapes.truthy(params.get("reply_broadcast")),
            edits=0,
            user=self.bot_user_id,
            bot_id=self.bot_id,
        )
        self.store(message)
        return {"channel": channel, "ts": message.ts, "message": self.to_api(message, True)}

    def update(self, params: Params) -> Params:
        channel = self.channel(params, writing=True)
        message = self._find(channel, str(params.get("ts") or ""), "message_not_found")
        if not self._own(message):
            raise ApiError("cant_update_message")
        text, blocks = shapes.content(params)
        if "text" in params:
            message.text = text
        if "blocks" in params or "text" in params:  # text without blocks drops the blocks
            message.blocks = blocks
        if "metadata" in params:
            message.metadata = shapes.metadata(params)
        message.edits += 1
        self.notify("update", message)
        return {
            "channel": channel,
            "ts": message.ts,
            "text": message.text,
            "message": self.to_api(message, True),
        }

    def delete(self, params: Params) -> Params:
        """A reply goes; a parent with replies leaves a tombstone, as Slack shows it."""
        channel = self.channel(params, writing=True)
        message = self._find(channel, str(params.get("ts") or ""), "message_not_found")
        if message.subtype == "tombstone":
            raise ApiError("message_not_found")
        if not self._own(message):
            raise ApiError("cant_delete_message")
        messages = self.channels[channel]
        if message.thread_ts is None and self.replies(channel, message.ts):
            tombstone = SinkMessage(
                message.ts, channel, TOMBSTONE_TEXT, [], None, None, False, 0, SLACKBOT
            )
            tombstone.subtype = "tombstone"
            messages[messages.index(message)] = tombstone
        else:
            messages.remove(message)
            tombstones = [m for m in messages if m.subtype == "tombstone"]
            for parent in tombstones:  # the last reply of a deleted parent takes it along
                if parent.ts == message.thread_ts and not self.replies(channel, parent.ts):
                    messages.remove(parent)
        self.notify("delete", message)
        return {"channel": channel, "ts": message.ts}

    def post_ephemeral(self, params: Params) -> Params:
        channel = self.channel(params, writing=True)
        user = params.get("user")
        if not isinstance(user, str) or not user:
            raise ApiError("user_not_found")
        text, blocks = shapes.content(params)
        ts = self.next_ts()
        message = SinkMessage(ts, channel, text, blocks, None, None, False, 0, user, self.bot_id)
        self.ephemerals.setdefault(channel, []).append(message)
        return {"message_ts": ts}

    def history(self, params: Params) -> Params:
        channel = self.channel(params, writing=False)
        visible = [
            m
            for m in reversed(self.channels.get(channel, []))
            if m.thread_ts is None or m.reply_broadcast  # broadcast replies show in the channel
        ]
        oldest, latest = float(params.get("oldest") or 0), float(params.get("latest") or "inf")
        visible = [m for m in visible if oldest < float(m.ts) < latest]
        return self._page(visible, params)

    def replies_of(self, params: Params) -> Params:
        channel = self.channel(params, writing=False)
        root = self._find(channel, str(params.get("ts") or ""), "thread_not_found")
        if root.thread_ts is not None:
            root = self._find(channel, root.thread_ts, "thread_not_found")
        return self._page([root, *self.replies(channel, root.ts)], params)

    def info(self, params: Params) -> Params:
        channel = self.channel(params, writing=False)
        kind = channel[0]
        found: Params = {
            "id": channel,
            "name": f"channel-{channel.lower()}",
            "is_channel": kind == "C",
            "is_group": kind == "G",
            "is_im": kind == "D",
            "is_archived": channel in self.archived,
            "is_member": True,
        }
        if kind == "D":
            found |= {"user": self.ims[channel], "is_open": True}
            del found["name"]  # an IM has no name
        return {"channel": found}

    # ---- helpers -------------------------------------------------------------------

    def channel(self, params: Params, *, writing: bool) -> str:
        """The channel a call names; a user id names that person's IM with the bot."""
        channel = params.get("channel")
        if isinstance(channel, str) and channel[:1] in ("U", "W") and writing:
            if not self.known_user(channel):
                raise ApiError("channel_not_found")
            channel, _ = self.open_im(channel)  # chat.postMessage to a user id lands in the IM
        if not isinstance(channel, str) or channel[:1] not in ("C", "G", "D"):
            raise ApiError("channel_not_found")
        if channel[0] == "D" and channel not in self.ims:
            raise ApiError("channel_not_found")
        if writing and channel in self.archived:
            raise ApiError("is_archived")
        return channel

    def _own(self, message: SinkMessage) -> bool:
        return message.user == self.bot_user_id and message.bot_id == self.bot_id

    def _find(self, channel: str, ts: str, error: str) -> SinkMessage:
        for message in self.channels.get(channel, []):
            if message.ts == ts:
                return message
        raise ApiError(error)

    def _page(self, messages: list[SinkMessage], params: Params) -> Params:
        start = int(str(params.get("cursor") or "0").removeprefix("next_") or 0)
        limit = min(max(int(params.get("limit") or 100), 1), 999)
        with_metadata = shapes.truthy(params.get("include_all_metadata"))
        chunk = messages[start : start + limit]
        more = start + limit < len(messages)
        return {
            "messages": [self.to_api(m, with_metadata) for m in chunk],
            "has_more": more,
            "response_metadata": {"next_cursor": f"next_{start + limit}" if more else ""},
        }

    def to_api(self, message: SinkMessage, with_metadata: bool) -> Params:
        out: Params = {"type": "message", "user": message.user, "text": message.text}
        out |= {"ts": message.ts, "team": self.team_id}
        if message.bot_id is not None:
            out["bot_id"] = message.bot_id
        if message.subtype == "tombstone":
            out |= {"subtype": "tombstone", "hidden": True}
        if message.blocks:
            out["blocks"] = message.blocks
        if message.edits:
            out["edited"] = {"user": message.user, "ts": message.ts}
        if message.thread_ts is not None:
            out["thread_ts"] = message.thread_ts
            if message.reply_broadcast:
                out["subtype"] = "thread_broadcast"
        elif replies := self.replies(message.channel, message.ts):
            out |= {"thread_ts": message.ts, "reply_count": len(replies)}
        if with_metadata and message.metadata is not None:
            out["metadata"] = message.metadata
        return out
