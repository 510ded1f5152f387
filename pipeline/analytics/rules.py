"""The incident rules besides encroachment: stray animals, accidents, assault, theft.

Each rule looks at the tracks of one camera frame (with their shared history, ``TrackMemory``) and
reports which keys are active; its ``Lifecycle`` turns that into one incident per occurrence.
Distances for people are in units of the person's box height (so thresholds hold near and far from
the camera); vehicle speeds are in pixels per second.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from ..config import AccidentConfig, AssaultConfig, RuleConfig, StrayAnimalConfig, TheftConfig
from .lifecycle import Active, Lifecycle
from .memory import TrackInfo
from .zones import Zone

CAMERA = "_camera"  # the key of incidents that belong to no zone


def _dist(a: tuple[float, float], b: tuple[float, float]) -> float:
    return float(np.hypot(a[0] - b[0], a[1] - b[1]))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


class Rule:
    type = ""

    def __init__(self, cfg: RuleConfig, *, camera_id: str, zones: list[Zone]) -> None:
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


class StrayAnimalRule(Rule):
    """An animal (role ``animal``) inside a carriageway zone for ``dwell_seconds``."""

    type = "stray_animal"
    cfg: StrayAnimalConfig

    def __init__(self, cfg: StrayAnimalConfig, **kw: object) -> None:
        super().__init__(cfg, **kw)  # type: ignore[arg-type]
        self.since: dict[tuple[str, int], float] = {}
        self.last_seen: dict[tuple[str, int], float] = {}

    def evaluate(
        self, infos: list[TrackInfo], t: float, w: int, h: int, open_zones: set[str]
    ) -> dict[str, Active]:
        active: dict[str, Active] = {}
        seen: set[tuple[str, int]] = set()
        animals = [i for i in infos if any(i.has(r) for r in self.cfg.roles)]
        for zone in self.zones_of("carriageway", open_zones):
            inside = zone.contains(np.array([a.point for a in animals]).reshape(-1, 2), frame_w=w, frame_h=h)
            dwelling, starts = [], []
            for a, ok in zip(animals, inside, strict=True):
                if not ok:
                    continue
                key = (zone.name, a.track_id)
                seen.add(key)
                if key not in self.since and a.continues is not None:  # the same animal after an ID switch
                    self.since[key] = self.since.get((zone.name, a.continues), t)
                since = self.since.setdefault(key, t)
                if t - since >= self.cfg.dwell_seconds:
                    dwelling.append(a)
                    starts.append(since)
            if dwelling:
                active[zone.name] = Active(
                    dwelling, zone=zone.name, started_at=min(starts), details={"animals": len(dwelling)}
                )
        # keep a vanished animal's dwell for a moment: its next track may continue it
        self.last_seen.update({k: t for k in seen})
        self.since = {k: v for k, v in self.since.items() if t - self.last_seen.get(k, t) <= 2.0}
        self.last_seen = {k: v for k, v in self.last_seen.items() if k in self.since}
        return active


def _is_fallen(i: TrackInfo, aspect: float) -> bool:
    return i.has("fallen_person") or (i.has("person") and i.width / i.height >= aspect)


class AccidentRule(Rule):
    """A collision (box overlap, then a moving vehicle stops); a vehicle stopped in a carriageway zone
    after a sharp drop in speed; or a person down and lying still in a carriageway zone. (A person
    down elsewhere, next to others, is the assault rule's.)"""

    type = "accident"
    cfg: AccidentConfig

    def __init__(self, cfg: AccidentConfig, **kw: object) -> None:
        super().__init__(cfg, **kw)  # type: ignore[arg-type]
        self.contacts: dict[tuple[int, int], float] = {}  # pair -> last time their boxes overlapped
        self.evidence: dict[int, str] = {}  # track -> why it is part of an accident (sticky while it lasts)

    def _stopped_since(self, v: TrackInfo) -> float | None:
        """Start of the current run of speeds at or under ``stopped_speed_px_s`` (None if moving)."""
        since = None
        for t, s in reversed(v.speeds):
            if s > self.cfg.stopped_speed_px_s:
                break
            since = t
        return since

    def evaluate(
        self, infos: list[TrackInfo], t: float, w: int, h: int, open_zones: set[str]
    ) -> dict[str, Active]:
        cfg = self.cfg
        by_id = {i.track_id: i for i in infos}
        vehicles = [i for i in infos if i.has("vehicle")]
        has_carriageway = bool(self.zones_of("carriageway", open_zones))
        for v in vehicles:
            for o in infos:
                if (
                    o is not v
                    and (o.has("vehicle") or o.has("person"))
                    and _iou(v.xyxy, o.xyxy) >= cfg.overlap_iou
                ):
                    self.contacts[(v.track_id, o.track_id)] = t
        self.contacts = {k: tc for k, tc in self.contacts.items() if t - tc <= cfg.window_seconds}
        for v in vehicles:
            since = self._stopped_since(v)
            if since is None:
                self.evidence.pop(v.track_id, None)
                continue
            before = v.max_speed_between(since - cfg.window_seconds, since - 1e-6)
            hit = [
                other
                for (a, other), tc in self.contacts.items()
                if a == v.track_id and since >= tc - cfg.window_seconds
            ]
            if hit and before >= cfg.moving_speed_px_s / 2:
                self.evidence[v.track_id] = "collision"
                for other in hit:
                    if other in by_id:
                        self.evidence[other] = "collision"
            elif before >= cfg.moving_speed_px_s and t - since >= cfg.stopped_seconds:
                if has_carriageway and self.zone_at(v, "carriageway", w, h, open_zones):
                    self.evidence.setdefault(v.track_id, "sudden stop")
        for p in infos:
            if _is_fallen(p, cfg.fallen_aspect) and p.speed(1.0) <= cfg.stopped_speed_px_s:
                still = next((ts for ts, s in reversed(p.speeds) if s > cfg.stopped_speed_px_s), p.first_seen)
                near_road = has_carriageway and self.zone_at(p, "carriageway", w, h, open_zones)
                if t - max(still, p.first_seen) >= cfg.fallen_seconds and near_road:
                    self.evidence.setdefault(p.track_id, "person down")
            elif self.evidence.get(p.track_id) == "person down":
                del self.evidence[p.track_id]
        self.evidence = {k: why for k, why in self.evidence.items() if k in by_id}
        active: dict[str, Active] = {}
        for tid, why in self.evidence.items():
            info = by_id[tid]
            zone = self.zone_at(info, "carriageway", w, h, open_zones)
            key = zone.name if zone else CAMERA
            a = active.setdefault(key, Active([], zone=zone.name if zone else None))
            a.objects.append(info)
            a.details[f"track_{tid}"] = why
            a.details[f"track_{tid}_peak_px_s"] = round(max((v for _, v in info.speeds), default=0.0), 1)
            ws = info.world_speed(1.0)
            if ws is not None:
                a.details[f"track_{tid}_kmh"] = round(ws * 3.6, 1)
        return active


class AssaultRule(Rule):
    """Two or more people close together moving hard relative to each other for ``sustain_seconds``;
    a person down next to others for ``down_seconds``; or a model class with the role ``fight``."""

    type = "assault"
    cfg: AssaultConfig

    def __init__(self, cfg: AssaultConfig, **kw: object) -> None:
        super().__init__(cfg, **kw)  # type: ignore[arg-type]
        self.pair_since: dict[tuple[int, int], float] = {}
        self.down_since: dict[int, float] = {}

    @staticmethod
    def relative_speed(a: TrackInfo, b: TrackInfo, window_s: float = 1.0) -> float:
        """Mean speed of the vector between two people's positions over the last second (pixels/s):
        side-by-side walkers keep it near zero, a struggle does not."""
        pa = {round(t, 3): (x, y) for t, x, y in a.history}
        common = [(t, x, y, *pa[round(t, 3)]) for t, x, y in b.history if round(t, 3) in pa]
        common = [c for c in common if common[-1][0] - c[0] <= window_s + 1e-6]
        if len(common) < 2:
            return 0.0
        d = np.array([(xa - xb, ya - yb) for _, xb, yb, xa, ya in common])
        ts = np.array([c[0] for c in common])
        return float(np.mean(np.hypot(*np.diff(d, axis=0).T) / np.diff(ts)))

    def evaluate(
        self, infos: list[TrackInfo], t: float, w: int, h: int, open_zones: set[str]
    ) -> dict[str, Active]:
        cfg = self.cfg
        people = [i for i in infos if i.has("person") or i.has("fallen_person")]
        upright = [p for p in people if not _is_fallen(p, cfg.fallen_aspect)]
        involved: dict[int, TrackInfo] = {}
        starts: list[float] = []
        seen_pairs: set[tuple[int, int]] = set()
        for a, b in combinations(upright, 2):
            scale = (a.height + b.height) / 2
            if _dist(a.centre, b.centre) > cfg.distance_heights * scale:
                continue
            if self.relative_speed(a, b) < cfg.relative_speed_heights_s * scale:
                continue
            key = (min(a.track_id, b.track_id), max(a.track_id, b.track_id))
            seen_pairs.add(key)
            since = self.pair_since.setdefault(key, t)
            if t - since >= cfg.sustain_seconds:
                involved[a.track_id], involved[b.track_id] = a, b
                starts.append(since)
        self.pair_since = {k: v for k, v in self.pair_since.items() if k in seen_pairs}
        downs: set[int] = set()
        for p in people:
            if not _is_fallen(p, cfg.fallen_aspect):
                continue
            others = [o for o in upright if _dist(o.point, p.point) <= cfg.distance_heights * 1.5 * o.height]
            if not others:
                continue
            downs.add(p.track_id)
            since = self.down_since.setdefault(p.track_id, t)
            if t - since >= cfg.down_seconds:
                involved[p.track_id] = p
                involved.update({o.track_id: o for o in others})
                starts.append(since)
        self.down_since = {k: v for k, v in self.down_since.items() if k in downs}
        for f in infos:
            if f.has("fight"):
                involved[f.track_id] = f
        if not involved:
            return {}
        return {
            CAMERA: Active(
                list(involved.values()), started_at=min(starts, default=t), details={"people": len(involved)}
            )
        }


class TheftRule(Rule):
    """A bag or two-wheeler that stayed with one person (its owner) leaves with a different,
    fast-moving person while the owner is far; or an object removed from a protected zone."""

    type = "theft"
    cfg: TheftConfig
    OBJECT_ROLES = ("bag", "two_wheeler")

    def __init__(self, cfg: TheftConfig, **kw: object) -> None:
        super().__init__(cfg, **kw)  # type: ignore[arg-type]
        self.near: dict[int, tuple[int, float]] = {}  # object -> (person nearest now, since when)
        self.owner: dict[int, int] = {}  # object -> owner person
        self.stolen: dict[int, int] = {}  # object -> person who took it (sticky while both are seen)
        self.protected_since: dict[tuple[str, int], float] = {}
        self.removed: dict[int, str] = {}  # object -> protected zone it was taken from

    def evaluate(
        self, infos: list[TrackInfo], t: float, w: int, h: int, open_zones: set[str]
    ) -> dict[str, Active]:
        cfg = self.cfg
        by_id = {i.track_id: i for i in infos}
        people = [i for i in infos if i.has("person") and not i.has("two_wheeler")]
        objects = [i for i in infos if any(i.has(r) for r in self.OBJECT_ROLES)]
        for obj in objects:
            carriers = sorted(
                (p for p in people if _dist(p.point, obj.point) <= cfg.owner_distance_heights * p.height),
                key=lambda p: _dist(p.point, obj.point),
            )
            if not carriers:
                self.near.pop(obj.track_id, None)
                continue
            carrier = carriers[0]
            prev = self.near.get(obj.track_id)
            since = prev[1] if prev and prev[0] == carrier.track_id else t
            self.near[obj.track_id] = (carrier.track_id, since)
            owner_id = self.owner.get(obj.track_id)
            if owner_id is None or owner_id == carrier.track_id:
                if t - since >= cfg.owner_seconds:
                    self.owner[obj.track_id] = carrier.track_id
                continue
            owner = by_id.get(owner_id)
            owner_far = (
                owner is None or _dist(owner.point, obj.point) > cfg.release_distance_heights * owner.height
            )
            fast = carrier.speed(1.0) >= cfg.fast_speed_heights_s * carrier.height
            if owner_far and fast:
                self.stolen[obj.track_id] = carrier.track_id
        # objects removed from protected zones
        seen: set[tuple[str, int]] = set()
        for zone in self.zones_of("protected", open_zones):
            for obj in [i for i in infos if not i.has("person")]:
                inside = zone.contains(np.array([obj.point]), frame_w=w, frame_h=h)[0]
                key = (zone.name, obj.track_id)
                if inside:
                    seen.add(key)
                    self.protected_since.setdefault(key, t)
                elif key in self.protected_since:
                    if t - self.protected_since[key] >= cfg.protected_seconds:
                        self.removed[obj.track_id] = zone.name
                    del self.protected_since[key]
        self.protected_since = {k: v for k, v in self.protected_since.items() if k in seen}
        # forget what is no longer seen (memory stays bounded)
        for d in (self.near, self.owner, self.stolen, self.removed):
            for k in [k for k in d if k not in by_id]:
                del d[k]
        active: dict[str, Active] = {}
        for obj_id, thief_id in self.stolen.items():
            objs = [by_id[obj_id]] + ([by_id[thief_id]] if thief_id in by_id else [])
            owner_id = self.owner.get(obj_id)
            active[f"taken:{obj_id}"] = Active(
                objs, details={"owner_track": owner_id or -1, "taken_by": thief_id}
            )
        for obj_id, zone_name in self.removed.items():
            active[f"removed:{obj_id}"] = Active(
                [by_id[obj_id]], zone=zone_name, details={"removed_from": zone_name}
            )
        return active
