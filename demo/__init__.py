"""`mathfi-bot demo`: the simulator, the local Slack sink and the bot in one process.

Outside the product package: it is the only place where bot/ and simulator/ meet.
"""
