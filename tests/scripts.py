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


# REFERENCE.md §5.3 (the documented progress example), reproduced as data.
REFERENCE_PROGRESS: dict[str, Any] = {
    "status": "COMPLETED",
    "jobs": [
        {
            "trainingJobKey": "bc9aa412-8d4f-4b00-89af-0e6e3dcf8e57",
            "algorithm": "BSEV01",
            "status": "NOT_COMPLETED",
            "latestPerformance": 0.6199,
            "recentPerformances": [0.6199, 0.6199, 0.6199, 0.6199, 0.6199],
        },
        {
            "trainingJobKey": "d9ab4260-6416-45d6-91e4-7b0b8a0ad56b",
            "algorithm": "BFIF01",
            "status": "NOT_COMPLETED",
            "latestPerformance": 0.7714,
            "recentPerformances": [0.7713, 0.7713, 0.7714, 0.7714],
        },
        {
            "trainingJobKey": "e7edd490-3ee2-49f8-a49c-e9f9759965e8",
            "algorithm": "BSIX01",
            "status": "NOT_COMPLETED",
            "latestPerformance": 0.8595,
            "recentPerformances": [0.8579, 0.8602, 0.866, 0.8595],
        },
        {
            "trainingJobKey": "f2275fde-73ed-43d0-948a-17ff8f586874",
            "algorithm": "BSEV02",
            "status": "COMPLETED",
            "latestPerformance": 0.92,
            "recentPerformances": [0.9194, 0.92, 0.92, 0.9197, 0.92],
        },
    ],
}
