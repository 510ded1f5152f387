"""The durable local outbox: an incident counts as emitted once committed here (SQLite, WAL).

Each event is committed with its per-source sequence number already in its JSON body, so the sender
sends the stored bytes as they are. Snapshots are stored once per image (by sha256) and kept for
``retention`` after delivery, so the sink can fetch them by reference.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..failpoints import failpoint

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    snapshot BLOB,
    created_at REAL NOT NULL,
    delivered_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    snapshot_sha256 TEXT
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (seq) WHERE delivered_at IS NULL;
CREATE TABLE IF NOT EXISTS snapshots (
    sha256 TEXT PRIMARY KEY,
    jpeg BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letter (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    body TEXT NOT NULL,
    reason TEXT NOT NULL,
    failed_at REAL NOT NULL
);
"""

Pending = tuple[int, str, bytes, str | None]  # seq, event_id, body, snapshot sha256


def open_durable(path: Path, schema: str, *, page_size: int | None = None) -> sqlite3.Connection:
    """A SQLite database that survives crashes and power loss (WAL, synchronous=FULL), autocommit mode.
    ``page_size`` applies to a new file only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
    if page_size is not None:
        conn.execute(f"PRAGMA page_size={int(page_size)}")  # before WAL: a WAL file keeps its page size
    deadline = time.monotonic() + 30.0
    while True:  # switching a new file to WAL is not covered by the busy timeout: two openers can race
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(schema)
            return conn
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                conn.close()
                raise
            time.sleep(0.02)


class Outbox:
    """One connection per thread: the pipeline appends, the sender reads and marks delivered."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = open_durable(path, SCHEMA)
        columns = {row[1] for row in self.conn.execute("PRAGMA table_info(outbox)")}
        if "snapshot_sha256" not in columns:  # an outbox written before snapshots were stored by digest
            try:
                self.conn.execute("ALTER TABLE outbox ADD COLUMN snapshot_sha256 TEXT")
            except sqlite3.OperationalError as err:  # another connection added it first
                if "duplicate column" not in str(err):
                    raise

    def append(self, event: dict[str, Any], snapshot: bytes | None) -> int:
        """Commit one event (its ``seq`` is assigned here); returns the sequence number."""
        return self.append_many([(event, snapshot)])[-1]

    def append_many(self, items: Sequence[tuple[dict[str, Any], bytes | None]]) -> list[int]:
        """Commit several events in one transaction (one fsync)."""
        now = time.time()
        seqs: list[int] = []
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            row = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
            last = int(row[0]) if row else 0
            for event, snapshot in items:
                last += 1
                event["seq"] = last
                sha = None
                if snapshot is not None:
                    sha = event["evidence"]["sha256"]
                    self.conn.execute(
                        "INSERT INTO snapshots (sha256, jpeg, created_at) VALUES (?, ?, ?) "
                        "ON CONFLICT DO NOTHING",
                        (sha, snapshot, now),
                    )
                self.conn.execute(
                    "INSERT INTO outbox (seq, event_id, body, snapshot_sha256, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (last, event["event_id"], json.dumps(event, separators=(",", ":")), sha, now),
                )
                seqs.append(last)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        failpoint("edge.after_commit")
        return seqs

    def pending(self, *, after_seq: int, limit: int) -> list[Pending]:
        rows = self.conn.execute(
            "SELECT seq, event_id, body, snapshot_sha256 FROM outbox WHERE delivered_at IS NULL AND seq > ? "
            "ORDER BY seq LIMIT ?",
            (after_seq, limit),
        ).fetchall()
        return [(seq, event_id, body.encode(), sha) for seq, event_id, body, sha in rows]

    def snapshot(self, sha256: str) -> bytes | None:
        row = self.conn.execute("SELECT jpeg FROM snapshots WHERE sha256 = ?", (sha256,)).fetchone()
        if row is None:  # an outbox written before snapshots were stored by digest
            row = self.conn.execute(
                "SELECT snapshot FROM outbox WHERE snapshot IS NOT NULL AND body LIKE ? LIMIT 1",
                (f'%"sha256":"{sha256}"%',),
            ).fetchone()
        return None if row is None else bytes(row[0])

    def mark_delivered(self, seqs: list[int]) -> None:
        """One statement per run of consecutive sequence numbers (acks mostly come in order): about
        half the cost of one per event."""
        if not seqs:
            return
        now = time.time()
        runs: list[tuple[float, int, int]] = []
        for seq in sorted(seqs):
            if runs and seq <= runs[-1][2] + 1:
                runs[-1] = (now, runs[-1][1], seq)
            else:
                runs.append((now, seq, seq))
        self.conn.execute("BEGIN")
        self.conn.executemany(
            "UPDATE outbox SET delivered_at = ? WHERE seq BETWEEN ? AND ? AND delivered_at IS NULL", runs
        )
        self.conn.execute("COMMIT")

    def dead_letter(self, seq: int, reason: str) -> None:
        self.conn.execute("BEGIN")
        self.conn.execute(
            "INSERT OR REPLACE INTO dead_letter (seq, event_id, body, reason, failed_at) "
            "SELECT seq, event_id, body, ?, ? FROM outbox WHERE seq = ?",
            (reason, time.time(), seq),
        )
        self.conn.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
        self.conn.execute("COMMIT")

    def prune(self, *, retention_s: float) -> int:
        """Forget events delivered more than ``retention_s`` ago, and snapshots no pending event needs
        that are older than that; returns the number of events removed."""
        cutoff = time.time() - retention_s
        self.conn.execute("BEGIN")
        n = self.conn.execute(
            "DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < ?", (cutoff,)
        ).rowcount
        self.conn.execute(
            "DELETE FROM snapshots WHERE created_at < ? AND sha256 NOT IN "
            "(SELECT snapshot_sha256 FROM outbox WHERE snapshot_sha256 IS NOT NULL)",
            (cutoff,),
        )
        self.conn.execute("COMMIT")
        return n

    def count_pending(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL").fetchone()[0])

    def oldest_pending_age(self) -> float:
        row = self.conn.execute(
            "SELECT created_at FROM outbox WHERE delivered_at IS NULL ORDER BY seq LIMIT 1"
        ).fetchone()
        return 0.0 if row is None else time.time() - float(row[0])

    def close(self) -> None:
        self.conn.close()
