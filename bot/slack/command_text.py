"""Parse the text of the `/mathfi` slash command into a typed command.

Pure: no I/O, no clock (but for reading the zone database's names once, for `--tz`).
`parse_command` raises `CommandError` and nothing else. A `CommandError.message` is short
(at most 200 characters), echoes at most 40 characters of user input, and is Slack-mrkdwn
safe (`&`, `<`, `>` escaped), so it can be posted as is. `USAGE` lines and
`CommandError.usage` are plain text written for the default command name `/mathfi`;
escape them (`escape_mrkdwn`) before posting. `help_text` is already escaped.

Longer than 300 lines: one parser, its messages and its grammar tables, kept together
(the action commands `train`, `cancel` and `datasets`, and `digest`, share its option
and key rules).
"""

from __future__ import annotations

import difflib
import functools
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from bot.core.broadcast import BroadcastMode
from bot.core.duration import duration_seconds
from bot.core.events import EventsFilter

DEFAULT_COMMAND = "/mathfi"
MAX_TEXT_LENGTH = 2000
MAX_ECHO = 40
MAX_MUTE_SECONDS = 30 * 86400
MAX_PAGE = 1000
# `train` defaults and ranges: REFERENCE.md §5.1 and §8. The API takes a scaling factor of
# 0-499, the tuning guide 8-499 (default 19): the narrower range is the safe one. A target
# of 0 would end the training at once; 1 is accepted (it may never be reached).
DEFAULT_TARGET = 0.8
DEFAULT_SCALING_FACTOR = 19
SCALING_FACTOR_RANGE = (8, 499)
EXAMPLE_KEY = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
EVENT_FILTERS = tuple(EventsFilter)
BROADCAST_MODES = tuple(BroadcastMode)
DEFAULT_TZ = "UTC"

USAGE: dict[str, str] = {
    "subscribe": "/mathfi subscribe <trainingJobKey> [--min-improvement 0.01] "
    "[--mention <@U…>|<!subteam^…>] [--events all|status|failures] "
    "[--broadcast final|failures|none] [--dm]",
    "unsubscribe": "/mathfi unsubscribe <trainingJobKey>|all",
    "list": "/mathfi list [page]",
    "status": "/mathfi status <trainingJobKey>",
    "mute": "/mathfi mute <trainingJobKey> <duration: 30m, 2h, 1d, 1h30m>",
    "unmute": "/mathfi unmute <trainingJobKey>",
    "train": "/mathfi train <datasetKey> [--target 0.85] [--scaling-factor 19] "
    "[--mention <@U…>|<!subteam^…>] [--events all|status|failures]",
    "cancel": "/mathfi cancel <trainingJobKey>",
    "datasets": "/mathfi datasets [page]",
    "digest": "/mathfi digest daily <HH:MM> [--tz Europe/Paris] | off",
    "help": "/mathfi help",
}
_SUMMARY: dict[str, str] = {
    "subscribe": "Watch a job in this channel; `--min-improvement` is the smallest gain worth a "
    "post, `--mention` who to alert on failures, `--events` what to post, `--broadcast` "
    "which final statuses also go to the channel (default final; failures; none); `--dm` "
    "(or typed in the bot's DM) follows it yourself, in your DM with the bot.",
    "unsubscribe": "Stop watching one job, or every job, in this channel.",
    "list": "Show this channel's subscriptions with their status and best performance; "
    "a long list comes in pages (`list 2`, …).",
    "status": "Show a job's progress right now, per algorithm; it need not be watched.",
    "mute": "Silence progress updates for a while; final statuses still get through.",
    "unmute": "Post progress updates for a muted job again.",
    "train": "Start a training on a COMPLETED dataset after you confirm, and watch it here; "
    "`--target` is the performance to reach (above 0, at most 1; default 0.8), "
    "`--scaling-factor` 8-499 (default 19).",
    "cancel": "Cancel a PENDING or RUNNING job after you confirm.",
    "datasets": "List the account's datasets, newest first, with name, key and status.",
    "digest": "Post one message a day in this channel at that local time (`--tz`, default "
    "UTC): jobs finished since the last one, jobs still running; nothing on a quiet day.",
    "help": "Show this help.",
}
_FLAGS = frozenset({"dm"})  # options that take no value
_OPTIONS: dict[str, tuple[str, ...]] = {
    "subscribe": ("min-improvement", "mention", "events", "broadcast", "dm"),
    "digest": ("tz",),
    "train": ("target", "scaling-factor", "mention", "events"),
}


@dataclass(frozen=True)
class Subscribe:
    key: str
    min_improvement: float | None
    mention: str | None
    events: str | None
    broadcast: str | None = None
    dm: bool = False  # `--dm`: a personal subscription, in the person's DM with the bot


@dataclass(frozen=True)
class Unsubscribe:
    key: str | None
    all: bool


@dataclass(frozen=True)
class ListSubs:
    page: int = 1


@dataclass(frozen=True)
class Status:
    key: str


@dataclass(frozen=True)
class Mute:
    key: str
    seconds: int


@dataclass(frozen=True)
class Unmute:
    key: str


@dataclass(frozen=True)
class Train:
    """Start a training (after a confirmation); `mention` and `events` are the options of
    the subscription the start creates in the channel."""

    dataset_key: str
    target: float = DEFAULT_TARGET
    scaling_factor: int = DEFAULT_SCALING_FACTOR
    mention: str | None = None
    events: str | None = None


@dataclass(frozen=True)
class Cancel:
    key: str


@dataclass(frozen=True)
class Datasets:
    page: int = 1


@dataclass(frozen=True)
class Digest:
    """`digest daily HH:MM [--tz Zone]` (`daily_at` "HH:MM", `tz` an IANA zone name as the
    zone database spells it), or `digest off` (`daily_at` None)."""

    daily_at: str | None
    tz: str = DEFAULT_TZ


@dataclass(frozen=True)
class Help:
    pass


Command: TypeAlias = (
    Subscribe
    | Unsubscribe
    | ListSubs
    | Status
    | Mute
    | Unmute
    | Train
    | Cancel
    | Datasets
    | Digest
    | Help
)


class CommandError(ValueError):
    """The text is not a valid command; `message` is safe to post, `usage` is plain text."""

    def __init__(self, message: str, usage: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage


def escape_mrkdwn(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def help_text(command: str = DEFAULT_COMMAND) -> str:
    """The full help as Slack mrkdwn, usage lines written for `command`."""
    lines = [f"*{escape_mrkdwn(command)}* posts MathFi training-job progress to this channel."]
    for name, usage in USAGE.items():
        line = escape_mrkdwn(command + usage.removeprefix(DEFAULT_COMMAND))
        lines.append(f"• `{line}`: {_SUMMARY[name]}")
    return "\n".join(lines)


HELP_TEXT: str = help_text()

_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def is_job_key(text: str) -> bool:
    """True for a UUID written 8-4-4-4-12 in hex digits, any case."""
    return _UUID.fullmatch(text) is not None


def parse_duration(text: str) -> int:
    """`30m`, `2h`, `1d`, `90s`, `1h30m` (spaces allowed) -> seconds, 1 s .. 30 days."""
    try:
        total = duration_seconds(text)
    except ValueError:
        raise CommandError(
            f"{_echo(text)} is not a duration (use e.g. 30m, 2h, 1d or 1h30m).", USAGE["mute"]
        ) from None
    if not 1 <= total <= MAX_MUTE_SECONDS:
        raise CommandError(
            f"{_echo(text)} is out of range: a duration is between 1s and 30d.", USAGE["mute"]
        )
    return total


def format_duration(seconds: float) -> str:
    """5400 -> `1h30m`; the canonical form `parse_duration` reads back. 0 -> `0s`.

    A float is rounded to the nearest second: a remaining time computed from clock
    readings (`until - now`) is a hair under the whole seconds asked for, and truncating it
    answered `mute … 2h` with "1h59m59s".
    """
    whole = round(seconds)
    if whole < 0:
        raise ValueError(f"negative duration: {seconds}")
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def parse_command(text: str, *, allow_broadcast: bool = False) -> Command:
    """Parse the slash-command text (as Slack sends it) into a `Command`.

    `--mention @here` / `@channel` / `@everyone` would let any member make the bot ping the
    whole channel, around the workspace's own rule about who may: refused unless the
    operator allows it (`ALLOW_BROADCAST_MENTIONS`)."""
    if len(text) > MAX_TEXT_LENGTH:
        raise CommandError("That command is too long")
    tokens = _tokenize(text)
    if not tokens:
        return Help()
    handler = _HANDLERS.get(tokens[0].lower())
    if handler is None:
        raise _unknown_command(tokens[0])
    command = handler(tokens[1:])
    broadcast = isinstance(command, Subscribe | Train) and command.mention in BROADCAST_MENTIONS
    if broadcast and not allow_broadcast:
        assert isinstance(command, Subscribe | Train)
        raise CommandError(
            f"`--mention {command.mention}` would ping everyone in the channel, and this "
            "bot is set not to. Mention a person or a user group instead (ask the bot's "
            "operator about ALLOW_BROADCAST_MENTIONS).",
            USAGE[tokens[0].lower()],
        )
    return command


_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u2060\ufeff"))
# A token runs to the next whitespace, except that whitespace inside <...> is kept.
_TOKEN = re.compile(r"(?:<[^<>]*>|\S)+")
_SMART_DASHES = "\u2013\u2014"  # en dash, em dash: what macOS makes of a typed "--"


def _tokenize(text: str) -> list[str]:
    """Unescape Slack's three entities (`&amp;` last), drop invisible characters, split."""
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    tokens = _TOKEN.findall(text.translate(_INVISIBLE))
    return [
        "--" + token.lstrip("-" + _SMART_DASHES) if token[0] in _SMART_DASHES else token
        for token in tokens
    ]


def _echo(text: str) -> str:
    """User input for an error message: escaped, printable, at most 40 characters, quoted."""
    pieces: list[str] = []
    used = 0
    for char in text:
        piece = _ECHO_REPLACEMENTS.get(char, char if char.isprintable() else "?")
        if used + len(piece) > MAX_ECHO:
            pieces.append("…")
            break
        pieces.append(piece)
        used += len(piece)
    return "`" + "".join(pieces) + "`"


_ECHO_REPLACEMENTS = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "`": "'"}


def _unknown_command(word: str) -> CommandError:
    if is_job_key(word):
        key = word.lower()
        return CommandError(f"Start with a command, e.g. `subscribe {key}` or `status {key}`.")
    # Only a word gets a suggestion: `<!channel>` is not a mistyped `cancel`.
    words = list(USAGE) if word.isalpha() else []
    close = difflib.get_close_matches(word.lower(), words, n=1)
    hint = f"Did you mean `{close[0]}`?" if close else "Commands: " + ", ".join(USAGE) + "."
    return CommandError(f"Unknown command {_echo(word)}. {hint}")


def _split_options(command: str, args: list[str]) -> tuple[list[str], dict[str, str]]:
    """Positional arguments, and option values by name; raises on unknown or repeated ones."""
    usage = USAGE[command]
    positionals: list[str] = []
    options: dict[str, str] = {}
    index = 0
    while index < len(args):
        token = args[index]
        index += 1
        if not token.startswith("--"):
            positionals.append(token)
            continue
        name, has_value, value = token[2:].partition("=")
        name = name.lower().replace("_", "-")
        if name not in _OPTIONS.get(command, ()):
            raise _unknown_option(command, token, name)
        if name in _FLAGS:  # takes no value
            if has_value:
                raise CommandError(f"`--{name}` takes no value.", usage)
            value = "yes"
        elif not has_value and index < len(args) and not args[index].startswith("--"):
            value = args[index]
            index += 1
        if not value:
            raise CommandError(f"`--{name}` needs a value.", usage)
        if name in options:
            raise CommandError(f"`--{name}` is given more than once.", usage)
        options[name] = value
    return positionals, options


def _unknown_option(command: str, token: str, name: str) -> CommandError:
    allowed = _OPTIONS.get(command, ())
    if not allowed:
        return CommandError(f"`{command}` takes no options: {_echo(token)}.", USAGE[command])
    close = difflib.get_close_matches(name, allowed, n=1)
    hint = f"Did you mean `--{close[0]}`?" if close else "Options: --" + ", --".join(allowed) + "."
    return CommandError(f"Unknown option {_echo(token)}. {hint}", USAGE[command])


def _positionals(command: str, args: list[str], count: int, missing: str) -> list[str]:
    """Exactly `count` positional arguments and no options, or a CommandError."""
    positionals, _ = _split_options(command, args)
    if len(positionals) < count:
        raise CommandError(missing, USAGE[command])
    if len(positionals) > count:
        raise CommandError(f"Unexpected argument {_echo(positionals[count])}.", USAGE[command])
    return positionals


# What a pasted key may come wrapped in: the help's `<trainingJobKey>` taken literally (Slack
# sends it as &lt;…&gt;, unescaped by `_tokenize`), inline code or a code block, quotes.
_WRAPPERS = {
    ("<", ">"),
    ("`", "`"),
    ('"', '"'),
    ("'", "'"),
    ("\u201c", "\u201d"),
    ("\u2018", "\u2019"),
}


def _unwrap(text: str) -> str:
    while len(text) >= 2 and (text[0], text[-1]) in _WRAPPERS:
        text = text[1:-1].strip()
    return text


def _job_key(text: str, command: str, *, what: str = "training job") -> str:
    key = _unwrap(text)
    if is_job_key(key):
        return key.lower()
    raise CommandError(
        f"{_echo(text)} is not a {what} key (expected a UUID like {EXAMPLE_KEY})",
        USAGE[command],
    )


_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?%?")


def _min_improvement(text: str) -> float:
    if _NUMBER.fullmatch(text):
        value = float(text.removesuffix("%")) / (100 if text.endswith("%") else 1)
        if 0 < value <= 1:
            return value
    raise CommandError(
        f"`--min-improvement` must be a number above 0 and at most 1 (e.g. 0.01), "
        f"not {_echo(text)}.",
        USAGE["subscribe"],
    )


_LABEL = r"(?:\|[^<>|\x00-\x1f\x7f]{0,80})?"
_PERSON_OR_GROUP = re.compile(rf"<@[UW][A-Z0-9]+{_LABEL}>|<!subteam\^S[A-Z0-9]+{_LABEL}>")
_BROADCAST = re.compile(
    rf"<!(here|channel|everyone){_LABEL}>|@(here|channel|everyone)", re.IGNORECASE
)
BROADCAST_MENTIONS = frozenset({"<!here>", "<!channel>", "<!everyone>"})


def _mention(text: str, command: str = "subscribe") -> str:
    if _PERSON_OR_GROUP.fullmatch(text):
        return text
    broadcast = _BROADCAST.fullmatch(text)
    if broadcast:
        return f"<!{(broadcast.group(1) or broadcast.group(2)).lower()}>"
    raise CommandError(
        "`--mention` takes @someone or @a-group picked from autocomplete (sent as &lt;@U…&gt; "
        f"or &lt;!subteam^…&gt;); not {_echo(text)}.",
        USAGE[command],
    )


def _events(text: str, command: str = "subscribe") -> str:
    if text.lower() in EVENT_FILTERS:
        return text.lower()
    raise CommandError(
        f"`--events` must be all, status or failures, not {_echo(text)}.", USAGE[command]
    )


def _broadcast(text: str) -> str:
    if text.lower() in BROADCAST_MODES:
        return text.lower()
    raise CommandError(
        f"`--broadcast` must be final, failures or none, not {_echo(text)}.", USAGE["subscribe"]
    )


_DAILY_AT = re.compile(r"([01]?[0-9]|2[0-3])[:h.]([0-5][0-9])")


def _daily_at(text: str) -> str:
    match = _DAILY_AT.fullmatch(text)
    if match is None:
        raise CommandError(
            f"{_echo(text)} is not a time of day: use HH:MM on the 24-hour clock (e.g. 09:00).",
            USAGE["digest"],
        )
    return f"{int(match[1]):02d}:{match[2]}"


@functools.cache
def _zones() -> dict[str, str]:
    """The zone database's names by their lower case (read once: the zone files)."""
    names = zoneinfo.available_timezones() - {"localtime", "posixrules", "Factory"}
    return {name.lower(): name for name in names}


def _tz(text: str) -> str:
    name = _zones().get(_unwrap(text).lower())
    if name is not None:
        return name
    close = difflib.get_close_matches(_unwrap(text).lower(), list(_zones()), n=1)
    hint = f" Did you mean `{_zones()[close[0]]}`?" if close else ""
    raise CommandError(
        f"{_echo(text)} is not a time zone: use a name like Europe/Paris, America/New_York "
        f"or UTC.{hint}",
        USAGE["digest"],
    )


def _parse_digest(args: list[str]) -> Command:
    positionals, options = _split_options("digest", args)
    words = [word.lower() for word in positionals]
    if words == ["off"]:
        if options:
            raise CommandError("`digest off` takes no options.", USAGE["digest"])
        return Digest(daily_at=None)
    if not words or words[0] != "daily":
        raise CommandError(
            "Say `digest daily 09:00` (optionally `--tz Europe/Paris`) or `digest off`.",
            USAGE["digest"],
        )
    if len(words) == 1:
        raise CommandError("Missing the time of day (e.g. 09:00).", USAGE["digest"])
    if len(words) > 2:
        raise CommandError(f"Unexpected argument {_echo(positionals[2])}.", USAGE["digest"])
    tz = options.get("tz")
    return Digest(daily_at=_daily_at(positionals[1]), tz=DEFAULT_TZ if tz is None else _tz(tz))


def _target(text: str) -> float:
    if _NUMBER.fullmatch(text):
        value = float(text.removesuffix("%")) / (100 if text.endswith("%") else 1)
        if 0 < value <= 1:
            return value
    raise CommandError(
        f"`--target` must be a number above 0 and at most 1 (e.g. 0.85), not {_echo(text)}.",
        USAGE["train"],
    )


def _scaling_factor(text: str) -> int:
    low, high = SCALING_FACTOR_RANGE
    if text.isascii() and text.isdigit() and low <= int(text) <= high:
        return int(text)
    raise CommandError(
        f"`--scaling-factor` must be a whole number from {low} to {high} (e.g. "
        f"{DEFAULT_SCALING_FACTOR}), not {_echo(text)}.",
        USAGE["train"],
    )


_KEY_MISSING = "Missing the training job key."


def _parse_subscribe(args: list[str]) -> Command:
    positionals, options = _split_options("subscribe", args)
    key = _one_key("subscribe", positionals)
    improvement, mention, events, broadcast, dm = (
        options.get(name) for name in _OPTIONS["subscribe"]
    )
    return Subscribe(
        key=key,
        min_improvement=None if improvement is None else _min_improvement(improvement),
        mention=None if mention is None else _mention(mention),
        events=None if events is None else _events(events),
        broadcast=None if broadcast is None else _broadcast(broadcast),
        dm=dm is not None,
    )


def _parse_train(args: list[str]) -> Command:
    positionals, options = _split_options("train", args)
    (key,) = _positionals("train", positionals, 1, "Missing the dataset key.")
    target, scaling, mention, events = (options.get(name) for name in _OPTIONS["train"])
    return Train(
        dataset_key=_job_key(key, "train", what="dataset"),
        target=DEFAULT_TARGET if target is None else _target(target),
        scaling_factor=DEFAULT_SCALING_FACTOR if scaling is None else _scaling_factor(scaling),
        mention=None if mention is None else _mention(mention, "train"),
        events=None if events is None else _events(events, "train"),
    )


def _parse_unsubscribe(args: list[str]) -> Command:
    (target,) = _positionals("unsubscribe", args, 1, "Missing the training job key (or `all`).")
    if _unwrap(target).lower() == "all":
        return Unsubscribe(key=None, all=True)
    return Unsubscribe(key=_job_key(target, "unsubscribe"), all=False)


def _parse_mute(args: list[str]) -> Command:
    positionals, _ = _split_options("mute", args)
    key = _one_key("mute", positionals[:1])
    if len(positionals) == 1:
        raise CommandError("Missing the duration (e.g. 30m, 2h, 1d, 1h30m).", USAGE["mute"])
    return Mute(key=key, seconds=parse_duration(" ".join(positionals[1:])))


def _page(command: str, args: list[str]) -> int:
    positionals, _ = _split_options(command, args)
    if not positionals:
        return 1
    if len(positionals) > 1:
        raise CommandError(f"Unexpected argument {_echo(positionals[1])}.", USAGE[command])
    page = positionals[0]
    if page.isascii() and page.isdigit() and 1 <= int(page) <= MAX_PAGE:
        return int(page)
    raise CommandError(f"{_echo(page)} is not a page number (e.g. `{command} 2`).", USAGE[command])


def _one_key(command: str, args: list[str]) -> str:
    (key,) = _positionals(command, args, 1, _KEY_MISSING)
    return _job_key(key, command)


def _no_arguments(command: str, args: list[str], result: Command) -> Command:
    _positionals(command, args, 0, "")
    return result


_HANDLERS: dict[str, Callable[[list[str]], Command]] = {
    "subscribe": _parse_subscribe,
    "unsubscribe": _parse_unsubscribe,
    "list": lambda args: ListSubs(page=_page("list", args)),
    "status": lambda args: Status(key=_one_key("status", args)),
    "mute": _parse_mute,
    "unmute": lambda args: Unmute(key=_one_key("unmute", args)),
    "train": _parse_train,
    "cancel": lambda args: Cancel(key=_one_key("cancel", args)),
    "datasets": lambda args: Datasets(page=_page("datasets", args)),
    "digest": _parse_digest,
    "help": lambda args: _no_arguments("help", args, Help()),
}
