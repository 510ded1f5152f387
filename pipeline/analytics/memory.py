"""Track state that rules share: per track, its recent positions, speeds, size, roles and posture.

Positions are box bottom-centres in pixels; rules never judge them in pixels but in the object's own
size (``size``: the longer side of its box, the median over the last second: a person's height, a
vehicle's length), so a threshold means the same near and far from the camera and at any resolution.
Motion is judged on positions smoothed over ``SMOOTH_SECONDS`` (the median: a box that flickers,
flips class or is half hidden by a passer-by for a frame or two does not move the object) and as
net displacement over a time, never from one frame to the next. State of a track not seen for
``forget_seconds`` is dropped, so memory stays flat however long the run.

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

HISTORY_SECONDS = 12.0  # how far back a track's positions are kept
HISTORY = 1024  # and at most this many of them (60 analysed frames a second)
SMOOTH_SECONDS = 0.5  # positions are the median over this long (brief box glitches do not move them)
SIZE_SECONDS = 1.0  # an object's size is the median of its box's longer side over this long
UPRIGHT_SECONDS = 0.4  # how long a person must be seen upright before going down counts as a fall
CONTINUE_SECONDS = 2.0  # a track that vanished this recently may be continued by a new one nearby
CONTINUE_SIZES = 0.6  # that close (of the larger of the two boxes' sizes)

Samples = deque[tuple[float, float, float]]  # (t, x, y)


def window_speed(points: Samples, window_s: float) -> float:
    """Speed of (t, x, y) samples: displacement from the oldest sample within ``window_s`` of the
    newest, over the time between them (0 with fewer than two samples)."""
    if len(points) < 2:
        return 0.0
    t1, x1, y1 = points[-1]
    t0, x0, y0 = next(p for p in points if t1 - p[0] <= window_s + 1e-6)
    return 0.0 if t1 <= t0 else float(np.hypot(x1 - x0, y1 - y0) / (t1 - t0))


def _median_since(points: Samples, t0: float) -> tuple[float, float]:
    """Median x and y of the samples at or after ``t0`` (the newest one at least)."""
    xs: list[float] = []
    ys: list[float] = []
    for t, x, y in reversed(points):
        if t < t0 - 1e-9 and xs:
            break
        xs.append(x)
        ys.append(y)
    return float(np.median(xs)), float(np.median(ys))


def at_time(points: Samples, t: float) -> tuple[float, float, float] | None:
    """The sample nearest to time ``t`` (None without samples)."""
    if not points:
        return None
    return min(points, key=lambda p: abs(p[0] - t))


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
    origin: int = -1  # the first track of the object (itself, or the one it continues, transitively)
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
    world: Samples = field(default_factory=lambda: deque(maxlen=HISTORY))  # t, X, Y m
    history: Samples = field(default_factory=lambda: deque(maxlen=HISTORY))  # t, x, y px
    smooth: Samples = field(default_factory=lambda: deque(maxlen=HISTORY))  # the same, smoothed
    sizes: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=HISTORY))  # t, px
    scores: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=HISTORY))  # t, conf

    @property
    def point(self) -> tuple[float, float]:
        return self.history[-1][1], self.history[-1][2]

    @property
    def size(self) -> float:
        """Pixels: the median of the box's longer side over the last ``SIZE_SECONDS``."""
        if not self.sizes:
            return max(self.height, self.width)
        t1 = self.sizes[-1][0]
        return max(float(np.median([s for t, s in self.sizes if t1 - t <= SIZE_SECONDS + 1e-9])), 1.0)

    @property
    def position(self) -> tuple[float, float]:
        """The smoothed bottom-centre now (pixels)."""
        return (self.smooth[-1][1], self.smooth[-1][2]) if self.smooth else self.point

    def still_since(self, radius_sizes: float, *, max_gap_s: float = float("inf")) -> float:
        """Since when the object has stayed within ``radius_sizes`` of its size of where it is now
        (smoothed positions; the last sample's time when it has just moved), not reaching back over
        a time it went unseen for longer than ``max_gap_s``."""
        if not self.smooth:
            return self.last_seen
        cx, cy = self.position
        r = radius_sizes * self.size
        since = self.smooth[-1][0]
        for t, x, y in reversed(self.smooth):
            if np.hypot(x - cx, y - cy) > r or since - t > max_gap_s:
                break
            since = t
        return since

    def displacement(self, t0: float, t1: float) -> float:
        """Sizes: how far the smoothed position moved from ``t0`` to ``t1`` (the nearest samples)."""
        a, b = at_time(self.smooth, t0), at_time(self.smooth, t1)
        if a is None or b is None:
            return 0.0
        return float(np.hypot(b[1] - a[1], b[2] - a[2])) / self.size

    def speed_sizes(self, window_s: float = 1.0) -> float:
        """Own sizes per second: the smoothed position's displacement over the last ``window_s``."""
        return window_speed(self.smooth, window_s) / self.size

    def median_score(self, window_s: float) -> float:
        """The median of the detections' confidence over the last ``window_s``."""
        if not self.scores:
            return self.confidence
        t1 = self.scores[-1][0]
        return float(np.median([c for t, c in self.scores if t1 - t <= window_s + 1e-9]))

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
        """Pixels per second: displacement of the bottom-centre over the last ``window_s`` (for
        reports; rules judge ``speed_sizes``)."""
        return window_speed(self.history, window_s)

    def world_speed(self, window_s: float = 1.0) -> float | None:
        """Metres per second on the ground (cameras with a ground plane), else None."""
        return window_speed(self.world, window_s) if len(self.world) >= 2 else None

    def record(self, t: float, x: float, y: float, size: float, confidence: float) -> None:
        """This frame's position, size and score; the smoothed position; history older than
        ``HISTORY_SECONDS`` dropped."""
        self.history.append((t, x, y))
        self.sizes.append((t, size))
        self.scores.append((t, confidence))
        sx, sy = _median_since(self.history, t - SMOOTH_SECONDS)
        self.smooth.append((t, sx, sy))
        for d in (self.history, self.smooth, self.sizes, self.scores, self.world):
            while d and t - d[0][0] > HISTORY_SECONDS:
                d.popleft()

    def take_over(self, lost: TrackInfo) -> None:
        """Continue ``lost`` (a tracker ID switch): its history, posture and first sight are this one's."""
        lost.continued_by = self.track_id  # one object, one continuation
        self.continues, self.first_seen, self.origin = lost.track_id, lost.first_seen, lost.origin
        for mine, theirs in (
            (self.history, lost.history),
            (self.smooth, lost.smooth),
            (self.sizes, lost.sizes),
            (self.scores, lost.scores),
            (self.world, lost.world),
        ):
            mine.extend(theirs)  # type: ignore[arg-type]
        self.down, self.down_since, self.stood = lost.down, lost.down_since, lost.stood
        self.upright_at, self.upright_from = lost.upright_at, lost.upright_from

    def __post_init__(self) -> None:
        if self.origin < 0:
            self.origin = self.track_id

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


def box_size(xyxy: np.ndarray) -> float:
    """The longer side of a box (pixels)."""
    return max(float(xyxy[2] - xyxy[0]), float(xyxy[3] - xyxy[1]), 1.0)


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
        self, x: float, y: float, roles: frozenset[str], t: float, size: float, present: set[int]
    ) -> TrackInfo | None:
        """A track of the same kind that vanished in the last ``CONTINUE_SECONDS`` next to (x, y), if
        any: within ``CONTINUE_SIZES`` of the larger box's size (a person who falls: the standing box's
        feet to the lying box's bottom). Not one this frame shows (``present``), nor one another track
        already continues."""
        best, best_d = None, float("inf")
        for info in self.tracks.values():
            if (
                _kind(info.roles) != _kind(roles)
                or info.last_seen >= t
                or t - info.last_seen > CONTINUE_SECONDS
                or info.track_id in present
                or info.continued_by is not None
            ):
                continue
            d = float(np.hypot(x - info.point[0], y - info.point[1]))
            if d <= CONTINUE_SIZES * max(size, info.size) and d < best_d:
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
                lost = self._lost_near(x, y, roles, t, box_size(tr.xyxy), present)
                if lost is not None:  # an ID switch: carry the object's history over
                    info.take_over(lost)
            elif info.history:
                _, px, py = info.history[-1]
                w, h = self.frame_size
                for line in self.lines:
                    way = line.crossing((px, py), (x, y), frame_w=w, frame_h=h)
                    if way:
                        info.crossings.append((t, line.name, way))
            info.label, info.roles = tr.label, self.roles_by_label.get(tr.label, frozenset())
            info.xyxy, info.confidence, info.last_seen = tr.xyxy, tr.confidence, t
            info.models = tr.models
            info.observe_posture(self._is_down(tr, info.roles), t)
            info.record(t, x, y, box_size(tr.xyxy), tr.confidence)
            if self.ground is not None:
                fw, fh = self.frame_size
                wx, wy = self.ground.to_world(np.array([[x, y]]), frame_w=fw, frame_h=fh)[0]
                info.world.append((t, float(wx), float(wy)))
            out.append(info)
        for info in out:  # a track continued by another came back beside it: two objects after all
            other = self.tracks.get(info.continued_by) if info.continued_by is not None else None
            if other is not None and other.track_id in present and other.continues == info.track_id:
                other.continues, other.origin, info.continued_by = None, other.track_id, None
        for tid in [tid for tid, i in self.tracks.items() if t - i.last_seen > self.forget_seconds]:
            del self.tracks[tid]
        return out
