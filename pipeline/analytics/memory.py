"""Track state that rules share: per track, its recent positions, speeds, size, roles and posture.

Positions are box bottom-centres in pixels. State of a track not seen for ``forget_seconds`` is
dropped, so memory stays flat however long the run.

Posture: a person is *down* when a model says so (the fall model's verdict on the merged person,
or a class with the ``fallen_person`` role), else when its box is ``fallen_aspect`` times wider
than tall. A person *went down* (``down_since``) only when it was seen upright before: an object that
looks like a lying person from the first frame it is seen (clothes, a bag, debris) never did. Seen
upright means upright over at least ``UPRIGHT_SECONDS`` (one frame that reads upright is not enough:
a heap's box or a posture verdict may flicker once).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..types import Track
from .zones import GroundPlane, Line

HISTORY = 64
UPRIGHT_SECONDS = 0.4  # how long a person must be seen upright before going down counts as a fall


def window_speed(points: deque[tuple[float, float, float]], window_s: float) -> float:
    """Speed of (t, x, y) samples: displacement from the oldest sample within ``window_s`` of the
    newest, over the time between them (0 with fewer than two samples)."""
    if len(points) < 2:
        return 0.0
    t1, x1, y1 = points[-1]
    t0, x0, y0 = next(p for p in points if t1 - p[0] <= window_s + 1e-6)
    return 0.0 if t1 <= t0 else float(np.hypot(x1 - x0, y1 - y0) / (t1 - t0))


@dataclass
class TrackInfo:
    track_id: int
    label: str
    roles: frozenset[str]
    xyxy: np.ndarray
    confidence: float
    first_seen: float
    last_seen: float
    continues: int | None = None  # the track this one most likely is, after a tracker ID switch
    down: bool = False  # lying now (see the module's docstring)
    upright_at: float | None = None  # the last time it was seen upright
    upright_from: float | None = None  # start of the current (or last) run of upright frames
    stood: bool = False  # was seen upright over UPRIGHT_SECONDS at some time
    down_since: float | None = None  # when it went down after it stood; None if it did not
    continued_by: int | None = None  # the track that took this one's history over (an ID switch)
    models: tuple[str, ...] = ()  # the detectors whose detections made this object this frame
    crossings: deque[tuple[float, str, int]] = field(
        default_factory=lambda: deque(maxlen=16)
    )  # t, line, +1/-1
    world: deque[tuple[float, float, float]] = field(
        default_factory=lambda: deque(maxlen=HISTORY)
    )  # t, X, Y m
    history: deque[tuple[float, float, float]] = field(default_factory=lambda: deque(maxlen=HISTORY))
    speeds: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=HISTORY))

    @property
    def point(self) -> tuple[float, float]:
        return self.history[-1][1], self.history[-1][2]

    @property
    def height(self) -> float:
        return max(float(self.xyxy[3] - self.xyxy[1]), 1.0)

    @property
    def width(self) -> float:
        return max(float(self.xyxy[2] - self.xyxy[0]), 1.0)

    @property
    def centre(self) -> tuple[float, float]:
        return float(self.xyxy[0] + self.xyxy[2]) / 2, float(self.xyxy[1] + self.xyxy[3]) / 2

    def speed(self, window_s: float = 1.0) -> float:
        """Pixels per second: displacement of the bottom-centre over the last ``window_s``."""
        return window_speed(self.history, window_s)

    def world_speed(self, window_s: float = 1.0) -> float | None:
        """Metres per second on the ground (cameras with a ground plane), else None."""
        return window_speed(self.world, window_s) if len(self.world) >= 2 else None

    def max_speed_between(self, t0: float, t1: float) -> float:
        return max((v for t, v in self.speeds if t0 <= t <= t1), default=0.0)

    def has(self, role: str) -> bool:
        return role in self.roles

    def observe_posture(self, down: bool, t: float) -> None:
        if not down:
            if self.down or self.upright_from is None:
                self.upright_from = t
            self.upright_at, self.down_since = t, None
            self.stood = self.stood or t - self.upright_from >= UPRIGHT_SECONDS - 1e-9
        elif not self.down and self.stood:
            self.down_since = t
        self.down = down


def _kind(roles: frozenset[str]) -> frozenset[str]:
    """Roles that say what an object is, not how it lies (an ID switch may change the posture)."""
    return roles - {"fallen_person"}


class TrackMemory:
    def __init__(
        self,
        roles_by_label: Mapping[str, frozenset[str]],
        *,
        fallen_aspect: float = 1.3,
        forget_seconds: float = 5.0,
        lines: list[Line] | None = None,
        ground: GroundPlane | None = None,
        frame_size: tuple[int, int] = (0, 0),
    ) -> None:
        self.lines = lines or []
        self.ground = ground
        self.frame_size = frame_size
        self.roles_by_label = roles_by_label  # class name -> its roles (detect/roles.py)
        self.forget_seconds = forget_seconds
        self.fallen_aspect = fallen_aspect
        self.tracks: dict[int, TrackInfo] = {}

    def _lost_near(
        self, x: float, y: float, roles: frozenset[str], t: float, height: float, present: set[int]
    ) -> TrackInfo | None:
        """A track of the same kind that vanished in the last 2 s next to (x, y), if any: within 0.6 of
        the taller box's height (a person who falls: the standing box's feet to the lying box's bottom).
        Not one this frame shows (``present``), nor one another track already continues."""
        best, best_d = None, float("inf")
        for info in self.tracks.values():
            if (
                _kind(info.roles) != _kind(roles)
                or info.last_seen >= t
                or t - info.last_seen > 2.0
                or info.track_id in present
                or info.continued_by is not None
            ):
                continue
            d = float(np.hypot(x - info.point[0], y - info.point[1]))
            if d <= max(30.0, 0.6 * max(height, info.height)) and d < best_d:
                best, best_d = info, d
        return best

    def _is_down(self, tr: Track, roles: frozenset[str]) -> bool:
        if tr.down is not None:
            return tr.down
        if "fallen_person" in roles:
            return True
        x1, y1, x2, y2 = (float(v) for v in tr.xyxy)
        return "person" in roles and (x2 - x1) >= self.fallen_aspect * max(y2 - y1, 1.0)

    def update(self, tracks: list[Track], t: float) -> list[TrackInfo]:
        """Record this frame's tracks; returns their infos (tracks of earlier frames are kept a while)."""
        out = []
        present = {tr.track_id for tr in tracks}
        for tr in tracks:
            x, y = tr.bottom_centre
            info = self.tracks.get(tr.track_id)
            if info is None:
                roles = self.roles_by_label.get(tr.label, frozenset())
                info = self.tracks[tr.track_id] = TrackInfo(
                    tr.track_id, tr.label, roles, tr.xyxy, tr.confidence, t, t
                )
                lost = self._lost_near(x, y, roles, t, float(tr.xyxy[3] - tr.xyxy[1]), present)
                if lost is not None:  # an ID switch: carry the object's history over
                    lost.continued_by = tr.track_id  # one object, one continuation
                    info.continues, info.first_seen = lost.track_id, lost.first_seen
                    info.history.extend(lost.history)
                    info.speeds.extend(lost.speeds)
                    info.down, info.down_since, info.stood = lost.down, lost.down_since, lost.stood
                    info.upright_at, info.upright_from = lost.upright_at, lost.upright_from
            elif info.history:
                pt, px, py = info.history[-1]
                if t > pt:
                    info.speeds.append((t, float(np.hypot(x - px, y - py) / (t - pt))))
                w, h = self.frame_size
                for line in self.lines:
                    way = line.crossing((px, py), (x, y), frame_w=w, frame_h=h)
                    if way:
                        info.crossings.append((t, line.name, way))
            info.label, info.roles = tr.label, self.roles_by_label.get(tr.label, frozenset())
            info.xyxy, info.confidence, info.last_seen = tr.xyxy, tr.confidence, t
            info.models = tr.models
            info.observe_posture(self._is_down(tr, info.roles), t)
            info.history.append((t, x, y))
            if self.ground is not None:
                wx, wy = self.ground.to_world(np.array([[x, y]]))[0]
                info.world.append((t, float(wx), float(wy)))
            out.append(info)
        for tid in [tid for tid, i in self.tracks.items() if t - i.last_seen > self.forget_seconds]:
            del self.tracks[tid]
        return out
