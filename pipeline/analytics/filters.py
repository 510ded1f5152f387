"""False-alarm controls: which tracked objects the rules may look at (``ObjectFilter`` in the config).

A filter is keyed by a role (``person``, ``vehicle`` ...) or a class name (``truck``); an object is
checked against every filter whose key is one of its roles or its class. The camera's filters are
the top-level ones with the camera's own fields over them (``Config.camera_filters``); a zone's
filters apply on top of those to the objects in that zone. A key that is neither a role the rules
read nor a class of the loaded models is an error at load (``check_filter_keys``): a typo would be a
filter that never applies. Sizes are shares of the frame's height, never pixels, so a filter means the
same at any resolution; on a camera with a ground plane, widths can be given in metres.
"""

from __future__ import annotations

import numpy as np

from ..config import Config, ObjectFilter
from ..errors import ConfigError
from .memory import TrackInfo
from .zones import GroundPlane


class Filters:
    """Filters by role or class, with the camera's ground plane (for widths in metres)."""

    def __init__(self, by_key: dict[str, ObjectFilter], ground: GroundPlane | None = None) -> None:
        self.by_key = by_key
        self.ground = ground

    def __bool__(self) -> bool:
        return bool(self.by_key)

    def admits(self, info: TrackInfo, frame_w: int, frame_h: int) -> bool:
        for key, f in self.by_key.items():
            if (key == info.label or info.has(key)) and not self._passes(f, info, frame_w, frame_h):
                return False
        return True

    def _passes(self, f: ObjectFilter, info: TrackInfo, frame_w: int, frame_h: int) -> bool:
        size = max(info.width, info.height) / max(frame_h, 1)
        aspect = info.width / info.height
        if not (f.min_size <= size <= f.max_size and f.min_aspect <= aspect <= f.max_aspect):
            return False
        if f.min_score > 0 and info.median_score(f.score_seconds) < f.min_score:
            return False
        if self.ground is not None and (f.min_width_m > 0 or f.max_width_m < 1000):
            x1, _, x2, y2 = (float(v) for v in info.xyxy)
            a, b = self.ground.to_world(np.array([[x1, y2], [x2, y2]]), frame_w=frame_w, frame_h=frame_h)
            width_m = float(np.hypot(*(b - a)))
            if not f.min_width_m <= width_m <= f.max_width_m:
                return False
        return True


def check_filter_keys(cfg: Config, roles: set[str], classes: set[str]) -> None:
    """Every filter key (top level, camera, zone) names a role the rules read or a loaded class."""
    import difflib

    known = sorted(roles | classes)
    where = [("filters", cfg.filters)]
    for cam in cfg.cameras:
        where.append((f"cameras[{cam.id}].filters", cam.filters))
        where += [(f"cameras[{cam.id}].zones[{z.name}].filters", z.filters) for z in cam.zones]
    for field, filters in where:
        for key in filters:
            if key not in roles and key not in classes:
                near = difflib.get_close_matches(key, known, n=1)
                raise ConfigError(
                    f"{field}: {key!r} is neither a role the rules read nor a class of the loaded models"
                    + (f" (did you mean {near[0]!r}?)" if near else "")
                )
