"""Job cards: the message a channel shows for a job, and whether it needs editing.

A card whose channel stopped watching the job (`unwatched_at`) is edited once more, to say
so, and then never again: `dirty_cards` leaves it out once `unwatched_shown`.
"""

from __future__ import annotations

import sqlite3

from store.connection import StoreConnection
from store.fold import folded_row, unfold_job
from store.records import Card


def unwatch_cards(
    conn: sqlite3.Connection, *, channel_id: str, job_keys: list[str], by: str | None, at: float
) -> None:
    """Inside the caller's (unsubscribe) transaction: the channel no longer watches these
    jobs, so each card is due for its one last edit."""
    conn.executemany(
        "UPDATE cards SET unwatched_at = ?, unwatched_by = ?, unwatched_shown = 0, dirty = 1, "
        "card_version = card_version + 1 WHERE channel_id = ? AND job_key = ?",
        [(at, by, channel_id, key) for key in job_keys],
    )


def rewatch_card(conn: sqlite3.Connection, *, channel_id: str, job_key: str) -> None:
    """Inside the caller's (subscribe) transaction: the card is live again (the watch row
    then marks it dirty, and it is redrawn with its buttons)."""
    conn.execute(
        "UPDATE cards SET unwatched_at = NULL, unwatched_by = NULL, unwatched_shown = 0 "
        "WHERE channel_id = ? AND job_key = ?",
        (channel_id, job_key),
    )


class CardStore(StoreConnection):
    def get_card(self, *, channel_id: str, job_key: str) -> Card | None:
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {Card.COLUMNS} FROM cards WHERE channel_id = ? AND job_key = ?",
                (channel_id, job_key),
            ).fetchone()
            if row is None:  # a finished job's old card may be folded (store/fold.py)
                row = folded_row(
                    conn, "cards", channel_id=channel_id, job_key=job_key, columns=Card.COLUMNS
                )
        return None if row is None else Card.from_row(row)

    def save_card(self, *, channel_id: str, job_key: str, ts: str) -> None:
        """Remember the card's message ts; the card is clean (its version is kept)."""
        with self._write() as conn:
            unfold_job(conn, job_key)
            conn.execute(
                "INSERT INTO cards (channel_id, job_key, ts, dirty, card_version) "
                "VALUES (?, ?, ?, 0, 0) ON CONFLICT (channel_id, job_key) "
                "DO UPDATE SET ts = excluded.ts, dirty = 0",
                (channel_id, job_key, ts),
            )

    def forget_card(self, *, channel_id: str, job_key: str) -> None:
        """The card's message is gone from Slack (deleted): the next row posts a new one."""
        self._change_card(
            "DELETE FROM cards WHERE channel_id = ? AND job_key = ?", channel_id, job_key
        )

    def dirty_cards(self, *, limit: int = 100) -> list[Card]:
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {Card.COLUMNS} FROM cards WHERE dirty = 1 AND unwatched_shown = 0 "
                "ORDER BY job_key, channel_id LIMIT ?",
                (limit,),
            ).fetchall()
        return [Card.from_row(row) for row in rows]

    def mark_card_clean(self, *, channel_id: str, job_key: str, card_version: int) -> bool:
        """Clean only if nothing marked the card dirty since `card_version` was read."""
        return (
            self._update_row(
                "UPDATE cards SET dirty = 0 "
                "WHERE channel_id = ? AND job_key = ? AND card_version = ?",
                (channel_id, job_key, card_version),
            )
            > 0
        )

    def mark_card_dirty(self, *, channel_id: str, job_key: str) -> None:
        self._change_card(
            "UPDATE cards SET dirty = 1, card_version = card_version + 1 "
            "WHERE channel_id = ? AND job_key = ?",
            channel_id,
            job_key,
        )

    def _change_card(self, sql: str, channel_id: str, job_key: str) -> None:
        """One statement on the card; on none, the job's folded cards are put back and it
        runs again (store/fold.py)."""
        with self._write() as conn:
            if conn.execute(sql, (channel_id, job_key)).rowcount == 0 and unfold_job(conn, job_key):
                conn.execute(sql, (channel_id, job_key))

    def mark_unwatched_shown(self, *, channel_id: str, job_key: str, unwatched_at: float) -> bool:
        """The card now says it is no longer watched: never edit it again (unless the channel
        subscribed again since, which cleared `unwatched_at`)."""
        return (
            self._update_row(
                "UPDATE cards SET dirty = 0, unwatched_shown = 1 "
                "WHERE channel_id = ? AND job_key = ? AND unwatched_at = ?",
                (channel_id, job_key, unwatched_at),
            )
            > 0
        )
