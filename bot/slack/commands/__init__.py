"""`/mathfi` slash commands and the card buttons.

context.py       what every handler shares (`CommandContext`, usage lines, MathFi snapshot)
subscriptions.py subscribe, unsubscribe, list, mute, unmute, status, help, Refresh
listeners.py     the bolt listeners (`register`): ack first, then the work
oncall.py        the Acknowledge button of an on-call alert
"""

from bot.slack.commands.context import CommandContext, MathFiReader
from bot.slack.commands.listeners import register
from bot.slack.commands.subscriptions import subscribe_snapshot

__all__ = ["CommandContext", "MathFiReader", "register", "subscribe_snapshot"]
