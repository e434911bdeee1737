"""How a command's answer reaches the user without the ack ever waiting on SQLite.

Slack wants the ack within 3 s, and we want it within a tenth of that: a command that needs
the store is started at once and given `ANSWER_WITHIN` seconds; if the store has answered by
then, the answer goes in the ack, else the ack says "working on it" and the answer follows
on `response_url` when the store answers. While another process holds the database, the
store's writes fail after their busy timeout: they are tried again (`STORE_RETRY_DELAYS`,
about half a minute in all) before the user is told the database refused, so nothing the
user asked for is dropped in silence.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from slack_bolt.async_app import AsyncAck, AsyncRespond

from bot.metrics import Metrics
from bot.slack.render import Message, render_error
from store import StoreUnavailable
from store.db import refused_row

log = logging.getLogger("bot.slack.commands")

T = TypeVar("T")

# How long an ack waits for the store before it says "working on it".
ANSWER_WITHIN = 0.05
# Sleeps between the tries of a store call that the database refused (locked, busy): with
# the store's own busy timeout on each try, about 30 s before the user hears it failed.
STORE_RETRY_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 5.0, 5.0)
WORKING = "⏳ Working on it…"
DATABASE_DOWN = "The bot's database is unavailable right now; nothing was changed."


async def patiently(
    call: Callable[[], Awaitable[T]], *, sleep: Callable[[float], Awaitable[None]]
) -> T:
    """`call()`, tried again while the database refuses it (not when it refused the data:
    a constraint fails the same way every time)."""
    for delay in STORE_RETRY_DELAYS:
        try:
            return await call()
        except StoreUnavailable as err:
            if refused_row(err):
                raise
            log.info("database busy (%s); trying again in %.1f s", err, delay)
        await sleep(delay)
    return await call()


def reply_body(message: Message) -> dict[str, Any]:
    body: dict[str, Any] = {"response_type": "ephemeral", "text": message.text}
    if message.blocks:
        body["blocks"] = message.blocks
    return body


NOTHING_CHANGED = "Something went wrong on our side; nothing was changed."


def internal_error(where: str, *, said: str = NOTHING_CHANGED) -> Message:
    """A bug of ours: logged with a reference that the person is shown with `said`."""
    ref = secrets.token_hex(4)
    log.exception("%s failed (reference %s)", where, ref)
    return render_error(said, reference=ref)


async def settled(
    work: Coroutine[Any, Any, Message], *, name: str, where: str, metrics: Metrics
) -> Message:
    """The command's answer, whatever happened: a refusal of the database or a bug becomes
    a message for the user (and the commands metric counts the outcome)."""
    try:
        message, outcome = await work, "ok"
    except StoreUnavailable as err:
        log.error("database unavailable during %s: %s", name, err)
        message = render_error(f"{DATABASE_DOWN} Try again in a minute.")
        outcome = "error"
    except Exception:
        message, outcome = internal_error(where), "error"
    metrics.commands.labels(command=name, outcome=outcome).inc()
    return message


async def ack_or_respond(
    answer: Coroutine[Any, Any, Message],
    *,
    ack: AsyncAck,
    respond: AsyncRespond,
    within: float = ANSWER_WITHIN,
) -> None:
    """The answer in the ack if it is ready within `within` seconds, else "working on it"
    in the ack and the answer on `response_url` once it is ready."""
    task = asyncio.ensure_future(answer)
    done, _ = await asyncio.wait({task}, timeout=within)
    if done:
        await ack(**reply_body(task.result()))
        return
    await ack(response_type="ephemeral", text=WORKING)
    await respond(**reply_body(await task))
