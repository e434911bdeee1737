"""One active instance per database (issue 19, item 2), with real processes.

The first instance runs with its own MathFi simulator and Slack sink (the harness); a second
`mathfi-bot run` on the SAME database gets a simulator and a sink of its own, so whatever it
polls or posts shows in those, apart from what the first one does.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from simulator.mathfi import Simulator
from simulator.mathfi import start_in_background as start_simulator
from simulator.slack import SlackSink
from simulator.slack import start_in_background as start_sink
from tests.reliability.harness import (
    BOT_TOKEN,
    PASSWORD,
    TEAM,
    USERNAME,
    Harness,
    ServiceProcess,
    eventually,
    running,
)
from tests.reliability.process import short_timeout
from tests.reliability.timeline import climb

pytestmark = pytest.mark.reliability


class Other:
    """A second MathFi and Slack, seen only by the second process."""

    def __init__(self) -> None:
        self.sim = Simulator(seed=5, users={USERNAME: PASSWORD})
        self.sink = SlackSink(token=BOT_TOKEN, team_id=TEAM)
        self.sim_url = ""

    def env(self, h: Harness, **extra: str) -> dict[str, str]:
        return h.service_env(**extra) | {
            "MATHFI_BASE_URL": self.sim_url,
            "SLACK_API_URL": self.sink.api_url,
        }

    def requests(self) -> int:
        return sum(self.sim.stats.requests.values())

    def untouched(self) -> bool:
        return self.requests() == 0 and not self.sink.calls


@contextlib.asynccontextmanager
async def other_world() -> AsyncIterator[Other]:
    other = Other()
    sim_runner, other.sim_url = await start_simulator(other.sim)
    sink_runner, _ = await start_sink(other.sink)
    try:
        yield other
    finally:
        await sink_runner.cleanup()
        await sim_runner.cleanup()


def second_process(tmp: Path, env: dict[str, str], port: int = 0) -> ServiceProcess:
    """Spawned without waiting for /healthz (a standby does not answer until it takes over);
    port 0: the process binds a free port and logs it (`ServiceProcess.bound`)."""
    cwd = tmp / "second"
    cwd.mkdir(exist_ok=True)
    proc = ServiceProcess(env=env, cwd=cwd, port=port)
    proc._spawn({})
    return proc


async def healthy(http: aiohttp.ClientSession, url: str) -> bool:
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with http.get(url + "/healthz", timeout=short_timeout(1.0)) as reply:
            return reply.status == 200
    return False


async def watching(h: Harness, other: Other) -> str:
    """The first instance watches a job both simulators know (same key)."""
    timeline = climb(6, retire_at=())
    key = h.sim.script_job(timeline.payloads, training=timeline.training)
    other.sim.script_job(timeline.payloads, training=timeline.training, key=key)
    await h.subscribe(key)
    await eventually(lambda: h.sim.stats.progress_polls >= 3, timeout=10, what="the first polls")
    return key


async def test_a_second_instance_refuses_in_one_line_and_does_nothing(tmp_path: Path) -> None:
    async with running(tmp_path) as h, other_world() as other:
        await watching(h, other)
        assert h.service.proc is not None
        # the same port too: the refusal must be about the database, before any bind
        second = second_process(tmp_path, other.env(h), h.service.port)
        code = await second.wait(timeout=20)
        lines = second.lines()
        assert code == 2, second.tail()
        assert lines[-1] == (
            f"mathfi-bot: another mathfi-bot holds {h.db_path} (pid {h.service.proc.pid}); "
            "stop it first, or set STANDBY=true to wait for it and take over when it stops"
        ), second.tail()
        assert sum(line.startswith("mathfi-bot: ") for line in lines) == 1
        assert "Traceback" not in "\n".join(lines)
        assert other.untouched(), (other.sim.stats.requests, other.sink.calls)
        # the first one never noticed
        assert h.service.alive and await healthy(h.http, h.service.base_url)


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
async def test_a_standby_takes_over_within_seconds(tmp_path: Path, how: str) -> None:
    async with running(tmp_path) as h, other_world() as other:
        key = await watching(h, other)
        standby = second_process(tmp_path, other.env(h, STANDBY="true"))
        try:
            await eventually(
                lambda: standby.messages(containing="standby: another mathfi-bot holds"),
                timeout=15,
                what="the standby says it waits",
            )
            await asyncio.sleep(1.5)  # the first polls on; the standby must not
            assert standby.alive and other.untouched(), (other.sim.stats.requests, standby.tail())
            assert standby.bound() is None  # not even the port is bound

            if how == "SIGKILL":
                await h.service.kill()
            else:
                assert await h.service.terminate() == 0
            gone = time.monotonic()
            await eventually(
                lambda: healthy(h.http, standby.base_url), timeout=5, what="the standby serves"
            )
            # read once the first is gone and the standby serves: a poll the first had on the
            # wire when it was killed may still have reached the simulator after the kill
            first_polls = h.sim.stats.progress_polls
            await eventually(
                lambda: other.sim.stats.progress_polls > 0, timeout=5, what="the standby polls"
            )
            took = time.monotonic() - gone
            assert took < 5, took
            assert h.sim.stats.progress_polls == first_polls  # the first one is gone for good
            assert standby.messages(containing="taking over")
            # it carries on the first one's subscription
            other.sim.advance(key, 2)
            await eventually(
                lambda: any(m.startswith("chat.") for m, _ in other.sink.calls),
                timeout=10,
                what="the standby sends to Slack",
            )
        finally:
            await standby.kill()


async def test_a_standby_stopped_while_waiting_exits_cleanly(tmp_path: Path) -> None:
    async with running(tmp_path) as h, other_world() as other:
        standby = second_process(tmp_path, other.env(h, STANDBY="true"))
        try:
            await eventually(
                lambda: standby.messages(containing="standby: another mathfi-bot holds"),
                timeout=15,
                what="the standby says it waits",
            )
            assert await standby.terminate(timeout=5) == 0
            assert other.untouched()
        finally:
            await standby.kill()


async def test_a_taken_port_exits_before_anything_runs(tmp_path: Path) -> None:
    """The database of a killed instance has a job due for polling; a start on a taken port
    must neither poll, nor reconcile, nor even call Slack's auth.test."""
    async with running(tmp_path) as h, other_world() as other:
        key = await watching(h, other)
        await h.service.kill()
        with port_taken() as port:
            second = second_process(tmp_path, other.env(h), port)
            code = await second.wait(timeout=20)
        assert code == 2, second.tail()
        assert "HTTP_PORT" in second.lines()[-1], second.tail()
        assert other.untouched(), (other.sim.stats.requests, other.sink.calls)
        assert h.job(key)["terminal"] == 0  # the job was there to poll


@contextlib.contextmanager
def port_taken() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield int(taken.getsockname()[1])


async def test_check_runs_beside_a_live_instance(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "check",
            cwd=tmp_path,
            env=h.service_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
        text = out.decode()
        assert proc.returncode == 0, text + err.decode()
        assert f"✓ Database {h.db_path}" in text
        assert h.service.alive
