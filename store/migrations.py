"""Numbered schema migrations. (Long by nature, kept whole: released migrations are never
edited or moved, and their order is the file's order.)

Each migration is a function of the sqlite-utils `Database`, listed in `MIGRATIONS` under
its number. Once a migration has been released it is never edited: a schema change is a
new function with the next number. The `migrations` table records the numbers applied;
each migration runs in its own transaction together with that record, so a failing
migration leaves nothing behind and stays pending.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

from sqlite_utils import Database

log = logging.getLogger(__name__)

Migration = Callable[[Database], None]

OUTBOX_STATES = ("pending", "sending", "sent", "dead")
EVENT_FILTERS = ("all", "status", "failures")
ACTION_KINDS = ("start", "cancel", "retrain")
ACTION_STATES = ("requested", "done", "failed", "unknown", "refused")
BROADCAST_MODES = ("final", "failures", "none")


def m001_initial(db: Database) -> None:
    """Subscriptions, jobs, performance history, outbox and cards."""
    db.table("jobs").create(
        {
            "job_key": str,
            "snapshot_json": str,
            "snapshot_hash": str,
            "status": str,
            "best_performance": float,
            "best_algorithm": str,
            "next_poll_at": float,
            "consecutive_errors": int,
            "unreachable": int,
            "terminal": int,
            "version": int,
            "updated_at": float,
            "last_improvement_at": float,
        },
        pk="job_key",
        not_null=["snapshot_json", "snapshot_hash", "status", "next_poll_at", "updated_at"],
        defaults={"consecutive_errors": 0, "unreachable": 0, "terminal": 0, "version": 0},
    )
    subscriptions = db.table("subscriptions").create(
        {
            "id": int,
            "team_id": str,
            "channel_id": str,
            "job_key": str,
            "created_by": str,
            "created_at": float,
            "min_improvement": float,
            "mention": str,
            "events": str,
            "muted_until": float,
            "active": int,
            "disabled_reason": str,
            "last_best": float,
        },
        pk="id",
        foreign_keys=[("job_key", "jobs", "job_key")],
        not_null=["channel_id", "job_key", "created_at", "min_improvement", "events", "active"],
        defaults={"min_improvement": 0.005, "events": "all", "active": 1},
    )
    subscriptions.create_index(["channel_id", "job_key"], unique=True)
    subscriptions.create_index(["job_key"])
    history = db.table("performance_history").create(
        {"job_key": str, "algorithm": str, "at": float, "value": float},
        foreign_keys=[("job_key", "jobs", "job_key")],
        not_null=["job_key", "algorithm", "at", "value"],
    )
    history.create_index(["job_key", "algorithm", "at"])
    _create_outbox(db)
    cards = db.table("cards").create(
        {"channel_id": str, "job_key": str, "ts": str, "dirty": int, "card_version": int},
        pk=("channel_id", "job_key"),
        foreign_keys=[("job_key", "jobs", "job_key")],
        not_null=["dirty", "card_version"],
        defaults={"dirty": 0, "card_version": 0},
    )
    cards.create_index(["job_key"])
    cards.create_index(["dirty"])
    _create_checks(db)


def _create_outbox(db: Database) -> None:
    outbox = db.table("outbox").create(
        {
            "id": int,
            "dedupe_key": str,
            "channel_id": str,
            "job_key": str,
            "kind": str,
            "payload": str,
            "state": str,
            "attempts": int,
            "next_attempt_at": float,
            "slack_ts": str,
            "last_error": str,
            "created_at": float,
            "updated_at": float,
        },
        pk="id",
        not_null=[
            "dedupe_key",
            "channel_id",
            "job_key",
            "kind",
            "payload",
            "state",
            "attempts",
            "next_attempt_at",
            "created_at",
            "updated_at",
        ],
        defaults={"state": "pending", "attempts": 0},
    )
    outbox.create_index(["dedupe_key"], unique=True)
    outbox.create_index(["state", "channel_id", "id"])


def _create_checks(db: Database) -> None:
    """Refuse rows no code path should write (triggers: sqlite-utils has no CHECK option).

    RAISE(ABORT) fails the statement even under INSERT OR IGNORE, so a bad row rolls the
    whole transaction back instead of vanishing quietly.
    """
    states = ", ".join(f"'{state}'" for state in OUTBOX_STATES)
    filters = ", ".join(f"'{name}'" for name in EVENT_FILTERS)
    checks = {
        "outbox_insert_check": (
            "BEFORE INSERT ON outbox",
            f"NOT json_valid(NEW.payload) OR NEW.state NOT IN ({states})",
            "outbox row refused: payload is not JSON or state is unknown",
        ),
        "outbox_state_check": (
            "BEFORE UPDATE OF state ON outbox",
            f"NEW.state NOT IN ({states})",
            "outbox state is unknown",
        ),
        "subscriptions_events_check": (
            "BEFORE INSERT ON subscriptions",
            f"NEW.events NOT IN ({filters})",
            "subscription events filter is unknown",
        ),
        "subscriptions_events_update_check": (
            "BEFORE UPDATE OF events ON subscriptions",
            f"NEW.events NOT IN ({filters})",
            "subscription events filter is unknown",
        ),
    }
    for name, (when, condition, message) in checks.items():
        db.execute(
            f"CREATE TRIGGER {name} {when} WHEN {condition} "
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
        )


def m002_retention(db: Database) -> None:
    """What pruning needs: incremental auto-vacuum, the outbox indexes of its two
    questions, and when a subscription ended.

    `auto_vacuum` of an existing file only changes with a VACUUM, which cannot run inside
    this migration's transaction: `m002_vacuum` (in `FINISH`) runs it after the commit.
    """
    # Sent and dead rows older than the retention, oldest first.
    db.table("outbox").create_index(["state", "updated_at"])
    # A job's rows: one that still has unsent rows is not pruned, the others go with it.
    db.table("outbox").create_index(["job_key"])
    # Set by unsubscribe: a job is kept JOB_RETENTION after its last watcher left.
    db.execute("ALTER TABLE subscriptions ADD COLUMN ended_at FLOAT")


def m002_vacuum(db: Database) -> None:
    """Rewrite the file once so that incremental vacuum is on (a no-op once it is)."""
    if db.execute("PRAGMA auto_vacuum").fetchone()[0] == INCREMENTAL:
        return
    db.execute("PRAGMA auto_vacuum = INCREMENTAL")
    log.info("rewriting the database once for incremental vacuum (VACUUM)")
    db.execute("VACUUM")


INCREMENTAL = 2  # PRAGMA auto_vacuum's value for INCREMENTAL


def m003_actions(db: Database) -> None:
    """Actions taken from Slack (start, cancel, retrain a training), one row each, written
    before MathFi is called: `idempotency_key` (unique) makes a double click or a redelivery
    find the row instead of acting twice. `subject_key` is what the action acts on (the
    dataset of a start, the job of a cancel or a retrain); `parameters` is JSON.
    """
    actions = db.table("actions").create(
        {
            "id": int,
            "idempotency_key": str,
            "kind": str,
            "team_id": str,
            "channel_id": str,
            "user_id": str,
            "subject_key": str,
            "parameters": str,
            "state": str,
            "answer": str,
            "result_job_key": str,
            "created_at": float,
            "updated_at": float,
        },
        pk="id",
        not_null=[
            "idempotency_key",
            "kind",
            "channel_id",
            "user_id",
            "subject_key",
            "parameters",
            "state",
            "created_at",
            "updated_at",
        ],
        defaults={"state": "requested", "parameters": "{}"},
    )
    actions.create_index(["idempotency_key"], unique=True)
    actions.create_index(["subject_key", "kind"])
    actions.create_index(["channel_id", "id"])
    kinds = ", ".join(f"'{kind}'" for kind in ACTION_KINDS)
    states = ", ".join(f"'{state}'" for state in ACTION_STATES)
    checks = {
        "actions_insert_check": (
            "BEFORE INSERT ON actions",
            f"NOT json_valid(NEW.parameters) OR NEW.kind NOT IN ({kinds}) "
            f"OR NEW.state NOT IN ({states})",
            "action row refused: parameters are not JSON, or kind or state is unknown",
        ),
        # requested -> done | failed | unknown; unknown may still be resolved; the rest stay.
        "actions_state_check": (
            "BEFORE UPDATE OF state ON actions",
            f"NEW.state NOT IN ({states}) OR (NEW.state != OLD.state "
            "AND OLD.state NOT IN ('requested', 'unknown'))",
            "action state change refused",
        ),
    }
    for name, (when, condition, message) in checks.items():
        db.execute(
            f"CREATE TRIGGER {name} {when} WHEN {condition} "
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
        )


def m004_outbox_call_started(db: Database) -> None:
    """When a row's last Slack call started, and when to look for a late copy of it.

    `call_started_at`: set as each post of the row begins; after a stop, the row is not
    looked up (nor posted again) before Slack has had the time a late call needs.
    `verify_at`: a row posted again after an unknown outcome is looked up once more then,
    and a copy that landed late is deleted.
    """
    outbox = db.table("outbox")
    outbox.add_column("call_started_at", float)
    outbox.add_column("verify_at", float)
    db.execute("CREATE INDEX outbox_verify_at ON outbox (verify_at) WHERE verify_at IS NOT NULL")


def m005_unwatched_cards(db: Database) -> None:
    """Cards remember when and by whom their channel stopped watching the job: the card
    is edited once to say so, then left alone (`unwatched_shown`)."""
    db.execute("ALTER TABLE cards ADD COLUMN unwatched_at REAL")
    db.execute("ALTER TABLE cards ADD COLUMN unwatched_by TEXT")
    db.execute("ALTER TABLE cards ADD COLUMN unwatched_shown INTEGER NOT NULL DEFAULT 0")


def m006_job_forecast(db: Database) -> None:
    """Each job keeps its forecast state as JSON (the engine's: when it was first seen
    running, the last forecast the card shows, and the warning gate's memory), so that a
    restart neither repeats a warning nor forgets the card's forecast."""
    db.execute("ALTER TABLE jobs ADD COLUMN forecast_json TEXT")


def m007_alerts(db: Database) -> None:
    """On-call alerts (issue #17): one row per bad ending (`status`) told to a channel with
    a `--mention`, created in the poll's transaction with its outbox row (`outbox_id`, the
    alert message). `acked_by`/`acked_at`: who acknowledged it; `pages`: re-pages queued so
    far; `next_page_at`: when the next is due (None: ONCALL_REPAGE after the alert was
    posted)."""
    alerts = db.table("alerts").create(
        {
            "id": int,
            "outbox_id": int,
            "job_key": str,
            "channel_id": str,
            "subscription_id": int,
            "mention": str,
            "status": str,
            "raised_at": float,
            "acked_by": str,
            "acked_at": float,
            "pages": int,
            "next_page_at": float,
        },
        pk="id",
        not_null=["outbox_id", "job_key", "channel_id", "subscription_id", "raised_at", "pages"],
        defaults={"pages": 0},
    )
    alerts.create_index(["outbox_id"], unique=True)
    alerts.create_index(["channel_id", "acked_at"])
    db.execute("CREATE INDEX alerts_open ON alerts (raised_at) WHERE acked_at IS NULL")


def m008_action_results(db: Database) -> None:
    """Find the action that started a job (`result_job_key`): each redraw of the job's card
    asks who started it (`job_origin`), which must not scan every action ever taken."""
    db.table("actions").create_index(["result_job_key"])


def m009_broadcast_and_digests(db: Database) -> None:
    """Issue #14: each subscription's `--broadcast` (final, failures, none; existing ones
    keep today's behaviour, final), and each channel's daily digest: its local hour
    ("HH:MM") and time zone, and the local date of the last digest written (with when),
    which the digest loop advances in the transaction that queues the digest."""
    db.execute("ALTER TABLE subscriptions ADD COLUMN broadcast TEXT NOT NULL DEFAULT 'final'")
    db.table("digests").create(
        {
            "channel_id": str,
            "team_id": str,
            "daily_at": str,
            "tz": str,
            "last_sent_day": str,
            "last_sent_at": float,
            "active": int,
            "updated_by": str,
            "updated_at": float,
        },
        pk="channel_id",
        not_null=["daily_at", "tz", "active", "updated_at"],
        defaults={"tz": "UTC", "active": 1},
    )
    modes = ", ".join(f"'{mode}'" for mode in BROADCAST_MODES)
    checks = {
        "subscriptions_broadcast_check": (
            "BEFORE INSERT ON subscriptions",
            f"NEW.broadcast NOT IN ({modes})",
            "subscription broadcast mode is unknown",
        ),
        "subscriptions_broadcast_update_check": (
            "BEFORE UPDATE OF broadcast ON subscriptions",
            f"NEW.broadcast NOT IN ({modes})",
            "subscription broadcast mode is unknown",
        ),
    }
    for name, (when, condition, message) in checks.items():
        db.execute(
            f"CREATE TRIGGER {name} {when} WHEN {condition} "
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
        )


def m010_personal(db: Database) -> None:
    """Issue #15 (numbered 10: 8 went to the action results on main): personal
    subscriptions and the App Home. A personal subscription is one more subscription whose
    channel is its owner's DM with the bot (`owner_user_id` set, NULL for a channel's);
    `home_views` holds, for each person who opened the Home tab,
    whether the view is stale (`dirty`, `version` grows with each change) and when it was
    last published (re-published at most once a minute)."""
    db.execute("ALTER TABLE subscriptions ADD COLUMN owner_user_id TEXT")
    db.execute(
        "CREATE INDEX subscriptions_owner ON subscriptions (owner_user_id) "
        "WHERE owner_user_id IS NOT NULL"
    )
    db.execute("CREATE INDEX subscriptions_created_by ON subscriptions (created_by)")
    db.table("home_views").create(
        {
            "user_id": str,
            "team_id": str,
            "dirty": int,
            "version": int,
            "opened_at": float,
            "published_at": float,
        },
        pk="user_id",
        not_null=["dirty", "version", "opened_at"],
        defaults={"dirty": 1, "version": 0},
    )
    db.execute("CREATE INDEX home_views_dirty ON home_views (dirty) WHERE dirty = 1")


def m011_outbox_priority(db: Database) -> None:
    """How urgent a queued row is, and which row carried it.

    `priority`: 0 an alert, 1 normal, 2 progress (`bot.core.priority`); a channel's queued
    rows go lowest first, then oldest. `carried_by`: the id of the row (a job's final
    notification) whose message also says what this queued progress row said; it is marked
    sent together with its carrier, in one statement.
    """
    db.execute("ALTER TABLE outbox ADD COLUMN priority INTEGER NOT NULL DEFAULT 1")
    db.execute("ALTER TABLE outbox ADD COLUMN carried_by INTEGER")
    db.execute("CREATE INDEX outbox_queue ON outbox (state, channel_id, priority, id)")
    db.execute("CREATE INDEX outbox_carried_by ON outbox (carried_by) WHERE carried_by IS NOT NULL")


def m012_finished_jobs(db: Database) -> None:
    """Issue #16: a finished job keeps less once nothing more can be sent about it.

    `job_archive`: one row per compacted job, `data` its last snapshot and the newest
    points of its history (what its card draws) as deflated JSON (`store/compact.py`);
    the job's row then has an empty `snapshot_json`. `jobs_to_compact`: the finished jobs
    not compacted yet, by when they last changed (the retention round's question).
    """
    db.execute(
        "CREATE TABLE job_archive (job_key TEXT PRIMARY KEY REFERENCES jobs (job_key), "
        "data BLOB NOT NULL)"
    )
    db.execute(
        "CREATE INDEX jobs_to_compact ON jobs (updated_at) "
        "WHERE terminal = 1 AND snapshot_json != ''"
    )


def m013_folded_watchers(db: Database) -> None:
    """Issue #16: a compacted job's ended subscriptions and cards may be folded into its
    archive row (`store/fold.py`); `watched_until` on the job is then the latest end of
    those subscriptions, where the job retention's clock starts (NULL: none folded)."""
    db.execute("ALTER TABLE jobs ADD COLUMN watched_until REAL")


MIGRATIONS: tuple[tuple[int, Migration], ...] = (
    (1, m001_initial),
    (2, m002_retention),
    (3, m003_actions),
    (4, m004_outbox_call_started),
    (5, m005_unwatched_cards),
    (6, m006_job_forecast),
    (7, m007_alerts),
    (8, m008_action_results),
    (9, m009_broadcast_and_digests),
    (10, m010_personal),
    (11, m011_outbox_priority),
    (12, m012_finished_jobs),
    (13, m013_folded_watchers),
)


def applied(db: Database) -> set[int]:
    """Numbers of the migrations already applied (empty for a new database)."""
    if not db.table("migrations").exists():
        return set()
    return {row[0] for row in db.execute("SELECT number FROM migrations").fetchall()}


def apply_migrations(db: Database, *, now: float) -> list[int]:
    """Apply the pending migrations in order; returns the numbers applied now.

    Writes nothing when every migration is applied, so a read-only database opens.
    """
    done = applied(db)
    pending = [(number, fn) for number, fn in MIGRATIONS if number not in done]
    ran: list[int] = []
    for number, fn in pending:
        with db.conn:
            db.conn.execute("BEGIN IMMEDIATE")
            table = db.table("migrations")
            if not table.exists():
                table.create({"number": int, "name": str, "applied_at": float}, pk="number")
            if number in applied(db):  # another process got there first
                continue
            fn(db)
            table.insert({"number": number, "name": fn.__name__, "applied_at": now})
            ran.append(number)
            log.info("applied migration %s (%s)", number, fn.__name__)
    finish(db, applied(db))
    return ran


def finish(db: Database, done: set[int]) -> None:
    """Run the `FINISH` step of each applied migration, outside any transaction.

    A step that fails (the database is locked by another process, the disk is full) is
    logged and tried again at the next open: the store works without it.
    """
    for number, step in FINISH.items():
        if number not in done:
            continue
        try:
            step(db)
        except sqlite3.OperationalError as err:
            log.warning(
                "migration %s: %s failed, retried at the next open: %s", number, step.__name__, err
            )


# Steps that cannot run inside a transaction (VACUUM), run after the commit, at every
# open while their migration is applied: each checks whether it has anything to do (a
# crash between the commit and the step leaves it to the next open).
FINISH: dict[int, Migration] = {2: m002_vacuum}
