"""Accidents: collisions, sharp stops in a carriageway, a person gone down on the road.

Motion is judged in the vehicle's own size, on smoothed positions (``TrackInfo``), never in pixels
or from one frame to the next: a box that flips between car and truck, merges with its neighbour's
or splits again does not make a vehicle move. A vehicle is *stopped* since it has stayed within
``stopped_sizes`` of its size of where it is; it was *moving* before that when it went at least
``moving_sizes`` of its size in the ``window_seconds`` before it stopped. Two vehicles that stood
still throughout never collide, however their boxes overlap.
"""

from __future__ import annotations

from ...config import AccidentConfig
from ..lifecycle import Active
from ..memory import TrackInfo
from .base import CAMERA, Rule, iou


class AccidentRule(Rule[AccidentConfig]):
    """A collision (boxes in contact, and a vehicle that was moving stops right after); a vehicle
    stopped in a carriageway zone after moving (a sharp stop); or a person down and lying still in a
    carriageway zone. (A person down elsewhere, next to others, is the assault rule's.)"""

    type = "accident"
    config = AccidentConfig
    roles = ("vehicle", "person")

    def __init__(self, cfg: AccidentConfig, **kw: object) -> None:
        super().__init__(cfg, **kw)  # type: ignore[arg-type]
        self.contacts: dict[tuple[int, int], float] = {}  # (vehicle, other) origins -> last contact
        self.evidence: dict[int, str] = {}  # track -> why it is part of an accident (sticky while it lasts)

    def moved_before(self, v: TrackInfo, since: float) -> bool:
        """Whether ``v`` went ``moving_sizes`` of its size in the ``window_seconds`` before ``since``."""
        return v.displacement(since - self.cfg.window_seconds, since) >= self.cfg.moving_sizes

    def evaluate(
        self, infos: list[TrackInfo], t: float, w: int, h: int, open_zones: set[str]
    ) -> dict[str, Active]:
        cfg = self.cfg
        by_id = {i.track_id: i for i in infos}
        by_origin = {i.origin: i for i in infos}
        vehicles = [i for i in infos if i.has("vehicle")]
        has_carriageway = bool(self.zones_of("carriageway", open_zones))
        for v in vehicles:
            for o in infos:
                if (
                    o is not v
                    and (o.has("vehicle") or o.has("person"))
                    and iou(v.xyxy, o.xyxy) >= cfg.overlap_iou
                ):
                    self.contacts[(v.origin, o.origin)] = t
        self.contacts = {k: tc for k, tc in self.contacts.items() if t - tc <= cfg.window_seconds}
        for v in vehicles:
            since = v.still_since(cfg.stopped_sizes)
            if t - since < cfg.stop_seconds - 1e-9:  # moving now
                self.evidence.pop(v.track_id, None)
                continue
            moving = self.moved_before(v, since)
            hit = [
                other
                for (a, other), tc in self.contacts.items()
                if a == v.origin and since >= tc - cfg.window_seconds
            ]
            if hit and moving:
                self.evidence[v.track_id] = "collision"
                for other in hit:
                    if other in by_origin:
                        self.evidence[by_origin[other].track_id] = "collision"
            elif moving and t - since >= cfg.stopped_seconds:
                if has_carriageway and self.zone_at(v, "carriageway", w, h, open_zones):
                    self.evidence.setdefault(v.track_id, "sudden stop")
        for p in infos:  # a person who went down (seen upright before) and lies still on the road
            if p.down_since is None:
                if self.evidence.get(p.track_id) == "person down":  # got up
                    del self.evidence[p.track_id]
                continue
            still = p.still_since(cfg.stopped_sizes)
            near_road = has_carriageway and self.zone_at(p, "carriageway", w, h, open_zones)
            if t - max(still, p.down_since) >= cfg.fallen_seconds and near_road:
                self.evidence.setdefault(p.track_id, "person down")
        self.evidence = {k: why for k, why in self.evidence.items() if k in by_id}
        active: dict[str, Active] = {}
        for tid, why in self.evidence.items():
            info = by_id[tid]
            zone = self.zone_at(info, "carriageway", w, h, open_zones)
            key = zone.name if zone else CAMERA
            a = active.setdefault(key, Active([], zone=zone.name if zone else None))
            a.objects.append(info)
            a.details[f"track_{tid}"] = why
            ws = info.world_speed(1.0)
            if ws is not None:
                a.details[f"track_{tid}_kmh"] = round(ws * 3.6, 1)
        return active
