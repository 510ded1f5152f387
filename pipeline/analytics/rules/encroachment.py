"""Encroachment: a person or vehicle standing inside a no-encroachment zone for ``dwell_seconds``.

Standing is judged in the object's own size, never in pixels: an object stands when it stays within
``stationary_sizes`` of its size of one place for ``stationary_seconds`` (``Spots``), so people
walking slowly through the zone never stand, at any resolution. The dwell belongs to the place
(the spot), not to a track: it keeps counting while the stander is hidden by a passer-by, while the
tracker gives them a new ID, and at any analysed frame rate.

One incident per zone occurrence (the shared ``Lifecycle``). Once an incident has started, the zone
stays active while anything still stands in it (its parties, or anyone who took their place before
the zone emptied): the incident ends when the zone is clear, not when the first stander moves.
"""

from __future__ import annotations

from ...config import EncroachmentConfig
from ..lifecycle import Active
from ..memory import TrackInfo
from .base import Rule, Spots, Timer


class EncroachmentRule(Rule[EncroachmentConfig]):
    type = "encroachment"
    config = EncroachmentConfig
    roles = ("person", "vehicle")

    def __init__(self, cfg: EncroachmentConfig, **kw: object) -> None:
        super().__init__(cfg, **kw)  # type: ignore[arg-type]
        self.spots: dict[str, Spots] = {}  # zone -> where things stand in it

    def timers(self, t: float) -> list[Timer]:
        return [
            Timer(info, t - s.since, self.cfg.dwell_seconds)
            for spots in self.spots.values()
            for s in spots.spots
            for info in s.here
        ]

    def _kind(self, info: TrackInfo) -> str | None:
        return next((r for r in self.cfg.roles if info.has(r)), None)

    def evaluate(
        self, infos: list[TrackInfo], t: float, w: int, h: int, open_zones: set[str]
    ) -> dict[str, Active]:
        cfg = self.cfg
        active: dict[str, Active] = {}
        candidates = [i for i in infos if self._kind(i) is not None]
        zones = self.zones_of("no_encroachment", open_zones)
        for zone in zones:
            spots = self.spots.setdefault(
                zone.name,
                Spots(
                    radius_sizes=cfg.stationary_sizes,
                    still_seconds=cfg.stationary_seconds,
                    grace_s=cfg.clear_seconds,
                ),
            )
            inside = [(i, self._kind(i) or "") for i in self.inside(zone, candidates, w, h)]
            live = [s for s in spots.update(inside, t) if s.here]
            due = [s for s in live if t - s.since >= cfg.dwell_seconds - 1e-9]
            held = live if self.lifecycle.is_open(zone.name) else due
            if held:
                objects = list({i.track_id: i for s in held for i in s.here}.values())
                started = min(s.since for s in held)
                active[zone.name] = Active(
                    objects,
                    zone=zone.name,
                    started_at=started,
                    details={"dwell_seconds": round(t - started, 2)},
                )
        names = {z.name for z in zones}
        for gone in [z for z in self.spots if z not in names]:  # a zone closed by its schedule
            del self.spots[gone]
        return active
