"""Stray animals: an animal inside a carriageway zone for ``dwell_seconds``."""

from __future__ import annotations

from ...config import StrayAnimalConfig
from ..lifecycle import Active
from ..memory import TrackInfo
from .base import Dwell, Rule


class StrayAnimalRule(Rule[StrayAnimalConfig]):
    """An animal (role ``animal``) inside a carriageway zone for ``dwell_seconds``."""

    type = "stray_animal"
    config = StrayAnimalConfig
    roles = ("animal",)

    def __init__(self, cfg: StrayAnimalConfig, **kw: object) -> None:
        super().__init__(cfg, **kw)  # type: ignore[arg-type]
        self.dwell = Dwell(cfg.clear_seconds)  # an absence up to clear_seconds (an occlusion) keeps the dwell

    def evaluate(
        self, infos: list[TrackInfo], t: float, w: int, h: int, open_zones: set[str]
    ) -> dict[str, Active]:
        active: dict[str, Active] = {}
        animals = [i for i in infos if any(i.has(r) for r in self.cfg.roles)]
        for zone in self.zones_of("carriageway", open_zones):
            dwelling, starts = [], []
            inside = self.inside(zone, animals, w, h)
            self.dwell.left(zone.name, animals, inside)
            for a in inside:
                since = self.dwell.hold(zone.name, a, t)
                if t - since >= self.cfg.dwell_seconds:
                    dwelling.append(a)
                    starts.append(since)
            if dwelling:
                active[zone.name] = Active(
                    dwelling, zone=zone.name, started_at=min(starts), details={"animals": len(dwelling)}
                )
        self.dwell.forget_old(t)  # a vanished animal's dwell is kept a moment: its next track may continue it
        return active
