"""A whole job lifecycle: simulator → poller → sender → Slack sink, over real HTTP."""

from __future__ import annotations

from tests.conftest import Env
from tests.scripts import CHAMPION_TRAINING, LIFECYCLE


def chat_calls(env: Env) -> list[tuple[str, str | None, bool]]:
    """(method, thread_ts or None, reply_broadcast) for every chat.* call, in order."""
    calls = []
    for method, params in env.sink.calls:
        if method in {"chat.postMessage", "chat.update"}:
            broadcast = str(params.get("reply_broadcast", "")).lower() in {"true", "1"}
            calls.append((method, params.get("thread_ts"), broadcast))
    return calls


async def test_whole_lifecycle_posts_and_edits_in_order(env: Env) -> None:
    key = env.sim.script_job(LIFECYCLE, training=CHAMPION_TRAINING)
    status, ack, response_url = await env.command(
        f"subscribe {key} --mention <!subteam^S0ONCALL|@oncall>"
    )
    assert status == 200
    assert "Asking MathFi" in str(ack)
    reply = await env.reply(response_url)
    assert "Now watching" in reply["text"] and reply.get("response_type") == "ephemeral"

    await env.cycle()  # the card
    card = env.sink.channels["C0TEST"][0]
    assert card.metadata and card.metadata["event_type"] == "mathfi_card"
    assert "PENDING" in card.text

    for _ in range(1, len(LIFECYCLE)):
        env.sim.advance(key)
        await env.cycle(20.0)  # poll (PENDING is polled at twice the interval)
        await env.cycle(1.0)  # the paced card edit

    calls = chat_calls(env)
    ts = card.ts
    assert calls == [
        ("chat.postMessage", None, False),  # card
        ("chat.postMessage", ts, False),  # PENDING → RUNNING (+ first best)
        ("chat.update", None, False),
        ("chat.postMessage", ts, False),  # new best 0.74 by BSEV02
        ("chat.update", None, False),
        ("chat.update", None, False),  # noise: card only
        ("chat.postMessage", ts, True),  # COMPLETED, broadcast, with the champion
        ("chat.update", None, False),
    ]
    replies = env.sink.replies("C0TEST", ts)
    assert [r.metadata["event_payload"]["kind"] for r in replies if r.metadata] == [
        "job_status",
        "new_best",
        "champion",
    ]
    final = replies[-1]
    assert "BSEV02" in final.text and "0.86" in final.text
    assert CHAMPION_TRAINING["modelKey"] in str(final.blocks)
    assert "@oncall" not in final.text  # COMPLETED is good news: no on-call mention
    assert "COMPLETED" in env.sink.channels["C0TEST"][0].text  # the card was edited in place
    # Nothing left to send, every row sent exactly once, no more polling of a finished job.
    counts = await env.service.store.outbox_counts()
    assert counts.get("pending", 0) == 0 and counts.get("dead", 0) == 0
    assert env.service.poller.watched == 0


async def test_failed_job_mentions_on_call_and_broadcasts(env: Env) -> None:
    failed = [LIFECYCLE[1], {**LIFECYCLE[2], "status": "FAILED"}]
    key = env.sim.script_job(failed, training={"status": "FAILED", "targetPerformance": 0.85})
    _, _, url = await env.command(f"subscribe {key} --mention <!subteam^S0ONCALL|@oncall>")
    await env.reply(url)  # the subscribe is done (its card queued) before the first cycle
    await env.cycle()
    env.sim.advance(key)
    await env.cycle(10.0)
    alert = env.sink.channels["C0TEST"][-1]
    assert alert.thread_ts == env.sink.channels["C0TEST"][0].ts
    assert alert.reply_broadcast
    assert alert.text.startswith("<!subteam^S0ONCALL|@oncall>")
    assert "FAILED" in alert.text


async def test_one_poll_per_job_however_many_channels(env: Env) -> None:
    key = env.sim.script_job(LIFECYCLE[1:], training=CHAMPION_TRAINING)
    for channel in ("C1", "C2", "C3"):
        status, _, url = await env.command(f"subscribe {key}", channel=channel)
        assert status == 200
        await env.reply(url)
    before = env.sim.stats.progress_polls
    env.sim.advance(key)
    await env.cycle(10.0)
    assert env.sim.stats.progress_polls - before == 1
    await env.cycle(1.0)
    for channel in ("C1", "C2", "C3"):
        texts = [m.text for m in env.sink.channels[channel]]
        assert len(texts) == 2, texts  # the card and one reply (new best 0.74)
