"""A candidate model in the shadow of the live one: run on a share of each camera's batches, its
detections and the incidents it would have raised recorded, never sent.

``Shadow`` takes the analysed batches from the analytics stage (in order, with the live model's
detections) on its own thread, without ever making the cameras wait: when it is behind, a batch is
skipped and counted. Every ``1/share``-th batch runs through the candidate (the live set with that
detector replaced); per frame the two models' detections are matched (IoU >= 0.5, same class) and
counted; the candidate's detections go through trackers and rules of its own, per camera, as the
live ones do. The live incidents meanwhile are recorded too. Everything goes to an SQLite file
(``shadow.sqlite`` beside the outbox); ``safecity models shadow-report`` reads it: detection
agreement, and the incidents only one of the two raised (matched by type, camera and temporal IoU).
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..analytics.camera import CameraAnalytics
from ..config import Config
from ..types import Detections, FrameBatch, Incident
from .agreement import pairs
from .detector_set import DetectorSet

log = logging.getLogger(__name__)
STOP_WAIT_S = 30.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run INTEGER PRIMARY KEY, model TEXT NOT NULL, live TEXT NOT NULL, candidate TEXT NOT NULL,
    share REAL NOT NULL, started REAL NOT NULL, stopped REAL
);
CREATE TABLE IF NOT EXISTS frames (
    run INTEGER NOT NULL, camera TEXT NOT NULL, t REAL NOT NULL,
    live INTEGER NOT NULL, candidate INTEGER NOT NULL, matched INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS incidents (
    run INTEGER NOT NULL, source TEXT NOT NULL, incident_id TEXT NOT NULL, camera TEXT NOT NULL,
    type TEXT NOT NULL, zone TEXT, started_at REAL NOT NULL, ended_at REAL,
    PRIMARY KEY (run, source, incident_id)
);
"""


def shadow_path(outbox: Path) -> Path:
    return Path(outbox).with_name("shadow.sqlite")


@dataclass
class ShadowState:
    model: str
    live: str
    candidate: str
    share: float
    run: int
    batches_offered: int = 0
    batches_run: int = 0
    batches_skipped: int = 0  # the shadow was behind: the cameras never wait for it
    frames: int = 0
    live_detections: int = 0
    candidate_detections: int = 0
    matched: int = 0


class Shadow:
    """One candidate in the shadow of detector ``key`` of the live set."""

    def __init__(
        self,
        *,
        key: str,
        candidate: DetectorSet,
        live_tag: str,
        cfg: Config,
        share: float,
        db: Path,
        conf: float,
    ) -> None:
        self.key = key
        self.candidate = candidate
        self.cfg = cfg
        self.conf = conf
        self.db = sqlite3.connect(db, check_same_thread=False)
        self.db.executescript(SCHEMA)  # sqlite3.Error: the caller closes the candidate
        cur = self.db.execute(
            "INSERT INTO runs (model, live, candidate, share, started) VALUES (?, ?, ?, ?, ?)",
            (key, live_tag, candidate.member(key).tag, share, time.time()),
        )
        self.db.commit()
        self.state = ShadowState(key, live_tag, candidate.member(key).tag, share, int(cur.lastrowid or 0))
        self._analytics: dict[str, CameraAnalytics] = {}
        self._q: queue.Queue[tuple[FrameBatch, list[Detections]] | None] = queue.Queue(maxsize=2)
        self._lock = threading.Lock()  # the database: the shadow thread, and live incidents from publishing
        self._closed = False
        self.error: str | None = None  # why the shadow thread stopped, if it failed
        self._thread = threading.Thread(target=self._loop, name=f"shadow-{key}", daemon=True)
        self._thread.start()

    def wants(self, number: int) -> bool:
        """Batch ``number`` (the analysed batches, counted) is shadowed: ``share`` of them, evenly."""
        s = self.state.share
        return int((number + 1) * s) > int(number * s)

    def offer(self, batch: FrameBatch, dets: list[Detections]) -> None:
        """An analysed batch and the live detections; never blocks (skipped when the shadow is behind,
        or stopped by an error)."""
        if self.error is not None:
            return
        self.state.batches_offered += 1
        if not self.wants(self.state.batches_offered - 1):
            return
        try:
            self._q.put_nowait((batch, dets))
        except queue.Full:
            self.state.batches_skipped += 1

    def live_incidents(self, incidents: list[Incident]) -> None:
        self._record("live", incidents)

    def _record(self, source: str, incidents: list[Incident]) -> None:
        rows = [
            (self.state.run, source, i.incident_id, i.camera_id, i.type, i.zone, i.started_at, i.ended_at)
            for i in incidents
        ]
        if not rows:
            return
        with self._lock:
            if self._closed:  # a step committed as the shadow stopped
                return
            self.db.executemany(
                "INSERT INTO incidents VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run, source, "
                "incident_id) DO UPDATE SET ended_at = COALESCE(excluded.ended_at, ended_at)",
                rows,
            )
            self.db.commit()

    def _analytics_for(self, camera_id: str) -> CameraAnalytics | None:
        ca = self._analytics.get(camera_id)
        if ca is None:
            cam = next((c for c in self.cfg.cameras if c.id == camera_id), None)
            if cam is None:
                return None
            d = self.candidate
            ca = CameraAnalytics(
                self.cfg, cam, d.info.class_names, roles=d.label_roles, model_names=d.model_tags
            )
            self._analytics[camera_id] = ca
        return ca

    def _loop(self) -> None:
        try:
            while (item := self._q.get()) is not None:
                self._shadow(*item)
        except Exception as err:  # the shadow never takes the edge down: it stops, and says why
            log.exception("shadow of model %s failed; stopped", self.key)
            self.error = f"{type(err).__name__}: {err}"

    def _shadow(self, batch: FrameBatch, live: list[Detections]) -> None:
        got = self.candidate.detect(batch)
        frames, incidents = [], []
        s = self.state
        for frame, a, b in zip(batch.frames, live, got, strict=True):
            sa, sb = a[a.confidence >= self.conf], b[b.confidence >= self.conf]
            n = len(pairs(sa, sb))
            frames.append((s.run, frame.camera_id, frame.pts_seconds, len(sa), len(sb), n))
            s.live_detections += len(sa)
            s.candidate_detections += len(sb)
            s.matched += n
            ca = self._analytics_for(frame.camera_id)
            if ca is not None:
                incidents += ca.analyse(
                    b,
                    t=frame.pts_seconds,
                    wall_time=frame.wall_time,
                    frame_w=frame.width,
                    frame_h=frame.height,
                )
        s.frames += len(batch)
        s.batches_run += 1
        with self._lock:
            self.db.executemany("INSERT INTO frames VALUES (?, ?, ?, ?, ?, ?)", frames)
            self.db.commit()
        self._record("shadow", incidents)

    def stop(self) -> dict[str, Any]:
        """Stop: the batches queued are finished, open incidents closed, the run's end recorded. A
        thread stuck past ``STOP_WAIT_S`` is left (a daemon) with what it holds; the rest is closed."""
        try:
            self._q.put(None, timeout=STOP_WAIT_S)
        except queue.Full:  # the thread died with batches queued, or is stuck on one
            pass
        self._thread.join(timeout=STOP_WAIT_S)
        if self._thread.is_alive():
            log.warning(
                "shadow of model %s did not stop within %g s; its record ends here", self.key, STOP_WAIT_S
            )
            with self._lock:
                self._closed = True
            return self.summary()
        self._record("shadow", [i for ca in self._analytics.values() for i in ca.close("shadow_stopped")])
        with self._lock:
            self.db.execute("UPDATE runs SET stopped = ? WHERE run = ?", (time.time(), self.state.run))
            self.db.commit()
            self.db.close()
            self._closed = True
        self.candidate.member(self.key).detector.close()
        return self.summary()

    def summary(self) -> dict[str, Any]:
        s = self.state
        return {
            "model": s.model,
            "live": s.live,
            "candidate": s.candidate,
            "share": s.share,
            "batches": {"offered": s.batches_offered, "run": s.batches_run, "skipped": s.batches_skipped},
            "frames": s.frames,
            "agreement": agreement_of(s.live_detections, s.candidate_detections, s.matched),
            "error": self.error,
        }


def agreement_of(live: int, candidate: int, matched: int) -> dict[str, float | int | None]:
    """Recall (of the live model's detections, the candidate's too) and precision (the other way)."""
    return {
        "live_detections": live,
        "candidate_detections": candidate,
        "matched": matched,
        "recall": None if live == 0 else round(matched / live, 4),
        "precision": None if candidate == 0 else round(matched / candidate, 4),
    }
