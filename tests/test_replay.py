"""A captured signed request is refused when it comes again (issue #11, hole 9)."""

from __future__ import annotations

from urllib.parse import urlencode

from bot.app.replay import ReplayGuard
from tests.conftest import SIGNING_SECRET, TEAM, Env, sign
from tests.scripts import LIFECYCLE


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_second_identical_request_is_a_replay_a_different_one_is_not() -> None:
    clock = Clock(1_700_000_000.0)
    guard = ReplayGuard(SIGNING_SECRET, clock=clock)
    body = b"command=%2Fmathfi&text=list"
    headers = sign(body.decode(), timestamp=int(clock.now))
    assert not guard.is_replay(body, headers)
    assert guard.is_replay(body, headers)
    other = b"command=%2Fmathfi&text=help"
    assert not guard.is_replay(other, sign(other.decode(), timestamp=int(clock.now)))


def test_forged_or_stale_requests_are_not_remembered() -> None:
    clock = Clock(1_700_000_000.0)
    guard = ReplayGuard(SIGNING_SECRET, clock=clock)
    body = b"text=list"
    forged = sign(body.decode(), secret="not-the-secret", timestamp=int(clock.now))
    assert not guard.is_replay(body, forged)
    assert not guard.is_replay(body, forged)  # refused later by bolt, not remembered here
    assert len(guard) == 0
    stale = sign(body.decode(), timestamp=int(clock.now) - 301)
    assert not guard.is_replay(body, stale)
    assert len(guard) == 0


def test_memory_is_bounded_by_the_window_and_the_capacity() -> None:
    clock = Clock(1_700_000_000.0)
    guard = ReplayGuard(SIGNING_SECRET, clock=clock, capacity=3)
    for n in range(5):
        body = f"text=list&n={n}".encode()
        assert not guard.is_replay(body, sign(body.decode(), timestamp=int(clock.now)))
    assert len(guard) == 3
    clock.now += 302
    body = b"text=help"
    assert not guard.is_replay(body, sign(body.decode(), timestamp=int(clock.now)))
    assert len(guard) == 1  # the old ones left with the window


async def test_a_replayed_unsubscribe_all_runs_once(env: Env) -> None:
    key = env.sim.script_job(LIFECYCLE[1:3])
    _, _, url = await env.command(f"subscribe {key}")
    await env.reply(url)
    body = urlencode(
        {
            "command": "/mathfi",
            "text": "unsubscribe all",
            "team_id": TEAM,
            "channel_id": "C0TEST",
            "user_id": "U0ALICE",
            "user_name": "alice",
            "response_url": env.sink.new_response_url(),
            "trigger_id": "1.2.3",
            "api_app_id": "A0TEST",
        }
    )
    headers = sign(body)
    url = f"{env.base_url}/slack/events"
    async with env.http.post(url, data=body.encode(), headers=headers) as first:
        assert first.status == 200
        assert "Stopped watching 1 job(s)" in await first.text()
    async with env.http.post(url, data=body.encode(), headers=headers) as again:
        assert again.status == 401
        assert "replayed" in await again.text()
