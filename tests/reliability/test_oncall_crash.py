"""On-call (issue #17), process level: a SIGKILL between a re-page's commit and its
delivery, then a restart: the re-page reaches Slack exactly once.

The re-page row is committed with the alert's advance (`pages` + 1) in one transaction.
`hang`: Slack holds the post, the kill lands during the call and the post still lands
(a late completion): after the restart the row is looked up, found, and not posted again.
`ratelimit`: Slack refused the post (429), the kill lands with the row pending: after the
restart it is posted, once. Either way no second page row appears (its dedupe key)."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.slack import SlackFault
from tests.reliability.harness import CHANNEL, NOTE_EVENT, eventually, running
from tests.scripts import payload

ONCALL = "<!subteam^S0ONCALL|@oncall>"
PERFS = {"BSEV01": 0.60, "BSEV02": 0.62, "BSIX01": 0.55, "BFIF01": 0.58}
FAILING = [
    payload("RUNNING", PERFS),
    payload("FAILED", PERFS, statuses={name: "FAILED" for name in PERFS}),
]


@pytest.mark.parametrize("fault", ["hang", "ratelimit"])
async def test_sigkill_after_a_repage_is_committed_posts_it_once(
    tmp_path: Path, fault: str
) -> None:
    env = {"SLACK_TIMEOUT": "1", "ONCALL_REPAGE": "1", "ONCALL_REPAGE_MAX": "1"}
    async with running(tmp_path, **env) as h:
        key = h.sim.script_job(FAILING)
        await h.subscribe(key, options=f"--mention {ONCALL}")
        h.sim.advance(key)
        await eventually(
            lambda: h.rows("SELECT 1 FROM alerts a JOIN outbox o ON o.id = a.outbox_id "
                           "WHERE o.state = 'sent'"),
            timeout=15, what="the alert posted",
        )  # fmt: skip
        if fault == "hang":
            h.sink.add_fault(SlackFault(kind="hang", method="chat.postMessage", seconds=1.5))
            waiting_in = ("sending",)
        else:
            h.sink.add_fault(SlackFault(kind="ratelimit", method="chat.postMessage", retry_after=3))
            waiting_in = ("pending",)

        def repage_rows() -> list[dict[str, object]]:
            return h.rows("SELECT * FROM outbox WHERE kind = 'oncall_repage'")

        def stuck() -> bool:
            rows = repage_rows()
            return bool(rows) and rows[0]["state"] in waiting_in and int(rows[0]["attempts"]) > 0

        await eventually(stuck, timeout=15, what=f"the re-page row {waiting_in[0]}")
        (alert,) = h.rows("SELECT * FROM alerts")
        assert alert["pages"] == 1  # committed with its row
        await h.service.kill()
        await h.sink.settle()  # a held post completes now (late), as Slack would
        h.sink.clear_faults()

        await h.service.start(h.http)
        await eventually(
            lambda: [r for r in repage_rows() if r["state"] == "sent"],
            timeout=20, what="the re-page sent after the restart",
        )  # fmt: skip
        (row,) = repage_rows()
        posted = [
            m
            for m in h.posted(CHANNEL, NOTE_EVENT)
            if (m.metadata or {})["event_payload"]["outbox_id"] == row["id"]
        ]
        assert len(posted) == 1, [m.text for m in posted]
        assert posted[0].text.startswith(ONCALL) and "Still not acknowledged" in posted[0].text
        assert posted[0].reply_broadcast
        (alert,) = h.rows("SELECT * FROM alerts")
        assert alert["pages"] == 1 and alert["acked_at"] is None
