"""Edge heartbeats: ``[b"HB", json]`` from an edge every few seconds while it is connected, carrying
the health of each of its cameras; the sink keeps the latest per edge and camera (``edges`` and
``cameras`` tables of its store) for the console, the bridges and the fleet view.

Version 1 (``"v": 1``)::

    {"v": 1, "source": EDGE, "sent_at": RFC 3339, "interval_s": 5.0, "outbox_pending": 0,
     "cameras": [{"id": CAM, "state": "up", "last_frame_age_s": 0.2, "analysed_fps": 4.9,
                  "decoded": 0, "analysed": 0, "dropped": 0, "incidents": 0, "behind": false}]}

A later version may add fields, never remove or change these: a sink reads what it knows from any
version >= 1 and keeps the body whole. Anything else is refused with its reason (and counted).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import SchemaError
from .schema import rfc3339

if TYPE_CHECKING:
    from .store import Db

VERSION = 1
INTERVAL_S = 5.0
STALE_AFTER_INTERVALS = 3  # an edge silent for this many intervals: its cameras are shown as unknown
MAX_CAMERAS = 4096
MAX_BYTES = 1 << 20
MIN_INTERVAL_S, MAX_INTERVAL_S = 0.5, 300.0
ID_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")  # the event schema's pattern for source and camera_id
STATE_RE = re.compile(r"[a-z_]{1,32}")

HEARTBEAT_SCHEMA = """
CREATE TABLE IF NOT EXISTS edges (
    source TEXT PRIMARY KEY,
    received_at REAL NOT NULL,
    interval_s REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cameras (
    source TEXT NOT NULL,
    camera_id TEXT NOT NULL,
    state TEXT NOT NULL,
    received_at REAL NOT NULL,
    changed_at REAL NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (source, camera_id)
);
"""


@dataclass(frozen=True)
class Heartbeat:
    source: str
    interval_s: float
    cameras: list[dict[str, Any]]
    body: dict[str, Any]


def _number(value: Any, field: str, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    try:
        ok = (
            not isinstance(value, bool)
            and isinstance(value, int | float)
            and math.isfinite(value)
            and value >= 0
        )
    except OverflowError:  # an integer too big for a float
        ok = False
    if not ok:
        raise SchemaError(f"heartbeat: {field} must be a number >= 0, got {str(value)[:40]}")
    return float(value)


def _refuse_constant(name: str) -> Any:
    raise SchemaError(f"heartbeat: {name} is not a number JSON allows")


def _ident(value: Any, what: str) -> str:
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise SchemaError(
            f"heartbeat: {what} must match {ID_RE.pattern} (as in events), got {str(value)[:80]!r}"
        )
    return value


def parse(raw: bytes) -> Heartbeat:
    """The heartbeat in ``raw``; SchemaError naming what is wrong. Ids follow the events' own
    pattern (so they are safe in MQTT topics and config files); intervals are clamped."""
    if len(raw) > MAX_BYTES:
        raise SchemaError(f"heartbeat: over {MAX_BYTES} bytes")
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as err:
        raise SchemaError(f"heartbeat: not JSON: {str(err)[:200]}") from None
    if not isinstance(body, dict):
        raise SchemaError("heartbeat: expected a JSON object")
    v = body.get("v")
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise SchemaError(f"heartbeat: version 'v' must be an integer >= 1, got {str(v)[:40]}")
    source = _ident(body.get("source"), "'source' (the edge id)")
    interval = _number(body.get("interval_s", INTERVAL_S), "interval_s") or INTERVAL_S
    cams = body.get("cameras")
    if not isinstance(cams, list) or len(cams) > MAX_CAMERAS:
        raise SchemaError(f"heartbeat: 'cameras' must be a list of at most {MAX_CAMERAS}")
    cameras = []
    for cam in cams:
        if not isinstance(cam, dict):
            raise SchemaError("heartbeat: each camera must be an object")
        cid = _ident(cam.get("id"), "a camera's 'id'")
        state = cam.get("state")
        if not isinstance(state, str) or not STATE_RE.fullmatch(state):
            raise SchemaError(
                f"heartbeat: camera {cid!r} needs a 'state' (e.g. up, down), got {str(state)[:40]!r}"
            )
        _number(cam.get("last_frame_age_s"), "last_frame_age_s", optional=True)
        _number(cam.get("analysed_fps", 0), "analysed_fps")
        cameras.append(cam)
    return Heartbeat(source, min(max(interval, MIN_INTERVAL_S), MAX_INTERVAL_S), cameras, body)


def store(db: Db, beats: list[Heartbeat], now: float) -> None:
    """The latest of each edge and camera, in the open transaction (a camera's ``changed_at`` moves
    when its state does); of several heartbeats from one edge, the last."""
    latest = {hb.source: hb for hb in beats}
    for hb in latest.values():
        db.execute(
            "INSERT INTO edges (source, received_at, interval_s, body) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (source) DO UPDATE SET received_at = excluded.received_at, "
            "interval_s = excluded.interval_s, body = excluded.body",
            (hb.source, now, hb.interval_s, json.dumps({k: v for k, v in hb.body.items() if k != "cameras"})),
        )
        db.executemany(
            "INSERT INTO cameras (source, camera_id, state, received_at, changed_at, body) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (source, camera_id) DO UPDATE SET "
            "changed_at = CASE WHEN cameras.state = excluded.state THEN cameras.changed_at "
            "ELSE excluded.changed_at END, state = excluded.state, received_at = excluded.received_at, "
            "body = excluded.body",
            [(hb.source, c["id"], c["state"], now, now, json.dumps(c)) for c in hb.cameras],
        )
        # a camera the edge no longer reports (taken out of its config) is not left "up" for ever
        db.execute(
            "UPDATE cameras SET state = 'removed', changed_at = ?, received_at = ? "
            "WHERE source = ? AND received_at < ? AND state != 'removed'",
            (now, now, hb.source, now),
        )


def read_health(db: Db, now: float) -> list[dict[str, Any]]:
    """Every camera the edges reported, as of their last heartbeat: a camera whose edge has been
    silent for STALE_AFTER_INTERVALS heartbeats is ``unknown``, whatever it last said."""
    # (the readers open only stores migrated to the current schema: these tables are there)
    edges = {
        source: (seen, interval)
        for source, seen, interval in db.execute("SELECT source, received_at, interval_s FROM edges")
    }
    rows = db.execute(
        "SELECT source, camera_id, state, received_at, changed_at, body FROM cameras "
        "ORDER BY source, camera_id"
    ).fetchall()
    out = []
    for source, camera, state, received, changed, raw in rows:
        body = json.loads(raw)
        seen, interval = edges.get(source, (received, INTERVAL_S))
        stale = now - seen > interval * STALE_AFTER_INTERVALS
        out.append(
            {
                "source": source,
                "camera_id": camera,
                "state": "unknown" if stale else state,
                "reported_state": state,
                "since": changed,
                "heartbeat_age_s": round(now - seen, 1),
                "last_frame_age_s": None if stale else body.get("last_frame_age_s"),
                "analysed_fps": body.get("analysed_fps"),
                "behind": bool(body.get("behind")),
            }
        )
    return out


class Beats:
    """The edge's side: the heartbeat body from the run's camera stats, with each camera's analysed
    rate over the last interval. ``stats()`` gives, per camera: state, decoded, analysed, dropped,
    incidents, behind, last_frame_at (monotonic, or None)."""

    def __init__(
        self,
        source: str,
        stats: Callable[[], dict[str, dict[str, Any]]],
        pending: Callable[[], int],
        interval_s: float = INTERVAL_S,
    ) -> None:
        self.source = source
        self.stats = stats
        self.pending = pending
        self.interval_s = interval_s
        self._last: dict[str, tuple[float, int]] = {}  # camera -> (when, analysed then)

    def __call__(self) -> bytes:
        now = time.monotonic()
        cameras = []
        for cid, s in self.stats().items():
            when, before = self._last.get(cid, (now, s["analysed"]))
            self._last[cid] = (now, s["analysed"])
            rate = (s["analysed"] - before) / (now - when) if now - when > 0.2 else 0.0
            frame_at = s.get("last_frame_at")
            cameras.append(
                {
                    "id": cid,
                    "state": s["state"],
                    "last_frame_age_s": None if frame_at is None else round(max(now - frame_at, 0.0), 3),
                    "analysed_fps": round(max(rate, 0.0), 3),
                    "decoded": s["decoded"],
                    "analysed": s["analysed"],
                    "dropped": s["dropped"],
                    "incidents": s["incidents"],
                    "behind": bool(s["behind"]),
                }
            )
        body = {
            "v": VERSION,
            "source": self.source,
            "sent_at": rfc3339(time.time()),
            "interval_s": self.interval_s,
            "outbox_pending": int(self.pending()),
            "cameras": cameras,
        }
        return json.dumps(body, separators=(",", ":")).encode()
