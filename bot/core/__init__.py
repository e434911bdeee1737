"""The pure core: MathFi's wire models, the snapshot, events, the diff and the fan-out.

No I/O here: nothing of aiohttp, Slack, SQLite or the clock (time comes in as `now`).
"""
