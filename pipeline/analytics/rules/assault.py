"""Assault: a struggle between people, a person gone down next to others, a fight class."""

from __future__ import annotations

from itertools import combinations

import numpy as np

from ...config import AssaultConfig
from ..lifecycle import Active
from ..memory import TrackInfo
from .base import CAMERA, Dwell, Rule, dist


class AssaultRule(Rule[AssaultConfig]):
    """Two or more people close together moving hard relative to each other for ``sustain_seconds``;
    a person down next to others for ``down_seconds``; or a model class with the role ``fight``."""

    type = "assault"
    config = AssaultConfig
    roles = ("person",)

    def __init__(self, cfg: AssaultConfig, **kw: object) -> None:
        super().__init__(cfg, **kw)  # type: ignore[arg-type]
        self.pair_since: dict[tuple[int, int], float] = {}
        # since when each person down has had others next to them (kept across an ID switch, and
        # through a gap of up to clear_seconds)
        self.down_near = Dwell(cfg.clear_seconds)

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
        upright = [p for p in people if not p.down]
        involved: dict[int, TrackInfo] = {}
        starts: list[float] = []
        seen_pairs: set[tuple[int, int]] = set()
        for a, b in combinations(upright, 2):
            scale = (a.height + b.height) / 2
            if dist(a.centre, b.centre) > cfg.distance_heights * scale:
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
        for p in people:
            others = [o for o in upright if dist(o.point, p.point) <= cfg.distance_heights * 1.5 * o.height]
            if p.down_since is None or not others:  # upright, never seen going down, or alone
                self.down_near.reset(CAMERA, p)
                continue
            since = self.down_near.hold(CAMERA, p, t)
            if t - since >= cfg.down_seconds:
                involved[p.track_id] = p
                involved.update({o.track_id: o for o in others})
                starts.append(since)
        self.down_near.forget_old(t)
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
