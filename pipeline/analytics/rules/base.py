"""What every rule shares: the ``Rule`` shape, its lifecycle, zone look-ups and dwell times.

A rule looks at the tracks of one camera frame (with their shared history, ``TrackMemory``) and
reports which keys are active (a zone, a pair of tracks, the camera ...); its ``Lifecycle`` turns
that into one incident per occurrence. Distances for people are in units of the person's box
height (so thresholds hold near and far from the camera); vehicle speeds are in pixels per second.
"""

from __future__ import annotations

import builtins
from typing import ClassVar, Generic, TypeVar

import numpy as np

from ...config import RuleConfig
from ..lifecycle import Active, Lifecycle
from ..memory import TrackInfo
from ..zones import Zone

CAMERA = "_camera"  # the key of incidents that belong to no zone

C = TypeVar("C", bound=RuleConfig)


def dist(a: tuple[float, float], b: tuple[float, float]) -> float:
    return float(np.hypot(a[0] - b[0], a[1] - b[1]))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


class Rule(Generic[C]):
    """One incident type. Subclasses set ``type`` (also the name of its section under ``rules:``),
    ``config`` (that section's class), ``roles`` (the roles it reads, for the load-time check) and
    implement ``evaluate``. The registry in ``rules/__init__.py`` lists them."""

    type: ClassVar[str] = ""
    config: ClassVar[builtins.type[RuleConfig]] = RuleConfig
    roles: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cfg: C, *, camera_id: str, zones: list[Zone]) -> None:
        self.cfg = cfg
        self.camera_id = camera_id
        self.zones = zones
        self.lifecycle = Lifecycle(cfg, type=self.type, camera_id=camera_id)

    def evaluate(
        self, infos: list[TrackInfo], t: float, w: int, h: int, open_zones: set[str]
    ) -> dict[str, Active]:
        raise NotImplementedError

    def zones_of(self, kind: str, open_zones: set[str]) -> list[Zone]:
        return [z for z in self.zones if kind in z.kinds and z.name in open_zones]

    def zone_at(self, info: TrackInfo, kind: str, w: int, h: int, open_zones: set[str]) -> Zone | None:
        for z in self.zones_of(kind, open_zones):
            if z.contains(np.array([info.point]), frame_w=w, frame_h=h)[0]:
                return z
        return None

    def inside(self, zone: Zone, infos: list[TrackInfo], w: int, h: int) -> list[TrackInfo]:
        """The tracks whose bottom-centre lies in ``zone``."""
        if not infos:
            return []
        ok = zone.contains(np.array([i.point for i in infos]).reshape(-1, 2), frame_w=w, frame_h=h)
        return [i for i, inside in zip(infos, ok, strict=True) if inside]


class Dwell:
    """Since when each (zone, track) has held a condition. A track that continues one that vanished
    (a tracker ID switch, see ``TrackInfo.continues``) takes over its time; a key not held for more
    than ``grace_s`` (the rule's ``clear_seconds``) is forgotten: the object, back after that, starts
    again, and memory stays flat."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.since: dict[tuple[str, int], float] = {}
        self.last: dict[tuple[str, int], float] = {}

    def hold(self, zone: str, info: TrackInfo, t: float) -> float:
        key = (zone, info.track_id)
        if key not in self.since and info.continues is not None:
            inherited = self.since.pop((zone, info.continues), None)  # taken over once
            self.last.pop((zone, info.continues), None)
            if inherited is not None:
                self.since[key] = inherited
        self.last[key] = t
        return self.since.setdefault(key, t)

    def left(self, zone: str, seen: list[TrackInfo], inside: list[TrackInfo]) -> None:
        """Tracks seen this frame outside ``zone`` start again when they come back."""
        ids = {i.track_id for i in inside}
        for i in seen:
            if i.track_id not in ids:
                self.reset(zone, i.track_id)

    def reset(self, zone: str, track_id: int) -> None:
        self.since.pop((zone, track_id), None)
        self.last.pop((zone, track_id), None)

    def forget_old(self, t: float) -> None:
        for key in [k for k, seen in self.last.items() if t - seen > self.grace_s]:
            del self.since[key], self.last[key]
