"""The script a user would write instead of the bot: the naive reference.

A sequential loop over the job keys: GET each job's progress (urllib, a new connection
each time, like `requests.get`), compare the body with the last one kept in sqlite3, and
on any difference store it and post it to Slack (here the local sink). No concurrency, no
schedule: it goes round the list as fast as it can. Stops after `--duration` seconds and
prints one JSON object.

    python -m bench.naive_poller --mathfi http://127.0.0.1:PORT --slack http://127.0.0.1:PORT \
        --keys keys.txt --duration 5
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import PASSWORD, SINK_TOKEN, USERNAME, Stopwatch, emit, ratio

CHANNEL = "C0NAIVE"


def _call(url: str, *, body: dict[str, Any] | None = None, token: str | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


def run_naive(
    mathfi: str, slack: str, *, keys: Sequence[str], duration: float, database: str
) -> dict[str, Any]:
    login = {"username": USERNAME, "password": PASSWORD}
    token = json.loads(_call(f"{mathfi}/api/login", body=login))["access_token"]
    db = sqlite3.connect(database)
    db.execute("CREATE TABLE IF NOT EXISTS last (key TEXT PRIMARY KEY, body TEXT)")
    polls = changes = posts = 0
    watch = Stopwatch()
    watch.start()
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        for key in keys:
            if time.monotonic() >= deadline:
                break
            body = _call(f"{mathfi}/api/v1/training/{key}/progress", token=token).decode()
            polls += 1
            row = db.execute("SELECT body FROM last WHERE key = ?", (key,)).fetchone()
            if row is not None and row[0] == body:
                continue
            changes += 1
            db.execute("INSERT OR REPLACE INTO last (key, body) VALUES (?, ?)", (key, body))
            db.commit()
            if row is not None:
                text = f"Training job {key} changed: {body[:300]}"
                _call(
                    f"{slack}/api/chat.postMessage",
                    body={"channel": CHANNEL, "text": text},
                    token=SINK_TOKEN,
                )
                posts += 1
    watch.stop()
    db.close()
    return {
        "polls": polls,
        "changes": changes,
        "posts": posts,
        "seconds": round(watch.wall, 3),
        "polls_per_s": round(polls / watch.wall, 1),
        "cpu_seconds": round(watch.cpu, 3),
        "core_fraction": ratio(watch.cpu, watch.wall),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mathfi", required=True, help="MathFi (simulator) base URL")
    parser.add_argument("--slack", required=True, help="Slack sink base URL (without /api/)")
    parser.add_argument("--keys", required=True, type=Path, help="file: one job key a line")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--database", default=":memory:")
    args = parser.parse_args(argv)
    keys = [line.strip() for line in args.keys.read_text().splitlines() if line.strip()]
    result = run_naive(
        args.mathfi, args.slack, keys=keys, duration=args.duration, database=args.database
    )
    emit({"benchmark": "naive_poller", "jobs": len(keys)} | result)


if __name__ == "__main__":
    main()
