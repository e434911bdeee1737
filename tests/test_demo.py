"""`mathfi-bot demo` end to end (accelerated): three fates, the real signed command path,
and a fourth job cancelled through the card's Cancel button (the real signed click)."""

from __future__ import annotations

import io

from rich.console import Console

from demo.run import run_demo


async def test_demo_runs_three_fates_and_exits_zero() -> None:
    out = io.StringIO()
    code = await run_demo(
        speed=120.0,
        jobs=3,
        seed=7,
        plain=True,
        max_seconds=60.0,
        console=Console(file=out, width=110, force_terminal=False),
    )
    text = out.getvalue()
    assert code == 0, text
    assert text.count("→ HTTP 200") == 6  # four subscribes, one personal, the Cancel click
    assert "[Cancel training]" in text and "Cancelled by @U0ALICE" in text
    for fate in ("COMPLETED", "NOT_COMPLETED", "FAILED"):
        assert f"│ {fate}" in text or f"{fate} " in text
    assert "Champion" in text and "@ml-oncall" in text  # alert mentions the on-call group
    assert "4 cards" in text and "│ cancelled     │ CANCELLED" in text
    assert "in alice's DM" in text and "alice's DM" in text.split("Demo summary")[0]
    assert "(FAILED): ✅ Acknowledged by <@U0ALICE>" in text  # through the signed button
    assert "Traceback" not in text
