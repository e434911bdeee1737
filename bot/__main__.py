"""`mathfi-bot` (also `python -m bot`): run | demo | simulator | check.

Argument parsing with the standard library's argparse: four subcommands with a handful of
options do not justify another dependency. Settings are loaded once here and passed down.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import importlib
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from bot.app.startup import InstanceLocked
from bot.config import Settings, load_settings
from bot.errors import ConfigError
from bot.logs import configure_logging
from store import StoreUnavailable

log = logging.getLogger("bot")
_LISTEN_ERRORS = {errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES}


def _secrets(settings: Settings) -> list[str]:
    values = [settings.mathfi_password, settings.slack_bot_token, settings.slack_signing_secret]
    if settings.slack_app_token is not None:
        values.append(settings.slack_app_token)
    return [v.get_secret_value() for v in values]


def _install_stop(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)


def _optional(module: str) -> Any:
    """The demo and the simulator sit outside the product package (the production image
    may leave them out), so they are imported by name, and their absence is one line."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name not in {module, module.partition(".")[0]}:
            raise
        raise ConfigError(
            f"{module.partition('.')[0]}/ is not installed here (a production image leaves "
            "it out; install the project with it to use this command)"
        ) from err


def loop_factory(use_uvloop: bool) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when `use_uvloop` (UVLOOP) and uvloop is installed, which its
    package only is on CPython outside Windows; None: asyncio's standard loop."""
    if not use_uvloop or sys.implementation.name != "cpython" or sys.platform == "win32":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def cmd_run(args: argparse.Namespace) -> int:
    settings = load_settings()
    configure_logging(level=settings.log_level, fmt=settings.log_format, secrets=_secrets(settings))
    from bot.app.service import serve

    async def main() -> None:
        loop = type(asyncio.get_running_loop())
        log.info("event loop: %s.%s", loop.__module__, loop.__qualname__)
        stop = asyncio.Event()
        _install_stop(stop)
        await serve(settings, stop=stop)

    # asyncio.Runner: Python 3.11's asyncio.run takes no loop_factory (3.12's does).
    with asyncio.Runner(loop_factory=loop_factory(settings.uvloop)) as runner:
        runner.run(main())
    return 0


def cmd_simulator(args: argparse.Namespace) -> int:
    configure_logging(level=args.log_level)
    serve = _optional("simulator.mathfi").serve

    async def main() -> None:
        stop = asyncio.Event()
        _install_stop(stop)
        task = asyncio.create_task(
            serve(
                host=args.host,
                port=args.port,
                speed=args.speed,
                seed=args.seed,
                token_lifetime=args.token_lifetime,
                failure_rate=args.failure_rate,
            )
        )
        await stop.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    configure_logging(level="WARNING" if not args.verbose else "INFO")
    run_demo = _optional("demo.run").run_demo
    return int(
        asyncio.run(run_demo(speed=args.speed, jobs=args.jobs, seed=args.seed, plain=args.plain))
    )


def cmd_check(args: argparse.Namespace) -> int:
    from bot.app.check import run_check

    return asyncio.run(run_check())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mathfi-bot", description="Slack notifier for MathFi.ai training jobs."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser(
        "run", help="the service: Slack HTTP endpoint (or Socket Mode) + poller + sender"
    ).set_defaults(func=cmd_run)
    demo = sub.add_parser(
        "demo",
        help="simulator + local Slack + bot in one process; prints "
        "the channel as Slack would show it",
    )
    demo.add_argument(
        "--speed", type=float, default=30.0, help="simulated seconds per real second (default 30)"
    )
    demo.add_argument("--jobs", type=int, default=3, help="trainings to start (default 3)")
    demo.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    demo.add_argument(
        "--plain", action="store_true", help="print the final channel once instead of a live view"
    )
    demo.add_argument("--verbose", action="store_true", help="show the service's logs")
    demo.set_defaults(func=cmd_demo)
    sim = sub.add_parser("simulator", help="run the MathFi simulator alone")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8080)
    sim.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--token-lifetime", type=float, default=3600.0)
    sim.add_argument("--failure-rate", type=float, default=0.0)
    sim.add_argument("--log-level", default="INFO")
    sim.set_defaults(func=cmd_simulator)
    sub.add_parser(
        "check",
        help="validate the settings, log in to MathFi, call Slack auth.test, open the database",
    ).set_defaults(func=cmd_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as err:
        print(f"mathfi-bot: configuration error: {err}", file=sys.stderr)
        return 2
    except InstanceLocked as err:
        print(f"mathfi-bot: {err}", file=sys.stderr)
        return 2
    except StoreUnavailable as err:
        print(f"mathfi-bot: the database (DATABASE_PATH) cannot be used: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. the port is taken
        hint = " (check HTTP_HOST and HTTP_PORT)" if err.errno in _LISTEN_ERRORS else ""
        print(f"mathfi-bot: {err.strerror or err}{hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
