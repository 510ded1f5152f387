"""Stray animals: animals in a carriageway zone for ``dwell_seconds``.

The time belongs to the zone, not to a track (``Presence``): an animal hidden behind a passing
vehicle, or given a new ID by the tracker, or several animals taking turns, keep the zone's time, up
to a gap of ``clear_seconds``.
"""

from __future__ import annotations

from ...config import StrayAnimalConfig
from ..lifecycle import Active
from ..memory import TrackInfo
from .base import Presence, Rule, Timer


class StrayAnimalRule(Rule[StrayAnimalConfig]):
    """An animal (role ``animal``) inside a carriageway zone for ``dwell_seconds``."""

    type = "stray_animal"
    config = StrayAnimalConfig
    roles = ("animal",)

    def __init__(self, cfg: StrayAnimalConfig, **kw: object) -> None:
        super().__init__(cfg, **kw)  # type: ignore[arg-type]
        self.presence = Presence(cfg.clear_seconds)
        self._inside: dict[str, list[TrackInfo]] = {}  # zone -> the animals in it this frame

    def timers(self, t: float) -> list[Timer]:
        return [
            Timer(info, t - self.presence.since[zone], self.cfg.dwell_seconds)
            for zone, infos in self._inside.items()
            if zone in self.presence.since
            for info in infos
        ]

    def evaluate(
        self, infos: list[TrackInfo], t: float, w: int, h: int, open_zones: set[str]
    ) -> dict[str, Active]:
        active: dict[str, Active] = {}
        animals = [i for i in infos if any(i.has(r) for r in self.cfg.roles)]
        self._inside = {}
        for zone in self.zones_of("carriageway", open_zones):
            inside = self.inside(zone, animals, w, h)
            if not inside:
                continue
            self._inside[zone.name] = inside
            since = self.presence.hold(zone.name, t)
            if t - since >= self.cfg.dwell_seconds - 1e-9 or self.lifecycle.is_open(zone.name):
                active[zone.name] = Active(
                    inside, zone=zone.name, started_at=since, details={"animals": len(inside)}
                )
        self.presence.forget_old(t)
        return active
