"""The `except` branches of `mathfi-bot` (bot/__main__.py) that no other test runs (issue
#20): `demo` / `simulator` in an install without them (and a dependency of theirs missing,
which is not the same), UVLOOP=true without uvloop, and Ctrl-C where no signal handler of
ours is installed (`check` waiting on MathFi). Each checks what the operator sees: the exit
code and the one line, or the event loop used."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from bot.__main__ import loop_factory, main
from simulator.faults import Fault
from simulator.mathfi import Simulator
from simulator.mathfi import start_in_background as start_simulator
from tests.conftest import wait_for
from tests.test_process import REQUIRED, base_env


@pytest.mark.parametrize(
    ("command", "module"), [("demo", "demo.run"), ("simulator", "simulator.mathfi")]
)
def test_demo_or_simulator_left_out_of_the_install_is_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    module: str,
) -> None:
    # None in sys.modules is how Python marks a module that cannot be imported: the import
    # system raises the very ModuleNotFoundError an image without the folder raises.
    monkeypatch.setitem(sys.modules, module, None)
    assert main([command]) == 2
    folder = module.partition(".")[0]
    assert capsys.readouterr().err == (
        f"mathfi-bot: configuration error: {folder}/ is not installed here (a production "
        "image leaves it out; install the project with it to use this command)\n"
    )


def test_a_missing_dependency_of_the_demo_is_not_called_a_missing_demo(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """demo/ is there but a library it imports is not: the error names that library (the
    install is broken), rather than saying the demo was left out."""
    monkeypatch.delitem(sys.modules, "demo.run", raising=False)  # imported afresh
    monkeypatch.setitem(sys.modules, "rich.live", None)
    with pytest.raises(ModuleNotFoundError) as raised:
        main(["demo"])
    assert raised.value.name == "rich.live"


def test_uvloop_asked_for_but_not_installed_runs_on_asyncio_s_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import uvloop

    assert loop_factory(True) is uvloop.new_event_loop  # installed here: used
    monkeypatch.setitem(sys.modules, "uvloop", None)  # an install without it
    assert loop_factory(True) is None  # asyncio's standard loop, no crash


async def test_ctrl_c_during_check_exits_130_without_a_traceback(tmp_path: Path) -> None:
    """`check` installs no signal handler: Ctrl-C while MathFi keeps it waiting ends it
    with the shell's usual 130 and no traceback."""
    sim = Simulator()
    sim.add_fault(Fault(kind="latency", seconds=5.0, path_prefix="/api/login"))
    runner, sim_url = await start_simulator(sim)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "check",
        cwd=tmp_path,
        env={
            **base_env(),
            **REQUIRED,
            "MATHFI_BASE_URL": sim_url,
            "MATHFI_TIMEOUT": "30",
            "DATABASE_PATH": str(tmp_path / "bot.db"),
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        # the login has reached MathFi: the check is inside its event loop, waiting
        await wait_for(lambda: sim.stats.requests[("POST", "/api/login")], timeout=30)
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await runner.cleanup()
    assert proc.returncode == 130, err.decode()
    assert b"Traceback" not in err and out == b"", err.decode()
