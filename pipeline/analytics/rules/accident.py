"""Accidents: collisions, sharp stops in a carriageway, a person gone down on the road."""

from __future__ import annotations

from ...config import AccidentConfig
from ..lifecycle import Active
from ..memory import TrackInfo
from .base import CAMERA, Rule, iou


class AccidentRule(Rule[AccidentConfig]):
    """A collision (box overlap, then a moving vehicle stops); a vehicle stopped in a carriageway zone
    after a sharp drop in speed; or a person down and lying still in a carriageway zone. (A person
    down elsewhere, next to others, is the assault rule's.)"""

    type = "accident"
    config = AccidentConfig
    roles = ("vehicle", "person")

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
                    and iou(v.xyxy, o.xyxy) >= cfg.overlap_iou
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
        for p in infos:  # a person who went down (seen upright before) and lies still on the road
            if p.down_since is not None and p.speed(1.0) <= cfg.stopped_speed_px_s:
                still = next((ts for ts, s in reversed(p.speeds) if s > cfg.stopped_speed_px_s), p.first_seen)
                near_road = has_carriageway and self.zone_at(p, "carriageway", w, h, open_zones)
                if t - max(still, p.down_since) >= cfg.fallen_seconds and near_road:
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
