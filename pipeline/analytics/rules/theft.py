"""Theft: a bag or two-wheeler carried off from its owner; an object taken out of a protected zone."""

from __future__ import annotations

import numpy as np

from ...config import TheftConfig
from ..lifecycle import Active
from ..memory import TrackInfo
from .base import Rule, dist


class TheftRule(Rule[TheftConfig]):
    """A bag or two-wheeler that stayed with one person (its owner) leaves with a different,
    fast-moving person while the owner is far; or an object removed from a protected zone."""

    type = "theft"
    config = TheftConfig
    OBJECT_ROLES = ("bag", "two_wheeler")
    roles = ("person", *OBJECT_ROLES)

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
                (p for p in people if dist(p.point, obj.point) <= cfg.owner_distance_heights * p.height),
                key=lambda p: dist(p.point, obj.point),
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
                owner is None or dist(owner.point, obj.point) > cfg.release_distance_heights * owner.height
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
