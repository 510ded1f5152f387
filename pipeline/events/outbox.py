"""The durable local outbox: an incident counts as emitted once committed here (SQLite, WAL)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    snapshot BLOB,
    created_at REAL NOT NULL,
    delivered_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (seq) WHERE delivered_at IS NULL;
CREATE TABLE IF NOT EXISTS dead_letter (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    body TEXT NOT NULL,
    reason TEXT NOT NULL,
    failed_at REAL NOT NULL
);
"""


def open_durable(path: Path, schema: str) -> sqlite3.Connection:
    """A SQLite database that survives crashes and power loss (WAL, synchronous=FULL), autocommit mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(schema)
    return conn


class Outbox:
    """One connection per thread: the pipeline appends, the sender reads and marks delivered."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = open_durable(path, SCHEMA)

    def append(self, event: dict[str, Any], snapshot: bytes | None) -> int:
        """Commit one event; returns its per-source sequence number."""
        cur = self.conn.execute(
            "INSERT INTO outbox (event_id, body, snapshot, created_at) VALUES (?, ?, ?, ?)",
            (event["event_id"], json.dumps(event, separators=(",", ":")), snapshot, time.time()),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def pending(self, *, after_seq: int, limit: int) -> list[tuple[int, str, str, bytes | None]]:
        return self.conn.execute(
            "SELECT seq, event_id, body, snapshot FROM outbox WHERE delivered_at IS NULL AND seq > ? "
            "ORDER BY seq LIMIT ?",
            (after_seq, limit),
        ).fetchall()

    def mark_delivered(self, seqs: list[int]) -> None:
        if not seqs:
            return
        now = time.time()
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.executemany(
                "UPDATE outbox SET delivered_at = ? WHERE seq = ?", [(now, s) for s in seqs]
            )

    def dead_letter(self, seq: int, reason: str) -> None:
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.execute(
                "INSERT OR REPLACE INTO dead_letter (seq, event_id, body, reason, failed_at) "
                "SELECT seq, event_id, body, ?, ? FROM outbox WHERE seq = ?",
                (reason, time.time(), seq),
            )
            self.conn.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    def count_pending(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL").fetchone()[0])

    def oldest_pending_age(self) -> float:
        row = self.conn.execute("SELECT MIN(created_at) FROM outbox WHERE delivered_at IS NULL").fetchone()
        return 0.0 if row[0] is None else time.time() - float(row[0])

    def close(self) -> None:
        self.conn.close()
