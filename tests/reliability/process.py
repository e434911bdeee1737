"""The service under test as a child process, and the polling waits the suite is built on.

`ServiceProcess` runs `python -m bot run` with a given environment and working directory,
its stdout and stderr (JSON log lines) appended to one file across restarts, and offers
the ways a process ends: SIGKILL (a crash), SIGTERM (a graceful stop). The child binds
HTTP_PORT=0 itself and the parent reads the bound port from its "listening on" log line
(no port chosen by the parent and released before the child binds it).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp


async def eventually(
    check: Callable[[], Any], *, timeout: float, what: str, every: float = 0.02
) -> Any:
    """Poll `check` (sync, or async) until it returns something truthy, which is returned;
    fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what} (last value {value!r})")
        await asyncio.sleep(every)


_LISTENING = re.compile(r"listening on http://[^\s:]+:(\d+) ")


def bound_port(lines: list[str]) -> int | None:
    """The port of the last "listening on http://host:port" line (JSON or text log)."""
    for line in reversed(lines):
        found = _LISTENING.search(line)
        if found:
            return int(found.group(1))
    return None


class ServiceProcess:
    """`python -m bot run` as a child process; stdout and stderr go to `log_path`.

    By default the child binds HTTP_PORT=0 (a new port each start) and `port` is read from
    its "listening on" line: known once `start` returns, or once `bound` finds it. A test
    about a given port (say, a taken one) passes `port`."""

    def __init__(self, *, env: Mapping[str, str], cwd: Path, port: int = 0) -> None:
        self.env, self.cwd = {**env, "HTTP_PORT": str(port)}, cwd
        self.port, self._given_port = port, port
        self.log_path = cwd / "service.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._first_line = 0  # of the current run in the log

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.bound() or self.port}"

    def bound(self) -> int | None:
        """The port the current run listens on, once it has said so (None before)."""
        if self._given_port:
            return self._given_port if bound_port(self.lines()[self._first_line :]) else None
        self.port = self.port or bound_port(self.lines()[self._first_line :]) or 0
        return self.port or None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def start(
        self, http: aiohttp.ClientSession, *, timeout: float = 20.0, **env: str
    ) -> None:
        """Spawn the service (extra `env` overrides this start only); read the port it bound
        from its log; wait for /healthz 200."""
        self._spawn(env)
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise AssertionError(f"the service exited at start:\n{self.tail()}")
            if not self.bound():
                await asyncio.sleep(0.03)
                continue
            health = f"{self.base_url}/healthz"
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(health, timeout=short_timeout(1.0)) as reply:
                    if reply.status == 200:
                        return
            await asyncio.sleep(0.03)
        what = "/healthz did not answer 200" if self.bound() else 'no "listening on" line'
        raise AssertionError(f"{what} within {timeout:g} s:\n{self.tail()}")

    def _spawn(self, env: Mapping[str, str]) -> None:
        assert not self.alive, "the service is already running"
        self._first_line = len(self.lines())
        self.port = self._given_port
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot", "run"],
                cwd=self.cwd,
                env={**self.env, **env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or an OOM kill."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
        await self.wait(timeout=10.0)

    async def terminate(self, *, timeout: float = 20.0) -> int:
        """SIGTERM, then wait (asynchronously: the sink it flushes to runs in this loop)."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
        return await self.wait(timeout=timeout)

    async def wait(self, *, timeout: float) -> int:
        if self.proc is None:
            return 0
        proc = self.proc
        await eventually(
            lambda: proc.poll() is not None, timeout=timeout, what="service exit", every=0.01
        )
        return int(proc.returncode)

    def lines(self) -> list[str]:
        if not self.log_path.exists():
            return []
        return self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()

    def records(self) -> list[dict[str, Any]]:
        """The JSON log records (anything else, e.g. a crash dump, is skipped)."""
        out = []
        for line in self.lines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    out.append(record)
        return out

    def messages(self, *, containing: str, level: str | None = None) -> list[str]:
        return [
            str(r.get("message"))
            for r in self.records()
            if containing in str(r.get("message")) and (level is None or r.get("level") == level)
        ]

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.lines()[-lines:])


def short_timeout(seconds: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=seconds)
