"""`/mathfi digest daily HH:MM [--tz Zone]` and `/mathfi digest off` (issue #14): the
channel's daily digest, on or off. Only the store is asked (one turn of its thread, tried
again while the database refuses it); the change is audited (`bot.audit`). The digest loop
(`bot.engine.digest`) does the rest."""

from __future__ import annotations

from bot.engine.digest import local_now, skip_today
from bot.slack import replies
from bot.slack.answers import patiently
from bot.slack.audit import Actor, audit
from bot.slack.command_text import Digest
from bot.slack.commands.context import CommandContext
from bot.slack.render import Message
from store import DigestSetting, Store


def digest_note(setting: DigestSetting | None, *, command: str) -> str:
    """The channel's digest setting in one line (`list`)."""
    if setting is None:
        return f"📰 No daily digest (`{command} digest daily 09:00` to get one)."
    return f"📰 Daily digest at {setting.daily_at} ({setting.tz}); `{command} digest off` stops it."


async def run_digest(ctx: CommandContext, cmd: Digest, *, channel_id: str, actor: Actor) -> Message:
    now = ctx.clock()
    if cmd.daily_at is None:

        def off(store: Store) -> DigestSetting | None:
            return store.digest_off(channel_id=channel_id, user_id=actor.user_id, now=now)

        before = await patiently(lambda: ctx.store.run(off), sleep=ctx.sleep)
        audit(actor, channel_id, "digest off" if before else "digest already off")
        if before is None:
            return replies.plain(f"{replies.here(channel_id, start=True)} has no daily digest.")
        return replies.plain(
            f"📰 Daily digest off (it was at {before.daily_at}, {before.tz}). "
            f"`{ctx.command} digest daily 09:00` turns it on again."
        )
    daily_at = cmd.daily_at
    skip = skip_today(daily_at, cmd.tz, now)

    def on(store: Store) -> tuple[DigestSetting | None, DigestSetting]:
        return store.set_digest(
            channel_id=channel_id,
            team_id=actor.team_id or None,
            daily_at=daily_at,
            tz=cmd.tz,
            user_id=actor.user_id,
            skip_day=skip,
            now=now,
        )

    before, after = await patiently(lambda: ctx.store.run(on), sleep=ctx.sleep)
    was = f" (was {before.daily_at} {before.tz})" if before is not None else ""
    audit(actor, channel_id, f"digest daily {after.daily_at} {after.tz}{was}")
    today = local_now(cmd.tz, now).date().isoformat()
    first = (
        "tomorrow" if after.last_sent_day is not None and after.last_sent_day >= today else "today"
    )
    return replies.plain(
        f"📰 {replies.here(channel_id, start=True)} gets a daily digest at {after.daily_at} "
        f"({after.tz}), the first "
        f"{first}: jobs finished since the last one, jobs still running; nothing on a quiet "
        f"day. Stop it with `{ctx.command} digest off`."
    )
