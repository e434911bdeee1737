"""Scripted MathFi progress payloads shared by the integration tests."""

from __future__ import annotations

from typing import Any

ALGORITHMS = ("BSEV01", "BSEV02", "BSIX01", "BFIF01")


def payload(
    status: str,
    perfs: dict[str, float] | None = None,
    *,
    statuses: dict[str, str] | None = None,
    target: float = 0.85,
) -> dict[str, Any]:
    jobs = []
    for i, name in enumerate(ALGORITHMS):
        if perfs is None:
            continue
        value = perfs.get(name)
        jobs.append(
            {
                "trainingJobKey": f"00000000-0000-4000-8000-00000000000{i}",
                "algorithm": name,
                "status": (statuses or {}).get(name, "RUNNING"),
                "latestPerformance": value,
                "recentPerformances": [] if value is None else [round(value - 0.01, 4), value],
            }
        )
    return {"status": status, "targetPerformance": target, "jobs": jobs}


LIFECYCLE = [
    payload("PENDING"),
    payload("RUNNING", {"BSEV01": 0.60, "BSEV02": 0.62, "BSIX01": 0.55, "BFIF01": 0.58}),
    payload("RUNNING", {"BSEV01": 0.61, "BSEV02": 0.74, "BSIX01": 0.56, "BFIF01": 0.59}),
    # noise below the minimum improvement: the card changes, nobody is told
    payload("RUNNING", {"BSEV01": 0.611, "BSEV02": 0.742, "BSIX01": 0.561, "BFIF01": 0.591}),
    payload(
        "COMPLETED",
        {"BSEV01": 0.62, "BSEV02": 0.86, "BSIX01": 0.57, "BFIF01": 0.60},
        statuses={
            "BSEV01": "NOT_COMPLETED",
            "BSEV02": "COMPLETED",
            "BSIX01": "NOT_COMPLETED",
            "BFIF01": "NOT_COMPLETED",
        },
    ),
]
CHAMPION_TRAINING = {
    "status": "COMPLETED",
    "targetPerformance": 0.85,
    "achievedPerformance": 0.86,
    "trainingPerformance": 0.88,
    "testPerformance": 0.85,
    "modelKey": "7d0c7c3e-0c1b-4b8e-9a51-1c5f8e2d9a10",
}
