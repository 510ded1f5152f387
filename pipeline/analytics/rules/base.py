"""What every rule shares: the ``Rule`` shape, its lifecycle, zone look-ups and dwell times.

A rule looks at the tracks of one camera frame (with their shared history, ``TrackMemory``) and
reports which keys are active (a zone, a pair of tracks, the camera ...); its ``Lifecycle`` turns
that into one incident per occurrence. Distances and speeds are in units of the object's own size
(a person's height, a vehicle's length: ``TrackInfo.size``), so thresholds hold near and far from the
camera and at any resolution; times are media seconds, the same at any analysed frame rate.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from typing import ClassVar, Generic, TypeVar

import numpy as np

from ...config import RuleConfig
from ..lifecycle import Active, Lifecycle
from ..memory import TrackInfo
from ..zones import Zone

CAMERA = "_camera"  # the key of incidents that belong to no zone
REJOIN_SECONDS = 1.0  # still this long, an object back at a place where it stood stands there again

C = TypeVar("C", bound=RuleConfig)


@dataclass
class Timer:
    """A dwell being counted: for which object, how long so far and how long it must last."""

    info: TrackInfo
    seconds: float
    need: float


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

    def timers(self, t: float) -> list[Timer]:
        """The dwell timers this rule is counting now, each with the object it counts for (what a
        preview draws beside that object); rules without a dwell have none."""
        return []

    def zones_of(self, kind: str, open_zones: set[str]) -> list[Zone]:
        return [z for z in self.zones if kind in z.kinds and z.name in open_zones]

    def zone_at(self, info: TrackInfo, kind: str, w: int, h: int, open_zones: set[str]) -> Zone | None:
        """The first zone of ``kind`` the object is in (and passes the filters of)."""
        for z in self.zones_of(kind, open_zones):
            if z.contains(np.array([info.point]), frame_w=w, frame_h=h)[0] and z.admits(info, w, h):
                return z
        return None

    def inside(self, zone: Zone, infos: list[TrackInfo], w: int, h: int) -> list[TrackInfo]:
        """The tracks whose bottom-centre lies in ``zone`` and that pass the zone's filters."""
        if not infos:
            return []
        ok = zone.contains(np.array([i.point for i in infos]).reshape(-1, 2), frame_w=w, frame_h=h)
        return [i for i, inside in zip(infos, ok, strict=True) if inside and zone.admits(i, w, h)]


class Dwell:
    """Since when each (zone, object) has held a condition. Objects are keyed by their origin (the
    first track of the object, ``TrackInfo.origin``), so a tracker ID switch keeps the time; a key
    not held for more than ``grace_s`` (the rule's ``clear_seconds``) is forgotten: the object, back
    after that, starts again, and memory stays flat."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.since: dict[tuple[str, int], float] = {}
        self.last: dict[tuple[str, int], float] = {}

    def hold(self, zone: str, info: TrackInfo, t: float) -> float:
        key = (zone, info.origin)
        self.last[key] = t
        return self.since.setdefault(key, t)

    def left(self, zone: str, seen: list[TrackInfo], inside: list[TrackInfo]) -> None:
        """Objects seen this frame outside ``zone`` start again when they come back."""
        ids = {i.origin for i in inside}
        for i in seen:
            if i.origin not in ids:
                self.reset(zone, i)

    def reset(self, zone: str, info: TrackInfo) -> None:
        self.since.pop((zone, info.origin), None)
        self.last.pop((zone, info.origin), None)

    def forget_old(self, t: float) -> None:
        for key in [k for k, seen in self.last.items() if t - seen > self.grace_s]:
            del self.since[key], self.last[key]


@dataclass
class Spot:
    """A place in a zone where something of one kind has stood still: where (pixels, fixed when the
    spot is made), how big that thing is, since when it stood there, when it was last seen there and
    what stands there now."""

    kind: str
    x: float
    y: float
    size: float
    since: float
    last: float
    here: list[TrackInfo] = field(default_factory=list)  # standing at the spot this frame


class Spots:
    """Where things stand in one zone, whichever track shows them: a dwell that survives occlusion,
    a passer-by in front and tracker ID switches, because it belongs to the place, not to a track.

    An object stands when it has stayed within ``radius_sizes`` of its own size (``TrackInfo.size``)
    of where it is for ``still_seconds``; it stands *at* a spot of its kind when it is that close to
    the spot's place. An object at a spot keeps the spot; one standing elsewhere makes a new spot,
    since the time it came to rest there. An object back at a live spot after an occlusion, a
    glitch of its box or an ID switch stands there again once still for ``REJOIN_SECONDS`` (or as
    long as its track has been seen, if less). A spot nobody stood at for ``grace_s`` is forgotten.
    Someone walking, however slowly, leaves a spot's radius in ``radius_sizes / speed`` seconds: a
    dwell measures standing."""

    def __init__(self, *, radius_sizes: float, still_seconds: float, grace_s: float) -> None:
        self.radius = radius_sizes
        self.still_s = still_seconds
        self.grace_s = grace_s
        self.spots: list[Spot] = []

    def update(self, objects: list[tuple[TrackInfo, str]], t: float) -> list[Spot]:
        """This frame's objects inside the zone (with their kind): the live spots, each with the
        objects standing at it now (``Spot.here``)."""
        for s in self.spots:
            s.here = []
        for info, kind in objects:
            since = info.still_since(self.radius, max_gap_s=self.grace_s)
            still_for = t - since
            x, y = info.position
            size = info.size
            near = [
                s
                for s in self.spots
                if s.kind == kind and np.hypot(x - s.x, y - s.y) <= self.radius * max(size, s.size)
            ]
            if near and still_for >= min(self.still_s, REJOIN_SECONDS, t - info.first_seen) - 1e-9:
                spot = min(near, key=lambda s: np.hypot(x - s.x, y - s.y))
            elif still_for >= self.still_s - 1e-9:
                spot = Spot(kind, x, y, size, since, t)
                self.spots.append(spot)
            else:
                continue
            spot.last = t
            spot.here.append(info)
        self.spots = [s for s in self.spots if t - s.last <= self.grace_s]
        return self.spots


class Presence:
    """Since when a zone has held something (of the objects a rule counts), whichever track shows
    it: gaps up to ``grace_s`` (an occlusion, an ID switch, a missed detection) do not restart it."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.since: dict[str, float] = {}
        self.last: dict[str, float] = {}

    def hold(self, zone: str, t: float) -> float:
        if zone not in self.last or t - self.last[zone] > self.grace_s:
            self.since[zone] = t
        self.last[zone] = t
        return self.since[zone]

    def forget_old(self, t: float) -> None:
        for z in [z for z, seen in self.last.items() if t - seen > self.grace_s]:
            del self.since[z], self.last[z]
