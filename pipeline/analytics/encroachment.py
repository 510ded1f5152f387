"""Encroachment: a person or vehicle stationary inside a no-encroachment zone for ``dwell_seconds``.

One incident per zone occurrence: it starts once a track has dwelt (confirmed over
``confirm_frames`` sampled frames), sends updates every ``update_seconds`` or when the set of
objects changes, ends when no track has qualified for ``clear_seconds``, and the zone then stays
quiet for ``cooldown_seconds``. Because the incident belongs to the zone, a track ID switch during
an incident does not start a second one; a new track that appears where a dwelling track vanished
moments ago (within ``clear_seconds``) inherits its dwell time, so the incident does not end either.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..config import EncroachmentConfig
from ..types import Incident, Track
from .lifecycle import _step, objects
from .memory import window_speed
from .zones import Zone, bottom_centres

HISTORY_SECONDS = 1.5


@dataclass
class _TrackDwell:
    positions: deque[tuple[float, float, float]] = field(default_factory=lambda: deque(maxlen=64))
    qualifying_since: float | None = None
    frames: int = 0
    last_t: float = 0.0

    def speed(self) -> float:
        """Pixels per second of the bottom-centre over the last ``HISTORY_SECONDS``."""
        return window_speed(self.positions, HISTORY_SECONDS)


@dataclass
class _ZoneState:
    tracks: dict[int, _TrackDwell] = field(default_factory=dict)
    incident: Incident | None = None
    last_qualified_t: float = 0.0
    last_update_t: float = 0.0
    cooldown_until: float = float("-inf")
    object_ids: frozenset[int] = frozenset()
    # dwell of tracks that vanished recently: (vanished at t, x, y, qualifying_since)
    ghosts: list[tuple[float, float, float, float]] = field(default_factory=list)


class EncroachmentRule:
    type = "encroachment"

    def __init__(
        self, cfg: EncroachmentConfig, *, camera_id: str, zones: list[Zone], labels: set[str]
    ) -> None:
        self.cfg = cfg
        self.camera_id = camera_id
        self.zones = [z for z in zones if "no_encroachment" in z.kinds]
        self.labels = labels
        self.state = {z.name: _ZoneState() for z in self.zones}

    def update(
        self, tracks: list[Track], *, t: float, frame_w: int, frame_h: int, open_zones: set[str] | None = None
    ) -> list[Incident]:
        """``open_zones``: zones whose schedule is on now (default all); a closed zone sees no tracks."""
        if not self.cfg.enabled or not self.zones:
            return []
        cand = [tr for tr in tracks if tr.label in self.labels]
        points = bottom_centres(np.array([tr.xyxy for tr in cand]).reshape(-1, 4))
        out: list[Incident] = []
        for zone in self.zones:
            st = self.state[zone.name]
            is_open = open_zones is None or zone.name in open_zones
            inside = (
                zone.contains(points, frame_w=frame_w, frame_h=frame_h)
                if cand and is_open
                else np.zeros(len(cand), bool)
            )
            qualifying: list[Track] = []
            seen = {tr.track_id for tr, ok in zip(cand, inside, strict=True) if ok}
            # tracks that left the zone or ended: their state goes (memory stays bounded)
            for tid in [tid for tid in st.tracks if tid not in seen]:
                gone = st.tracks.pop(tid)
                if gone.qualifying_since is not None:
                    _, gx, gy = gone.positions[-1]
                    st.ghosts.append((t, gx, gy, gone.qualifying_since))
            st.ghosts = [g for g in st.ghosts if t - g[0] <= self.cfg.clear_seconds]
            for tr, ok, (px, py) in zip(cand, inside, points, strict=True):
                if not ok:
                    continue
                d = st.tracks.get(tr.track_id) or self._new_dwell(st, tr.track_id, float(px), float(py), t)
                d.positions.append((t, float(px), float(py)))
                d.last_t = t
                if d.speed() > self.cfg.stationary_speed_px_s:
                    d.qualifying_since, d.frames = None, 0
                    continue
                if d.qualifying_since is None:
                    d.qualifying_since = t
                d.frames += 1
                if t - d.qualifying_since >= self.cfg.dwell_seconds and d.frames >= self.cfg.confirm_frames:
                    qualifying.append(tr)
            out.extend(self._lifecycle(zone, st, qualifying, t))
        return out

    def _new_dwell(self, st: _ZoneState, track_id: int, x: float, y: float, t: float) -> _TrackDwell:
        d = st.tracks[track_id] = _TrackDwell()
        radius = max(self.cfg.stationary_speed_px_s, 20.0)
        for i, (_, gx, gy, since) in enumerate(st.ghosts):
            if np.hypot(x - gx, y - gy) <= radius:  # the same object under a new track id
                d.qualifying_since = since
                d.frames = self.cfg.confirm_frames - 1
                del st.ghosts[i]
                break
        return d

    def _lifecycle(self, zone: Zone, st: _ZoneState, qualifying: list[Track], t: float) -> list[Incident]:
        cfg = self.cfg
        if qualifying:
            st.last_qualified_t = t
        inc = st.incident
        if inc is None:
            if not qualifying or t < st.cooldown_until:
                return []
            started = min(st.tracks[tr.track_id].qualifying_since or t for tr in qualifying)
            inc = Incident(
                incident_id=str(uuid.uuid4()),
                type=self.type,
                status="start",
                severity=cfg.severity,
                camera_id=self.camera_id,
                zone=zone.name,
                started_at=started,
                emitted_at=t,
                ended_at=None,
                objects=objects(qualifying),
                confidence=max(tr.confidence for tr in qualifying),
                details={"dwell_seconds": round(t - started, 2)},
            )
            st.incident, st.last_update_t = inc, t
            st.object_ids = frozenset(tr.track_id for tr in qualifying)
            return [_step(inc, "start", t)]
        if not qualifying:
            if t - st.last_qualified_t >= cfg.clear_seconds:
                st.incident = None
                st.cooldown_until = t + cfg.cooldown_seconds
                end = _step(inc, "end", t)
                end.ended_at = st.last_qualified_t
                return [end]
            return []
        ids = frozenset(tr.track_id for tr in qualifying)
        if ids != st.object_ids or t - st.last_update_t >= cfg.update_seconds:
            st.object_ids, st.last_update_t = ids, t
            inc.objects = objects(qualifying)
            inc.confidence = max(tr.confidence for tr in qualifying)
            inc.details = {"dwell_seconds": round(t - inc.started_at, 2)}
            return [_step(inc, "update", t)]
        return []
