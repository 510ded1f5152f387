"""A bridge's durable state: its cursor in the sink's store (the last event it delivered or gave up
on), how far it may already have sent (events past the cursor up to there are marked as possible
redeliveries after a restart), and its dead letters."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from ..events.outbox import open_durable

SCHEMA = """
CREATE TABLE IF NOT EXISTS bridge_cursors (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    sent_upto INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS bridge_dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    bridge TEXT NOT NULL,
    position INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    body TEXT NOT NULL,
    reason TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    at REAL NOT NULL
);
"""


def state_path(sink_db: Path) -> Path:
    """Beside the sink's store: ``sink.sqlite`` -> ``sink.bridges.sqlite``."""
    return sink_db.with_name(sink_db.stem + ".bridges.sqlite")


class BridgeState:
    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name
        self.db = open_durable(path, SCHEMA, kind="bridge state")
        self.lock = threading.Lock()

    def close(self) -> None:
        self.db.close()

    def exists(self) -> bool:
        with self.lock:
            return (
                self.db.execute("SELECT 1 FROM bridge_cursors WHERE name = ?", (self.name,)).fetchone()
                is not None
            )

    def start_at(self, position: int) -> None:
        """A new bridge's first cursor (0: the store's first event)."""
        with self.lock:
            self.db.execute(
                "INSERT INTO bridge_cursors (name, position, sent_upto, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name) DO NOTHING",
                (self.name, position, position, time.time()),
            )

    def cursor(self) -> tuple[int, int]:
        """(position, sent_upto)."""
        with self.lock:
            row = self.db.execute(
                "SELECT position, sent_upto FROM bridge_cursors WHERE name = ?", (self.name,)
            ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def sending(self, upto: int) -> None:
        """Events up to ``upto`` are about to be sent (durable before the first leaves)."""
        with self.lock:
            self.db.execute(
                "UPDATE bridge_cursors SET sent_upto = MAX(sent_upto, ?) WHERE name = ?", (upto, self.name)
            )

    def advance(self, position: int) -> None:
        with self.lock:
            self.db.execute(
                "UPDATE bridge_cursors SET position = MAX(position, ?), updated_at = ? WHERE name = ?",
                (position, time.time(), self.name),
            )

    def dead_letter(self, position: int, event_id: str, body: str, reason: str, attempts: int) -> None:
        with self.lock:
            self.db.execute(
                "INSERT INTO bridge_dead_letters (bridge, position, event_id, body, reason, attempts, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (self.name, position, event_id, body, reason[:1000], attempts, time.time()),
            )

    def dead_letters(self) -> list[dict[str, Any]]:
        with self.lock:
            self.db.row_factory = sqlite3.Row
            try:
                rows = self.db.execute(
                    "SELECT id, position, event_id, reason, attempts, at FROM bridge_dead_letters "
                    "WHERE bridge = ? ORDER BY id",
                    (self.name,),
                ).fetchall()
            finally:
                self.db.row_factory = None
        return [dict(r) for r in rows]
