"""Docs kept honest by tests: .env.example, the README's tables, the CLI, the manifest."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from bot.__main__ import build_parser
from bot.config import Settings
from bot.slack.command_text import USAGE

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _env_names() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


def test_env_example_lists_every_setting_and_nothing_else() -> None:
    text = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", text, flags=re.M))
    assert listed == _env_names()


def test_env_example_defaults_match_the_code() -> None:
    text = (ROOT / ".env.example").read_text()
    for name, value in re.findall(r"^([A-Z][A-Z0-9_]+)=(.*)$", text, flags=re.M):
        field = Settings.model_fields[name.lower()]
        if value == "" or field.is_required():
            continue
        default = field.default
        if isinstance(default, bool):
            assert value.lower() == str(default).lower(), name
        elif isinstance(default, Path):
            assert Path(value) == default, name
        elif isinstance(default, float):
            assert float(value) == default, name
        else:
            assert value == str(default), name


def test_readme_starts_with_the_two_commands() -> None:
    head = README[:600]
    assert head.index("make demo") < head.index("make test")


def test_readme_configuration_table_matches_settings() -> None:
    table = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", table, flags=re.M))
    assert documented == _env_names()


def test_readme_commands_table_matches_the_parser() -> None:
    table = README.split("## Commands", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `/mathfi (\w+)", table, flags=re.M))
    assert documented == set(USAGE)


def test_readme_cli_table_matches_the_parser() -> None:
    table = README.split("## Command line", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `mathfi-bot (\w+)`", table, flags=re.M))
    subparsers = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert documented == set(subparsers)


def test_manifest_declares_the_command_interactivity_and_scopes() -> None:
    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text())
    command = manifest["features"]["slash_commands"][0]
    assert command["command"] == Settings.model_fields["slack_command"].default
    assert command["should_escape"] is True
    assert command["url"].endswith("/slack/events")
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert {"commands", "chat:write", "channels:history"} <= set(
        manifest["oauth_config"]["scopes"]["bot"]
    )
