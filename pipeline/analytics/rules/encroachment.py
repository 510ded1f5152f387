"""Encroachment: a person or vehicle stationary inside a no-encroachment zone for ``dwell_seconds``.

One incident per zone occurrence (the shared ``Lifecycle``): a track ID switch during an incident
neither starts a second one nor ends it, because the new track continues the old one's dwell
(``TrackInfo.continues``). Stationary means the bottom-centre moved under
``stationary_speed_px_s`` over the last ``HISTORY_SECONDS``; moving resets the dwell.
"""

from __future__ import annotations

from ...config import EncroachmentConfig
from ..lifecycle import Active
from ..memory import TrackInfo
from .base import Dwell, Rule

HISTORY_SECONDS = 1.5


class EncroachmentRule(Rule[EncroachmentConfig]):
    type = "encroachment"
    config = EncroachmentConfig
    roles = ("person", "vehicle")

    def __init__(self, cfg: EncroachmentConfig, **kw: object) -> None:
        super().__init__(cfg, **kw)  # type: ignore[arg-type]
        self.dwell = Dwell(cfg.clear_seconds)  # an absence up to clear_seconds (an occlusion) keeps the dwell

    def evaluate(
        self, infos: list[TrackInfo], t: float, w: int, h: int, open_zones: set[str]
    ) -> dict[str, Active]:
        cfg = self.cfg
        active: dict[str, Active] = {}
        candidates = [i for i in infos if any(i.has(r) for r in cfg.roles)]
        for zone in self.zones_of("no_encroachment", open_zones):
            dwelling, starts = [], []
            inside = self.inside(zone, candidates, w, h)
            self.dwell.left(zone.name, candidates, inside)
            for c in inside:
                if c.speed(HISTORY_SECONDS) > cfg.stationary_speed_px_s:
                    self.dwell.reset(zone.name, c.track_id)
                    continue
                since = self.dwell.hold(zone.name, c, t)
                if t - since >= cfg.dwell_seconds:
                    dwelling.append(c)
                    starts.append(since)
            if dwelling:
                started = min(starts)
                active[zone.name] = Active(
                    dwelling,
                    zone=zone.name,
                    started_at=started,
                    details={"dwell_seconds": round(t - started, 2)},
                )
        self.dwell.forget_old(t)
        return active
