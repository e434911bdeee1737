"""The /mathfi command-text parser: tables of valid and invalid texts, and properties."""

from __future__ import annotations

import re
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.slack.command_text import (
    HELP_TEXT,
    USAGE,
    Cancel,
    Command,
    CommandError,
    Datasets,
    Digest,
    Help,
    ListSubs,
    Mute,
    Status,
    Subscribe,
    Train,
    Unmute,
    Unsubscribe,
    escape_mrkdwn,
    format_duration,
    help_text,
    is_job_key,
    parse_command,
    parse_duration,
)

KEY = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
UPPER = KEY.upper()
NOT_A_KEY = "is not a training job key (expected a UUID like " + KEY + ")"
SUB = USAGE["subscribe"]
TRAIN = USAGE["train"]
NOT_A_DATASET = "is not a dataset key (expected a UUID like " + KEY + ")"
DIGEST = USAGE["digest"]
NOT_A_ZONE = "is not a time zone: use a name like Europe/Paris, America/New_York or UTC"


def sub(
    *, improvement: float | None = None, mention: str | None = None, events: str | None = None
) -> Subscribe:
    return Subscribe(key=KEY, min_improvement=improvement, mention=mention, events=events)


VALID: list[tuple[str, Command]] = [
    # help
    ("", Help()),
    ("   \n\t", Help()),
    ("help", Help()),
    ("  HeLp  ", Help()),
    # subscribe
    (f"subscribe {KEY}", sub()),
    (f"SUBSCRIBE {UPPER}", sub()),
    (f"\u00a0subscribe\u00a0\u00a0{KEY}\u3000", sub()),
    (f"subscribe \u200b{KEY}\ufeff", sub()),
    (f"subscribe {KEY} --min-improvement 0.01", sub(improvement=0.01)),
    (f"subscribe {KEY} --min-improvement=1", sub(improvement=1.0)),
    (f"subscribe {KEY} --min-improvement .5", sub(improvement=0.5)),
    (f"subscribe {KEY} --min-improvement 2%", sub(improvement=0.02)),
    (f"subscribe {KEY} --min-improvement 1e-3", sub(improvement=0.001)),
    (f"subscribe {KEY} —min-improvement 0.01", sub(improvement=0.01)),
    (f"subscribe {KEY} –min-improvement=0.01", sub(improvement=0.01)),
    (f"subscribe {KEY} --MIN_IMPROVEMENT 0.01", sub(improvement=0.01)),
    (f"subscribe --events all {KEY}", sub(events="all")),
    (f"subscribe {KEY} --events STATUS", sub(events="status")),
    (f"subscribe {KEY} --events=failures", sub(events="failures")),
    (f"subscribe {KEY} --mention <@U123ABC>", sub(mention="<@U123ABC>")),
    (f"subscribe {KEY} --mention <@W123|jane>", sub(mention="<@W123|jane>")),
    (f"subscribe {KEY} --mention <@U123|jane doe>", sub(mention="<@U123|jane doe>")),
    (f"subscribe {KEY} --mention <!subteam^S123>", sub(mention="<!subteam^S123>")),
    (f"subscribe {KEY} --mention=<!subteam^S123|@team>", sub(mention="<!subteam^S123|@team>")),
    (f"subscribe {KEY} --mention <!here>", sub(mention="<!here>")),
    (f"subscribe {KEY} --mention <!here|here>", sub(mention="<!here>")),
    (f"subscribe {KEY} --mention <!channel>", sub(mention="<!channel>")),
    (f"subscribe {KEY} --mention @here", sub(mention="<!here>")),
    (f"subscribe {KEY} --mention @Channel", sub(mention="<!channel>")),
    (f"subscribe {KEY} --mention &lt;!here&gt;", sub(mention="<!here>")),
    (
        f"subscribe {KEY} --events status --mention <@U1> --min-improvement 0.1",
        sub(improvement=0.1, mention="<@U1>", events="status"),
    ),
    # unsubscribe
    (f"unsubscribe {UPPER}", Unsubscribe(key=KEY, all=False)),
    ("unsubscribe all", Unsubscribe(key=None, all=True)),
    ("Unsubscribe ALL", Unsubscribe(key=None, all=True)),
    # list, status, unmute
    ("list", ListSubs()),
    ("LIST ", ListSubs()),
    ("list 1", ListSubs(page=1)),
    ("list 2", ListSubs(page=2)),
    ("list 002", ListSubs(page=2)),
    ("datasets 1", Datasets(page=1)),
    (f"status {KEY}", Status(key=KEY)),
    (f"status\t{UPPER}", Status(key=KEY)),
    (f"unmute {KEY}", Unmute(key=KEY)),
    # a key pasted the way the help writes it, escaped by Slack, as code, or quoted
    (f"status <{KEY}>", Status(key=KEY)),
    (f"status &lt;{KEY}&gt;", Status(key=KEY)),
    (f"status `{KEY}`", Status(key=KEY)),
    (f"status ```{KEY}```", Status(key=KEY)),
    (f"status `<{UPPER}>`", Status(key=KEY)),
    (f'status "{KEY}"', Status(key=KEY)),
    (f"status \u201c{KEY}\u201d", Status(key=KEY)),
    (f"subscribe &lt;{KEY}&gt; --events status", sub(events="status")),
    (f"unsubscribe `{KEY}`", Unsubscribe(key=KEY, all=False)),
    ("unsubscribe `all`", Unsubscribe(key=None, all=True)),
    (f"mute <{KEY}> 2h", Mute(key=KEY, seconds=7200)),
    # mute
    (f"mute {KEY} 30m", Mute(key=KEY, seconds=1800)),
    (f"mute {KEY} 2h", Mute(key=KEY, seconds=7200)),
    (f"mute {KEY} 1d", Mute(key=KEY, seconds=86400)),
    (f"mute {KEY} 90s", Mute(key=KEY, seconds=90)),
    (f"mute {KEY} 1h30m", Mute(key=KEY, seconds=5400)),
    (f"mute {KEY} 1h 30m", Mute(key=KEY, seconds=5400)),
    (f"mute {KEY} 2H", Mute(key=KEY, seconds=7200)),
    (f"mute {KEY} 30d", Mute(key=KEY, seconds=30 * 86400)),
    (f"MUTE {UPPER} 45min", Mute(key=KEY, seconds=2700)),
    # train: defaults 0.8 and 19, ranges of REFERENCE §5.1 / §8
    (f"train {KEY}", Train(dataset_key=KEY)),
    (f"TRAIN <{UPPER}>", Train(dataset_key=KEY, target=0.8, scaling_factor=19)),
    (f"train {KEY} --target 0.85", Train(dataset_key=KEY, target=0.85)),
    (f"train {KEY} --target=1", Train(dataset_key=KEY, target=1.0)),
    (f"train {KEY} --target 85%", Train(dataset_key=KEY, target=0.85)),
    (f"train {KEY} --target .9 --scaling-factor 8", Train(KEY, target=0.9, scaling_factor=8)),
    (f"train {KEY} --scaling_factor=499", Train(dataset_key=KEY, scaling_factor=499)),
    (f"train {KEY} —scaling-factor 50", Train(dataset_key=KEY, scaling_factor=50)),
    (
        f"train --events failures {KEY} --mention <!subteam^S1|@ml>",
        Train(dataset_key=KEY, mention="<!subteam^S1|@ml>", events="failures"),
    ),
    (f"train {KEY} --mention @here", Train(dataset_key=KEY, mention="<!here>")),
    # cancel, datasets
    (f"cancel {UPPER}", Cancel(key=KEY)),
    (f"Cancel `{KEY}`", Cancel(key=KEY)),
    ("datasets", Datasets()),
    ("DATASETS 3", Datasets(page=3)),
    ("datasets 1000", Datasets(page=1000)),
    # a personal subscription (a flag: no value), the broadcast mode
    (f"subscribe {KEY} --dm", Subscribe(KEY, None, None, None, dm=True)),
    (
        f"subscribe {KEY} --DM --broadcast Failures",
        Subscribe(KEY, None, None, None, broadcast="failures", dm=True),
    ),
    # digest
    ("digest daily 09:00", Digest(daily_at="09:00")),
    ("DIGEST daily 9h05 --tz europe/paris", Digest(daily_at="09:05", tz="Europe/Paris")),
    ("digest daily 7.30 --tz=utc", Digest(daily_at="07:30", tz="UTC")),
    ("digest OFF", Digest(daily_at=None)),
]


@pytest.mark.parametrize(("text", "expected"), VALID)
def test_valid_text_parses_to_the_exact_command(text: str, expected: Command) -> None:
    assert parse_command(text, allow_broadcast=True) == expected


BROADCASTS = [
    ("--mention <!here>", "<!here>"),
    ("--mention <!channel|channel>", "<!channel>"),
    ("--mention @everyone", "<!everyone>"),
    ("--mention &lt;!everyone&gt;", "<!everyone>"),
    ("--mention @Here", "<!here>"),
]


@pytest.mark.parametrize(("option", "normalised"), BROADCASTS)
def test_broadcast_mentions_are_refused_unless_allowed(option: str, normalised: str) -> None:
    with pytest.raises(CommandError) as refused:
        parse_command(f"subscribe {KEY} {option}")
    assert refused.value.message.startswith(f"`--mention {normalised}` would ping everyone")
    assert "ALLOW_BROADCAST_MENTIONS" in refused.value.message
    allowed = parse_command(f"subscribe {KEY} {option}", allow_broadcast=True)
    assert isinstance(allowed, Subscribe) and allowed.mention == normalised


def test_a_broadcast_mention_on_train_is_refused_with_the_train_usage() -> None:
    with pytest.raises(CommandError) as refused:
        parse_command(f"train {KEY} --mention @channel")
    assert refused.value.message == (
        "`--mention <!channel>` would ping everyone in the channel, and this bot is set not "
        "to. Mention a person or a user group instead (ask the bot's operator about "
        "ALLOW_BROADCAST_MENTIONS)."
    )
    assert refused.value.usage == TRAIN


@pytest.mark.parametrize("name", ["Xtarget", "X", "-Xy"])
def test_a_smart_dash_option_keeps_every_letter_it_was_typed_with(name: str) -> None:
    with pytest.raises(CommandError) as refused:
        parse_command(f"train {KEY} \u2014{name} 0.9")
    assert refused.value.message.startswith(f"Unknown option `--{name.lstrip('-')}`.")


def test_person_and_group_mentions_need_no_permission() -> None:
    for mention in ("<@U0ONCALL>", "<!subteam^S0ONCALL|oncall>"):
        parsed = parse_command(f"subscribe {KEY} --mention {mention}")
        assert isinstance(parsed, Subscribe) and parsed.mention == mention


MENTION_FORMS = (
    "`--mention` takes @someone or @a-group picked from autocomplete (sent as &lt;@U…&gt; "
    "or &lt;!subteam^…&gt;); not "
)
LONG = "x" * 60

INVALID: list[tuple[str, str, str | None]] = [
    ("x" * 2001, "That command is too long", None),
    (" " * 2001, "That command is too long", None),
    ("subscrbe", "Unknown command `subscrbe`. Did you mean `subscribe`?", None),
    ("lst", "Unknown command `lst`. Did you mean `list`?", None),
    ("unsub all", "Unknown command `unsub`. Did you mean `unsubscribe`?", None),
    (
        "watch it",
        "Unknown command `watch`. Commands: subscribe, unsubscribe, list, status, mute, unmute, "
        "train, cancel, datasets, digest, help.",
        None,
    ),
    (KEY, f"Start with a command, e.g. `subscribe {KEY}` or `status {KEY}`.", None),
    (
        "<!channel>",
        "Unknown command `&lt;!channel&gt;`. Commands: subscribe, unsubscribe, "
        "list, status, mute, unmute, train, cancel, datasets, digest, help.",
        None,
    ),
    ("help me", "Unexpected argument `me`.", USAGE["help"]),
    ("list all", "`all` is not a page number (e.g. `list 2`).", USAGE["list"]),
    ("list 0", "`0` is not a page number (e.g. `list 2`).", USAGE["list"]),
    ("list -1", "`-1` is not a page number (e.g. `list 2`).", USAGE["list"]),
    ("list 1001", "`1001` is not a page number (e.g. `list 2`).", USAGE["list"]),
    ("list 2 3", "Unexpected argument `3`.", USAGE["list"]),
    ("subscribe", "Missing the training job key.", SUB),
    ("subscribe --events all", "Missing the training job key.", SUB),
    ("subscribe xyz", f"`xyz` {NOT_A_KEY}", SUB),
    ("subscribe <!channel>", f"`&lt;!channel&gt;` {NOT_A_KEY}", SUB),
    ("subscribe &lt;!channel&gt;", f"`&lt;!channel&gt;` {NOT_A_KEY}", SUB),
    ("subscribe a&b`c", f"`a&amp;b'c` {NOT_A_KEY}", SUB),
    (f"subscribe {LONG}", f"`{'x' * 40}…` {NOT_A_KEY}", SUB),
    ("subscribe " + "<" * 30, f"`{'&lt;' * 10}…` {NOT_A_KEY}", SUB),
    ("subscribe a\x00b", f"`a?b` {NOT_A_KEY}", SUB),
    (f"subscribe {KEY}0", f"`{KEY}0` {NOT_A_KEY}", SUB),
    (f"subscribe {{{KEY}}}", f"`{{{KEY}}}` {NOT_A_KEY}", SUB),
    (f"subscribe <{KEY}", f"`&lt;{KEY}` {NOT_A_KEY}", SUB),  # unbalanced: not unwrapped
    (f"subscribe `{KEY}>", f"`'{KEY}…` {NOT_A_KEY}", SUB),
    (f"subscribe {KEY} {KEY}", f"Unexpected argument `{KEY}`.", SUB),
    (
        f"subscribe {KEY} --mentoin @here",
        "Unknown option `--mentoin`. Did you mean `--mention`?",
        SUB,
    ),
    (
        f"subscribe {KEY} --colour red",
        "Unknown option `--colour`. Options: --min-improvement, --mention, --events, "
        "--broadcast, --dm.",
        SUB,
    ),
    (f"subscribe {KEY} --events", "`--events` needs a value.", SUB),
    (f"subscribe {KEY} --events=", "`--events` needs a value.", SUB),
    (f"subscribe {KEY} --events --mention @here", "`--events` needs a value.", SUB),
    (f"subscribe {KEY} --events all --events status", "`--events` is given more than once.", SUB),
    (
        f"subscribe {KEY} --events some",
        "`--events` must be all, status or failures, not `some`.",
        SUB,
    ),
    *[
        (
            f"subscribe {KEY} --min-improvement {value}",
            "`--min-improvement` must be a number above 0 and at most 1 (e.g. 0.01), "
            f"not `{value}`.",
            SUB,
        )
        for value in ("0", "1.5", "-0.5", "abc", "nan", "inf", "0,01", "200%", "1e-400", "٠.٥")
    ],
    *[
        (f"subscribe {KEY} --mention {value}", f"{MENTION_FORMS}`{echo}`.", SUB)
        for value, echo in [
            ("bob", "bob"),
            ("@bob", "@bob"),
            ("<@u123>", "&lt;@u123&gt;"),
            ("<#C123>", "&lt;#C123&gt;"),
            ("<!subteam^X1>", "&lt;!subteam^X1&gt;"),
            ("<https://x.y|z>", "&lt;https://x.y|z&gt;"),
        ]
    ],
    ("unsubscribe", "Missing the training job key (or `all`).", USAGE["unsubscribe"]),
    ("unsubscribe everything", f"`everything` {NOT_A_KEY}", USAGE["unsubscribe"]),
    ("unsubscribe all now", "Unexpected argument `now`.", USAGE["unsubscribe"]),
    (f"status {KEY} --verbose", "`status` takes no options: `--verbose`.", USAGE["status"]),
    ("status", "Missing the training job key.", USAGE["status"]),
    ("unmute nope", f"`nope` {NOT_A_KEY}", USAGE["unmute"]),
    ("mute", "Missing the training job key.", USAGE["mute"]),
    (f"mute {KEY}", "Missing the duration (e.g. 30m, 2h, 1d, 1h30m).", USAGE["mute"]),
    ("mute nope 2h", f"`nope` {NOT_A_KEY}", USAGE["mute"]),
    (f"mute {KEY} 30", "`30` is not a duration (use e.g. 30m, 2h, 1d or 1h30m).", USAGE["mute"]),
    (
        f"mute {KEY} 30m1h",
        "`30m1h` is not a duration (use e.g. 30m, 2h, 1d or 1h30m).",
        USAGE["mute"],
    ),
    (
        f"mute {KEY} 2h please",
        "`2h please` is not a duration (use e.g. 30m, 2h, 1d or 1h30m).",
        USAGE["mute"],
    ),
    (f"mute {KEY} 0m", "`0m` is out of range: a duration is between 1s and 30d.", USAGE["mute"]),
    (f"mute {KEY} 31d", "`31d` is out of range: a duration is between 1s and 30d.", USAGE["mute"]),
    (f"mute {KEY} 2h --force", "`mute` takes no options: `--force`.", USAGE["mute"]),
    ("dataset", "Unknown command `dataset`. Did you mean `datasets`?", None),
    ("train", "Missing the dataset key.", TRAIN),
    ("train --target 0.9", "Missing the dataset key.", TRAIN),
    ("train oilplantv4", f"`oilplantv4` {NOT_A_DATASET}", TRAIN),
    (f"train {KEY} {KEY}", f"Unexpected argument `{KEY}`.", TRAIN),
    (f"train {KEY} --target", "`--target` needs a value.", TRAIN),
    (f"train {KEY} --target 0.8 --target 0.9", "`--target` is given more than once.", TRAIN),
    (
        f"train {KEY} --min-improvement 0.01",
        "Unknown option `--min-improvement`. Options: --target, --scaling-factor, --mention, "
        "--events.",
        TRAIN,
    ),
    (
        f"train {KEY} --scaling 19",
        "Unknown option `--scaling`. Did you mean `--scaling-factor`?",
        TRAIN,
    ),
    *[
        (
            f"train {KEY} --target {value}",
            f"`--target` must be a number above 0 and at most 1 (e.g. 0.85), not `{value}`.",
            TRAIN,
        )
        for value in ("0", "0.0", "1.01", "-0.5", "101%", "high", "nan", "inf", "0,85", "1e-400")
    ],
    *[
        (
            f"train {KEY} --scaling-factor {value}",
            f"`--scaling-factor` must be a whole number from 8 to 499 (e.g. 19), not `{value}`.",
            TRAIN,
        )
        for value in ("0", "7", "500", "19.5", "-19", "1e2", "nineteen", "١٩")
    ],
    (
        f"train {KEY} --events some",
        "`--events` must be all, status or failures, not `some`.",
        TRAIN,
    ),
    (f"train {KEY} --mention bob", f"{MENTION_FORMS}`bob`.", TRAIN),
    ("cancel", "Missing the training job key.", USAGE["cancel"]),
    ("cancel all", f"`all` {NOT_A_KEY}", USAGE["cancel"]),
    (f"cancel {KEY} --force", "`cancel` takes no options: `--force`.", USAGE["cancel"]),
    ("datasets all", "`all` is not a page number (e.g. `datasets 2`).", USAGE["datasets"]),
    ("datasets 0", "`0` is not a page number (e.g. `datasets 2`).", USAGE["datasets"]),
    ("datasets 1001", "`1001` is not a page number (e.g. `datasets 2`).", USAGE["datasets"]),
    ("datasets 1 2", "Unexpected argument `2`.", USAGE["datasets"]),
    ("datasets --state COMPLETED", "`datasets` takes no options: `--state`.", USAGE["datasets"]),
    (f"subscribe {KEY} --dm=yes", "`--dm` takes no value.", SUB),
    (f"subscribe {KEY} --dm --dm", "`--dm` is given more than once.", SUB),
    (
        f"subscribe {KEY} --broadcast loud",
        "`--broadcast` must be final, failures or none, not `loud`.",
        SUB,
    ),
    *[
        (text, "Say `digest daily 09:00` (optionally `--tz Europe/Paris`) or `digest off`.", DIGEST)
        for text in ("digest", "digest weekly 09:00", "digest --tz UTC")
    ],
    ("digest off --tz UTC", "`digest off` takes no options.", DIGEST),
    ("digest daily", "Missing the time of day (e.g. 09:00).", DIGEST),
    ("digest daily 09:00 10:00", "Unexpected argument `10:00`.", DIGEST),
    (
        "digest daily 25:00",
        "`25:00` is not a time of day: use HH:MM on the 24-hour clock (e.g. 09:00).",
        DIGEST,
    ),
    ("digest daily 09:00 --tz Mars/Base", f"`Mars/Base` {NOT_A_ZONE}.", DIGEST),
    (
        "digest daily 09:00 --tz europe/pari",
        f"`europe/pari` {NOT_A_ZONE}. Did you mean `Europe/Paris`?",
        DIGEST,
    ),
]


@pytest.mark.parametrize(("text", "message", "usage"), INVALID)
def test_invalid_text_raises_command_error(text: str, message: str, usage: str | None) -> None:
    with pytest.raises(CommandError) as caught:
        parse_command(text)
    assert caught.value.message == message
    assert str(caught.value) == message
    assert caught.value.usage == usage
    assert len(message) <= 200


def test_text_of_exactly_2000_characters_is_still_parsed() -> None:
    assert parse_command("help" + " " * 1996) == Help()


def test_huge_text_is_refused_quickly() -> None:
    with pytest.raises(CommandError, match=r"^That command is too long$"):
        parse_command(f"subscribe {KEY} " + "<" * 5_000_000)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30m", 1800),
        ("2h", 7200),
        ("1d", 86400),
        ("90s", 90),
        ("1h30m", 5400),
        ("1s", 1),
        ("1d2h3m4s", 93784),
        ("2 hours", 7200),
        ("1day", 86400),
        ("10 mins", 600),
        ("720h", 2592000),
    ],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "m", "30", "1.5h", "-1h", "1w", "1h1h", "٣m", "9" * 5000 + "s", "2592001s"]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_duration(text)
    assert caught.value.usage == USAGE["mute"]
    assert len(caught.value.message) <= 200


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (1, "1s"), (90, "1m30s"), (5400, "1h30m"), (86400, "1d"), (90061, "1d1h1m1s")],
)
def test_format_duration(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (7199.999999, "2h"),  # `mute … 2h` answered "1h59m59s"
        (3599.9996, "1h"),  # the Mute 1 h button answered "59m59s"
        (93783.9999, "1d2h3m4s"),  # `list` showed 1d2h3m3s
        (7200.4, "2h"),
        (89.5, "1m30s"),
        (0.2, "0s"),
    ],
)
def test_format_duration_rounds_a_remaining_time_to_the_nearest_second(
    seconds: float, text: str
) -> None:
    assert format_duration(seconds) == text


def test_format_duration_refuses_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        format_duration(-1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (KEY, True),
        (UPPER, True),
        (KEY[:-1], False),
        (KEY + "\n", False),
        (KEY.replace("-", ""), False),
        ("g" + KEY[1:], False),
        (f"{{{KEY}}}", False),
        ("", False),
    ],
)
def test_is_job_key(text: str, expected: bool) -> None:
    assert is_job_key(text) is expected


def test_usage_covers_every_command_and_help_text_shows_them_escaped() -> None:
    assert list(USAGE) == [
        "subscribe", "unsubscribe", "list", "status", "mute", "unmute",
        "train", "cancel", "datasets", "digest", "help",
    ]  # fmt: skip
    assert USAGE["subscribe"] == (
        "/mathfi subscribe <trainingJobKey> [--min-improvement 0.01] "
        "[--mention <@U…>|<!subteam^…>] [--events all|status|failures] "
        "[--broadcast final|failures|none] [--dm]"
    )
    assert help_text("/mathfi") == HELP_TEXT
    for line in USAGE.values():
        assert escape_mrkdwn(line) in HELP_TEXT
    assert "<" not in HELP_TEXT and ">" not in HELP_TEXT


def test_help_text_uses_the_configured_command_name() -> None:
    text = help_text("/notify")
    assert "/mathfi" not in text
    assert "`/notify unsubscribe &lt;trainingJobKey&gt;|all`" in text
    assert len(text.splitlines()) == 1 + len(USAGE)


def test_escape_mrkdwn_escapes_ampersand_first() -> None:
    assert escape_mrkdwn("<!here> & &lt;") == "&lt;!here&gt; &amp; &amp;lt;"


# --- properties -------------------------------------------------------------------------------

_WORDS = [
    *USAGE,
    "all",
    KEY,
    UPPER,
    "xyz",
    "30m",
    "1h30m",
    "0.01",
    "@here",
    "<!here>",
    "<@U1|a b>",
    "<!subteam^S1>",
    "&lt;!channel&gt;",
    "&amp;",
    "—",
    "–events",
    "--",
    "--events",
    "--events=all",
    "--mention",
    "--min-improvement",
    "--min-improvement=2",
    "--target",
    "--target=0.9",
    "1.5",
    "--scaling-factor",
    "19",
    "500",
]
_COMMAND_LIKE = st.lists(
    st.one_of(st.sampled_from(_WORDS), st.text(max_size=30)), max_size=8
).flatmap(
    lambda words: st.lists(
        st.sampled_from([" ", "\u00a0", "\t", "\n", "\u2003", ""]),
        min_size=len(words),
        max_size=len(words),
    ).map(lambda seps: "".join(s + w for s, w in zip(seps, words, strict=True)))
)
_ANY_TEXT = st.one_of(
    st.text(),
    _COMMAND_LIKE,
    st.text(min_size=1990, max_size=2010),
)


def _check_error(err: CommandError) -> None:
    assert len(err.message) <= 200
    assert "<" not in err.message and ">" not in err.message
    assert err.usage is None or err.usage in USAGE.values()


@settings(max_examples=300, deadline=None)
@given(_ANY_TEXT)
def test_any_text_gives_a_command_or_a_command_error(text: str) -> None:
    try:
        result = parse_command(text)
    except CommandError as err:
        _check_error(err)
    else:
        assert isinstance(
            result,
            Subscribe
            | Unsubscribe
            | ListSubs
            | Status
            | Mute
            | Unmute
            | Train
            | Cancel
            | Datasets
            | Help
            | Digest,
        )


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_error_echoes_at_most_40_characters_of_input(junk: str) -> None:
    marker = "Q" * 45 + junk
    with pytest.raises(CommandError) as caught:
        parse_command(f"status {marker}")
    _check_error(caught.value)
    assert "Q" * 41 not in caught.value.message


@given(st.uuids())
def test_any_uuid_is_a_key_in_any_case(key: uuid.UUID) -> None:
    assert is_job_key(str(key).upper())
    assert parse_command(f"status {str(key).upper()}") == Status(key=str(key))


@given(st.integers(min_value=1, max_value=30 * 86400))
def test_formatted_durations_parse_back(seconds: int) -> None:
    text = format_duration(seconds)
    assert re.fullmatch(r"(\d+d)?(\d+h)?(\d+m)?(\d+s)?", text)
    assert parse_duration(text) == seconds


@given(
    st.tuples(
        st.integers(0, 30), st.integers(0, 23), st.integers(0, 59), st.integers(0, 59)
    ).filter(lambda p: 0 < ((p[0] * 24 + p[1]) * 60 + p[2]) * 60 + p[3] <= 30 * 86400)
)
def test_canonical_durations_round_trip(parts: tuple[int, int, int, int]) -> None:
    text = "".join(f"{n}{u}" for n, u in zip(parts, "dhms", strict=True) if n)
    assert format_duration(parse_duration(text)) == text
