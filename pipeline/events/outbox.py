"""The durable local outbox: an incident counts as emitted once committed here (SQLite, WAL).

Each event is committed with its per-source sequence number already in its JSON body, so the sender
sends the stored bytes as they are. Snapshots are stored once per image (by sha256) and kept for
``retention`` after delivery, so the sink can fetch them by reference.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import stat
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import StorageError
from ..failpoints import failpoint

log = logging.getLogger(__name__)

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


def rollback(conn: sqlite3.Connection) -> None:
    """Undo the open transaction, if a failed statement or commit left one open (SQLite ends it
    itself on some errors, a full disk among them)."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection, begin: str = "BEGIN") -> Iterator[sqlite3.Connection]:
    """``with transaction(conn):`` statements committed together, or rolled back on any error."""
    conn.execute(begin)
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise


def describe_db_error(path: Path, err: BaseException) -> str:
    """Why ``path`` cannot be used as a database, in a few words."""
    if path.is_dir():
        return "is a directory"
    if isinstance(err, sqlite3.DatabaseError) and "not a database" in str(err):
        return "is not a SQLite database (corrupt, or another kind of file)"
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not path.exists() and not parent.is_dir():
        return f"cannot be created: {parent} is a file, not a directory"
    if isinstance(err, OSError):
        return f"cannot be opened: {err.strerror or err}"
    if not path.exists() and not os.access(parent, os.W_OK):
        return f"cannot be created: {parent} is not writable"
    return f"cannot be used: {err}"


# what each kind of database holds: the table that marks it, and how to name it in a message
KINDS: dict[str, tuple[str, str]] = {
    "outbox": ("outbox", "an edge outbox"),
    "sink store": ("events", "a sink store"),
    "console store": ("console_users", "an ICCC console store"),
    "bridge state": ("bridge_cursors", "a bridge state file"),
}


def check_kind(conn: sqlite3.Connection, path: Path, kind: str, *, new_ok: bool) -> set[str]:
    """The database's tables; StorageError when it is the other kind of database (or, unless
    ``new_ok``, not this kind: empty or foreign)."""
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    marker, named = KINDS[kind]
    if marker in tables or (new_ok and not tables):
        return tables
    for other_marker, other_named in KINDS.values():
        if other_marker in tables:
            raise StorageError(f"{path} is {other_named}, not {named}")
    what = (
        f"a SQLite database of something else (tables: {', '.join(sorted(tables)[:5])})"
        if tables
        else "empty"
    )
    raise StorageError(f"{path} is not {named}: it is {what}")


def _make_private(path: Path) -> None:
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        return
    except FileExistsError:
        pass
    mode = path.stat().st_mode
    if stat.S_ISREG(mode) and mode & 0o077:
        log.warning("%s was readable by others (mode %o): now 600", path, stat.S_IMODE(mode))
        for each in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            with contextlib.suppress(FileNotFoundError):
                each.chmod(0o600)


def open_durable(
    path: Path, schema: str, *, kind: str, page_size: int | None = None, private: bool = False
) -> sqlite3.Connection:
    """A SQLite database that survives crashes and power loss (WAL, synchronous=FULL), autocommit mode.
    ``kind`` is ``outbox`` or ``sink store``: an existing file of the other kind, a directory or a file
    that is not a database is a StorageError naming the file. ``page_size`` applies to a new file only.
    ``private``: the file is its owner's alone (mode 600; SQLite gives its WAL and shared-memory files
    the database's mode), made so before anything is written, and narrowed if it was wider."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if private:
            _make_private(path)
        conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
    except (sqlite3.Error, OSError) as err:
        raise StorageError(f"the {kind} {path} {describe_db_error(path, err)}") from err
    try:
        tables = check_kind(conn, path, kind, new_ok=True)
        if page_size is not None and not tables:
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
                    raise
                time.sleep(0.02)
    except StorageError:
        conn.close()
        raise
    except sqlite3.Error as err:
        conn.close()
        raise StorageError(f"the {kind} {path} {describe_db_error(path, err)}") from err


class Outbox:
    """One connection per thread: the pipeline appends, the sender reads and marks delivered.

    ``lock``: hold the outbox for this process (a ``.lock`` file beside it): a second edge given
    the same file is refused instead of sharing its sequence numbers."""

    def __init__(self, path: Path, *, lock: bool = False) -> None:
        self.path = path
        self._lock_fd = _lock(path) if lock else None
        try:
            self.conn = open_durable(path, SCHEMA, kind="outbox")
        except BaseException:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
            raise
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

    def append_many(
        self,
        items: Sequence[
            tuple[dict[str, Any], bytes | None] | tuple[dict[str, Any], bytes | None, bytes | None]
        ],
    ) -> list[int]:
        """Commit several events in one transaction (one fsync). An item may carry, third, the frame
        as the camera showed it (a JPEG without drawing, ``evidence.frame_jpeg_sha256``): kept by its
        digest like a snapshot, sent only when the sink asks for it."""
        now = time.time()
        seqs: list[int] = []
        with transaction(self.conn, "BEGIN IMMEDIATE"):
            row = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
            last = int(row[0]) if row else 0
            for event, snapshot, *more in items:
                last += 1
                event["seq"] = last
                original = more[0] if more else None
                if original is not None:
                    self.conn.execute(
                        "INSERT INTO snapshots (sha256, jpeg, created_at) VALUES (?, ?, ?) "
                        "ON CONFLICT DO NOTHING",
                        (event["evidence"]["frame_jpeg_sha256"], original, now),
                    )
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
        with transaction(self.conn):
            self.conn.executemany(
                "UPDATE outbox SET delivered_at = ? WHERE seq BETWEEN ? AND ? AND delivered_at IS NULL", runs
            )

    def dead_letter(self, seq: int, reason: str) -> None:
        with transaction(self.conn):
            self.conn.execute(
                "INSERT OR REPLACE INTO dead_letter (seq, event_id, body, reason, failed_at) "
                "SELECT seq, event_id, body, ?, ? FROM outbox WHERE seq = ?",
                (reason, time.time(), seq),
            )
            self.conn.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    def prune(self, *, retention_s: float) -> int:
        """Forget events delivered more than ``retention_s`` ago, and snapshots no pending event needs
        that are older than that; returns the number of events removed."""
        cutoff = time.time() - retention_s
        with transaction(self.conn):
            n = self.conn.execute(
                "DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < ?", (cutoff,)
            ).rowcount
            self.conn.execute(
                "DELETE FROM snapshots WHERE created_at < ? AND sha256 NOT IN "
                "(SELECT snapshot_sha256 FROM outbox WHERE snapshot_sha256 IS NOT NULL) AND sha256 NOT IN "
                "(SELECT json_extract(body, '$.evidence.frame_jpeg_sha256') FROM outbox "
                "WHERE delivered_at IS NULL AND body LIKE '%frame_jpeg_sha256%')",
                (cutoff,),
            )
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
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _lock(path: Path) -> int:
    """An exclusive lock on ``PATH.lock`` for as long as the descriptor stays open."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise StorageError(f"the outbox {path} {describe_db_error(path, err)}") from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StorageError(
            f"the outbox {path} is in use by another process (pid {holder}); give each edge its own"
        ) from None
    try:  # who holds it, for the message another process would print
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
    except OSError:  # a full disk: the lock holds without it
        pass
    return fd
