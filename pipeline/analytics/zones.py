"""Zones: polygons in a camera's pixel space (or normalised 0..1), vectorised point-in-polygon."""

from __future__ import annotations

import numpy as np

from ..config import ZoneConfig


class Zone:
    def __init__(self, cfg: ZoneConfig) -> None:
        self.name = cfg.name
        self.kinds = set(cfg.kinds)
        self.normalized = cfg.normalized
        self._poly = np.asarray(cfg.polygon, dtype=np.float64)

    def polygon_px(self, frame_w: int, frame_h: int) -> np.ndarray:
        return self._poly * np.array([frame_w, frame_h]) if self.normalized else self._poly

    def contains(self, points: np.ndarray, *, frame_w: int, frame_h: int) -> np.ndarray:
        """Mask (N,) of points (N, 2) inside the polygon (even-odd ray casting, all points at once)."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2).copy()
        # a box clipped at the frame edge has its bottom-centre on the edge: count it in the last pixel row
        pts[:, 0] = pts[:, 0].clip(0, frame_w - 0.5)
        pts[:, 1] = pts[:, 1].clip(0, frame_h - 0.5)
        poly = self.polygon_px(frame_w, frame_h)
        x, y = pts[:, 0:1], pts[:, 1:2]
        x1, y1 = poly[:, 0], poly[:, 1]
        x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
        crosses = (y1 > y) != (y2 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside = crosses & (x < x_at)
        return np.asarray(inside.sum(axis=1) % 2 == 1)


def bottom_centres(xyxy: np.ndarray) -> np.ndarray:
    xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    return np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, xyxy[:, 3]], axis=1)
