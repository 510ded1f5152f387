"""The console's own store, beside the sink's: users, sessions, the audit log, and the incidents as
operators work them (one row per occurrence, fed from the sink's events by ``feed.py``).

An incident's workflow: new -> acknowledged -> in_progress -> resolved | false_alarm (and reopen).
Each change is checked against the state the operator saw, so two consoles acting at once cannot
both win; every change bumps ``rev``, which live consoles follow (``/api/stream``).

The operator's verdict is kept as a labelled example (``verdicts``): a false alarm or a resolved
(confirmed) incident, with its start event (the objects' boxes, zone, models) and the reference of
the frame as the camera showed it (``evidence.frame_jpeg_sha256``, nothing drawn on it), the comment
and why it was false (``detection``: the objects are not what the model said; ``behaviour``: they
are, but nothing wrong happened). ``safecity dataset negatives`` turns false alarms into hard
negatives for fine-tuning; reopening an incident withdraws its verdict."""

from __future__ import annotations

import functools
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from ..errors import SafeCityError
from ..events.outbox import open_durable, transaction

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS console_users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    pw_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS console_sessions (
    token_sha256 TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    user TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '',
    client TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS incidents (
    source TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    type TEXT NOT NULL,
    severity TEXT NOT NULL,
    camera_id TEXT NOT NULL,
    zone TEXT,
    started_at TEXT NOT NULL,
    last_at TEXT NOT NULL,
    edge_status TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'new',
    state_by TEXT,
    state_at REAL,
    events INTEGER NOT NULL DEFAULT 0,
    last_seq INTEGER NOT NULL,
    snapshot_sha256 TEXT,
    body TEXT NOT NULL,
    rev INTEGER NOT NULL,
    PRIMARY KEY (source, incident_id)
);
CREATE INDEX IF NOT EXISTS incidents_rev ON incidents (rev);
CREATE INDEX IF NOT EXISTS incidents_started ON incidents (started_at);
CREATE TABLE IF NOT EXISTS incident_events (
    source TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    emitted_at TEXT NOT NULL,
    snapshot_sha256 TEXT,
    PRIMARY KEY (source, incident_id, event_id)
);
CREATE TABLE IF NOT EXISTS incident_actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    at REAL NOT NULL,
    user TEXT NOT NULL,
    action TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    comment TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS incident_actions_of ON incident_actions (source, incident_id);
CREATE TABLE IF NOT EXISTS verdicts (
    source TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    verdict TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    comment TEXT NOT NULL DEFAULT '',
    user TEXT NOT NULL,
    at REAL NOT NULL,
    camera_id TEXT NOT NULL,
    type TEXT NOT NULL,
    zone TEXT,
    started_at TEXT NOT NULL,
    frame_jpeg_sha256 TEXT,
    snapshot_sha256 TEXT,
    event TEXT NOT NULL,
    PRIMARY KEY (source, incident_id)
);
CREATE INDEX IF NOT EXISTS verdicts_started ON verdicts (started_at);
CREATE TABLE IF NOT EXISTS console_cursor (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
"""

ROLES = ("viewer", "operator", "admin")
STATES = ("new", "acknowledged", "in_progress", "resolved", "false_alarm")
# action -> (the states it may be taken from, the state it leads to)
ACTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "acknowledge": (("new",), "acknowledged"),
    "start": (("new", "acknowledged"), "in_progress"),
    "resolve": (("new", "acknowledged", "in_progress"), "resolved"),
    "false_alarm": (("new", "acknowledged", "in_progress"), "false_alarm"),
    "reopen": (("resolved", "false_alarm"), "acknowledged"),
}
COMMENT_REQUIRED = {"false_alarm", "reopen"}
VERDICTS = {"false_alarm": "false_alarm", "resolve": "confirmed"}  # action -> the verdict it records
REASONS = ("detection", "behaviour")  # why a false alarm was false (optional)
MAX_COMMENT = 2000
SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}


class ActionRefused(SafeCityError):
    """An incident action that cannot be taken (unknown, wrong state, missing comment)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


_P = ParamSpec("_P")
_R = TypeVar("_R")


_Method = Callable[Concatenate["ConsoleStore", _P], _R]


def _locked(method: _Method[_P, _R]) -> _Method[_P, _R]:
    @functools.wraps(method)
    def call(self: ConsoleStore, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self.lock:
            return method(self, *args, **kwargs)

    return call


def console_path(sink_db: Path) -> Path:
    """The console's store beside a sink store: ``sink.sqlite`` -> ``sink.console.sqlite``."""
    return sink_db.with_name(sink_db.stem + ".console.sqlite")


@dataclass(frozen=True)
class Action:
    action: str
    comment: str = ""
    expected: str | None = None  # the state the operator saw; None: whatever it is now
    reason: str = ""  # a false alarm's: "detection" or "behaviour" (REASONS), or not said


def _incident_row(row: sqlite3.Row) -> dict[str, Any]:
    body = json.loads(row["body"])
    return {
        "source": row["source"],
        "incident_id": row["incident_id"],
        "type": row["type"],
        "severity": row["severity"],
        "camera_id": row["camera_id"],
        "zone": row["zone"],
        "started_at": row["started_at"],
        "last_at": row["last_at"],
        "edge_status": row["edge_status"],
        "state": row["state"],
        "state_by": row["state_by"],
        "state_at": row["state_at"],
        "events": row["events"],
        "snapshot_sha256": row["snapshot_sha256"],
        "confidence": body.get("confidence"),
        "object_count": body.get("object_count"),
        "rev": row["rev"],
    }


class ConsoleStore:
    """One connection, shared by the console's threads one at a time (``lock``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = open_durable(path, SCHEMA, kind="console store", private=True)  # password hashes
        self.db.row_factory = sqlite3.Row
        self.lock = threading.RLock()
        columns = {r[1] for r in self.db.execute("PRAGMA table_info(incidents)")}
        if "start_body" not in columns:  # a store made before verdicts kept the start event
            try:
                self.db.execute("ALTER TABLE incidents ADD COLUMN start_body TEXT")
            except sqlite3.OperationalError as err:
                if "duplicate column" not in str(err):  # (another process added it just now: fine)
                    raise

    def close(self) -> None:
        self.db.close()

    # -- audit ----------------------------------------------------------------------------
    @_locked
    def audit(self, user: str, action: str, target: str = "", detail: str = "", client: str = "") -> None:
        self.db.execute(
            "INSERT INTO audit (at, user, action, target, detail, client) VALUES (?, ?, ?, ?, ?, ?)",
            (time.time(), user, action, target, detail[:2000], client),
        )

    @_locked
    def audit_log(self, limit: int = 200) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM audit ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [dict(r) for r in rows]

    # -- incidents ----------------------------------------------------------------------------
    @_locked
    def cursor(self, name: str) -> int:
        row = self.db.execute("SELECT position FROM console_cursor WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    @_locked
    def ingest(self, rows: list[tuple[int, str]], name: str = "sink") -> int:
        """The sink's events ``(id, body)`` into incidents, with the cursor, in one transaction;
        how many were new. One that cannot be read is logged and skipped, never stops the rest."""
        if not rows:
            return 0
        before = self._rev()
        with transaction(self.db, "BEGIN IMMEDIATE"):
            rev = self._rev()
            for position, body in rows:
                self.db.execute("SAVEPOINT one")
                try:
                    if self._ingest_one(json.loads(body), body, rev + 1):
                        rev += 1
                except (ValueError, KeyError, TypeError, sqlite3.Error) as err:  # never stop the feed
                    self.db.execute("ROLLBACK TO one")
                    log.error("console: event #%d of the sink store skipped: %s", position, err)
                self.db.execute("RELEASE one")
            self.db.execute(
                "INSERT INTO console_cursor (name, position) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                (name, rows[-1][0]),
            )
        return self._rev() - before

    def _ingest_one(self, e: dict[str, Any], body: str, rev: int) -> bool:
        """One event into its incident (at ``rev``); False when it was in already."""
        key = (e["source"], e["incident_id"])
        sha = (e.get("evidence") or {}).get("sha256")
        added = self.db.execute(
            "INSERT INTO incident_events (source, incident_id, event_id, seq, status, emitted_at, "
            "snapshot_sha256) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (*key, e["event_id"], e["seq"], e["status"], e["emitted_at"], sha),
        ).rowcount
        if not added:
            return False
        # the edge's own order (seq) says which step is the latest: it describes the incident;
        # the first keeps its start; an end is an end whatever arrives after it
        self.db.execute(
            "INSERT INTO incidents (source, incident_id, type, severity, camera_id, zone, "
            "started_at, last_at, edge_status, events, last_seq, snapshot_sha256, body, rev, start_body) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?) "
            "ON CONFLICT (source, incident_id) DO UPDATE SET events = incidents.events + 1, "
            "rev = excluded.rev, start_body = COALESCE(incidents.start_body, excluded.start_body), "
            "severity = CASE WHEN excluded.last_seq > incidents.last_seq THEN excluded.severity "
            "ELSE incidents.severity END, "
            "body = CASE WHEN excluded.last_seq > incidents.last_seq THEN excluded.body "
            "ELSE incidents.body END, "
            "snapshot_sha256 = COALESCE(CASE WHEN excluded.last_seq > incidents.last_seq "
            "THEN excluded.snapshot_sha256 END, incidents.snapshot_sha256), "
            "edge_status = CASE WHEN incidents.edge_status = 'end' OR excluded.edge_status = 'end' "
            "THEN 'end' WHEN excluded.last_seq > incidents.last_seq THEN excluded.edge_status "
            "ELSE incidents.edge_status END, "
            "last_at = CASE WHEN excluded.last_seq > incidents.last_seq THEN excluded.last_at "
            "ELSE incidents.last_at END, "
            "last_seq = MAX(incidents.last_seq, excluded.last_seq)",
            (
                *key,
                e["type"],
                e["severity"],
                e["camera_id"],
                e.get("zone"),
                e["started_at"],
                e["emitted_at"],
                e["status"],
                e["seq"],
                sha,
                body,
                rev,
                body if e["status"] == "start" else None,
            ),
        )
        return True

    def _rev(self) -> int:
        return int(self.db.execute("SELECT COALESCE(MAX(rev), 0) FROM incidents").fetchone()[0])

    @_locked
    def incidents(
        self,
        *,
        types: list[str] | None = None,
        severities: list[str] | None = None,
        states: list[str] | None = None,
        camera: str | None = None,
        edge: str | None = None,
        since: str | None = None,
        until: str | None = None,
        after_rev: int | None = None,
        limit: int = 200,
    ) -> list[dict[str, Any]]:
        """Newest first (or, with ``after_rev``, the changes since in ``rev`` order)."""
        where: list[str] = []
        args: list[Any] = []
        for col, values in (("type", types), ("severity", severities), ("state", states)):
            if values:
                where.append(f"{col} IN ({','.join('?' * len(values))})")
                args.extend(values)
        for col, op, value in (
            ("camera_id", "=", camera),
            ("source", "=", edge),
            ("started_at", ">=", since),
            ("started_at", "<", until),
            ("rev", ">", after_rev),
        ):
            if value is not None:
                where.append(f"{col} {op} ?")
                args.append(value)
        order = "rev" if after_rev is not None else "started_at DESC, rev DESC"
        sql = "SELECT * FROM incidents" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self.db.execute(f"{sql} ORDER BY {order} LIMIT ?", [*args, limit]).fetchall()
        return [_incident_row(r) for r in rows]

    @_locked
    def incident(self, source: str, incident_id: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT * FROM incidents WHERE source = ? AND incident_id = ?", (source, incident_id)
        ).fetchone()
        if row is None:
            return None
        out = _incident_row(row)
        out["event"] = json.loads(row["body"])
        out["history"] = [
            dict(r)
            for r in self.db.execute(
                "SELECT event_id, seq, status, emitted_at, snapshot_sha256 FROM incident_events "
                "WHERE source = ? AND incident_id = ? ORDER BY seq",
                (source, incident_id),
            )
        ]
        out["actions"] = [
            dict(r)
            for r in self.db.execute(
                "SELECT at, user, action, from_state, to_state, comment FROM incident_actions "
                "WHERE source = ? AND incident_id = ? ORDER BY id",
                (source, incident_id),
            )
        ]
        return out

    @_locked
    def act(self, source: str, incident_id: str, user: str, act: Action) -> dict[str, Any]:
        """Take ``act`` on the incident as ``user`` (recorded, audited); ActionRefused says why not."""
        if act.action not in ACTIONS:
            raise ActionRefused(f"unknown action {act.action!r}; expected one of {', '.join(ACTIONS)}", 400)
        comment = act.comment.strip()
        if len(comment) > MAX_COMMENT:
            raise ActionRefused(f"the comment is over {MAX_COMMENT} characters", 400)
        if act.action in COMMENT_REQUIRED and not comment:
            raise ActionRefused(f"{act.action.replace('_', ' ')} needs a comment", 400)
        if act.reason and (act.action != "false_alarm" or act.reason not in REASONS):
            raise ActionRefused(
                f"reason: a false alarm's, one of {', '.join(REASONS)}; got {act.reason!r}", 400
            )
        allowed, to_state = ACTIONS[act.action]
        now = time.time()
        with transaction(self.db, "BEGIN IMMEDIATE"):
            row = self.db.execute(
                "SELECT state, state_by FROM incidents WHERE source = ? AND incident_id = ?",
                (source, incident_id),
            ).fetchone()
            if row is None:
                raise ActionRefused(f"no incident {incident_id} from {source}", 404)
            state = row["state"]
            if act.expected is not None and act.expected != state:
                by = f" (by {row['state_by']})" if row["state_by"] else ""
                raise ActionRefused(f"the incident is {state.replace('_', ' ')} now{by}")
            if state not in allowed:
                raise ActionRefused(f"cannot {act.action.replace('_', ' ')} an incident that is {state}")
            self.db.execute(
                "UPDATE incidents SET state = ?, state_by = ?, state_at = ?, rev = ? "
                "WHERE source = ? AND incident_id = ?",
                (to_state, user, now, self._rev() + 1, source, incident_id),
            )
            self.db.execute(
                "INSERT INTO incident_actions (source, incident_id, at, user, action, from_state, to_state, "
                "comment) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (source, incident_id, now, user, act.action, state, to_state, comment),
            )
            self._verdict(source, incident_id, user, act, comment, now)
            self.audit(user, f"incident.{act.action}", f"{source}/{incident_id}", comment)
        found = self.incident(source, incident_id)
        assert found is not None
        return found

    def _verdict(
        self, source: str, incident_id: str, user: str, act: Action, comment: str, at: float
    ) -> None:
        """Record (or, on reopen, withdraw) the verdict an action gives, in the open transaction."""
        if act.action == "reopen":
            self.db.execute(
                "DELETE FROM verdicts WHERE source = ? AND incident_id = ?", (source, incident_id)
            )
            return
        verdict = VERDICTS.get(act.action)
        if verdict is None:
            return
        row = self.db.execute(
            "SELECT camera_id, type, zone, started_at, snapshot_sha256, COALESCE(start_body, body) AS event "
            "FROM incidents WHERE source = ? AND incident_id = ?",
            (source, incident_id),
        ).fetchone()
        event = json.loads(row["event"])
        evidence = event.get("evidence") or {}
        self.db.execute(
            "INSERT INTO verdicts (source, incident_id, verdict, reason, comment, user, at, camera_id, type, "
            "zone, started_at, frame_jpeg_sha256, snapshot_sha256, event) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source, incident_id) "
            "DO UPDATE SET verdict = excluded.verdict, reason = excluded.reason, comment = excluded.comment, "
            "user = excluded.user, at = excluded.at",
            (
                source,
                incident_id,
                verdict,
                act.reason,
                comment,
                user,
                at,
                row["camera_id"],
                row["type"],
                row["zone"],
                row["started_at"],
                evidence.get("frame_jpeg_sha256"),
                evidence.get("sha256") or row["snapshot_sha256"],
                row["event"],
            ),
        )

    @_locked
    def verdicts(self, *, verdict: str | None = None, reason: str | None = None) -> list[dict[str, Any]]:
        """The labelled examples, oldest first (``verdict``: false_alarm or confirmed; ``reason``)."""
        where, args = [], []
        for col, value in (("verdict", verdict), ("reason", reason)):
            if value is not None:
                where.append(f"{col} = ?")
                args.append(value)
        sql = "SELECT * FROM verdicts" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY at"
        out = []
        for r in self.db.execute(sql, args):
            d = dict(r)
            d["event"] = json.loads(d["event"])
            out.append(d)
        return out

    @_locked
    def false_alarms(self, since: float) -> list[dict[str, Any]]:
        """False alarms per day (UTC, the day an operator marked them: the console's own clock, not an
        edge's), edge, camera and type, marked since the Unix time ``since``: newest day first."""
        rows = self.db.execute(
            "SELECT date(at, 'unixepoch') AS day, source, camera_id, type, COUNT(*) AS n FROM verdicts "
            "WHERE verdict = 'false_alarm' AND at >= ? GROUP BY day, source, camera_id, type "
            "ORDER BY day DESC, n DESC, camera_id, type",
            (since,),
        )
        return [dict(r) for r in rows]

    @_locked
    def incidents_today(self, since: str) -> dict[tuple[str, str], int]:
        rows = self.db.execute(
            "SELECT source, camera_id, COUNT(*) FROM incidents WHERE started_at >= ? "
            "GROUP BY source, camera_id",
            (since,),
        )
        return {(s, c): n for s, c, n in rows}

    @_locked
    def latest_snapshot(self, source: str, camera: str) -> str | None:
        """The camera's most recent incident snapshot (the zone editor draws on it)."""
        row = self.db.execute(
            "SELECT snapshot_sha256 FROM incidents WHERE source = ? AND camera_id = ? "
            "AND snapshot_sha256 IS NOT NULL ORDER BY last_at DESC LIMIT 1",
            (source, camera),
        ).fetchone()
        return None if row is None else str(row[0])

    @_locked
    def frame_size(self, source: str, camera: str) -> tuple[int, int]:
        """The camera's frame size as its latest incident reported it ((0, 0): none yet)."""
        row = self.db.execute(
            "SELECT body FROM incidents WHERE source = ? AND camera_id = ? ORDER BY last_at DESC LIMIT 1",
            (source, camera),
        ).fetchone()
        frame = json.loads(row[0]).get("frame") or {} if row else {}
        return int(frame.get("width") or 0), int(frame.get("height") or 0)
