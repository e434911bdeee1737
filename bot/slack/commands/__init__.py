"""`/mathfi` slash commands and the card buttons.

context.py       what every handler shares (`CommandContext`, usage lines, MathFi snapshot)
subscriptions.py subscribe, unsubscribe, list, mute, unmute, status, help, Refresh
listeners.py     the bolt listeners (`register`): ack first, then the work
actions.py       train, cancel, datasets, their confirmations, the card's Cancel, Retrain
acting.py        what acting needs (`ActionTools`: runner, MathFi, permissions, confirmations)
action_record.py acting on the record: audit, metrics, the job's thread, the card at once
oncall.py        the Acknowledge button of an on-call alert
"""

from bot.slack.commands.acting import ActionTools, Confirmations
from bot.slack.commands.context import CommandContext, MathFiReader
from bot.slack.commands.listeners import register
from bot.slack.commands.subscriptions import subscribe_snapshot

__all__ = [
    "ActionTools",
    "CommandContext",
    "Confirmations",
    "MathFiReader",
    "register",
    "subscribe_snapshot",
]
