"""Geometry per camera: zones (polygons, pixels or normalised 0..1), directed lines, ground plane."""

from __future__ import annotations

import numpy as np

from ..config import GroundPlaneConfig, LineConfig, ZoneConfig


class Zone:
    def __init__(self, cfg: ZoneConfig) -> None:
        self.name = cfg.name
        self.kinds = set(cfg.kinds)
        self.normalized = cfg.normalized
        self._poly = np.asarray(cfg.polygon, dtype=np.float64)

    def polygon_px(self, frame_w: int, frame_h: int) -> np.ndarray:
        return self._poly * np.array([frame_w, frame_h]) if self.normalized else self._poly

    def outside_frame(self, frame_w: int, frame_h: int) -> bool:
        """Whether the polygon lies wholly outside the frame (it can never hold an object)."""
        poly = self.polygon_px(frame_w, frame_h)
        return bool(poly[:, 0].min() >= frame_w or poly[:, 1].min() >= frame_h)

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


class Line:
    """A directed line segment; ``crossing`` tells whether a move p0 -> p1 crossed it, and which way."""

    def __init__(self, cfg: LineConfig) -> None:
        self.name = cfg.name
        self.normalized = cfg.normalized
        self._pts = np.asarray(cfg.points, dtype=np.float64)

    def endpoints(self, frame_w: int, frame_h: int) -> np.ndarray:
        return self._pts * np.array([frame_w, frame_h]) if self.normalized else self._pts

    def crossing(
        self, p0: tuple[float, float], p1: tuple[float, float], *, frame_w: int, frame_h: int
    ) -> int:
        """+1 (forward: from the right of A->B to its left, y pointing down), -1 (backward), 0 (none).

        A point exactly on the line counts as on its right, so a move is counted once.
        """
        a, b = self.endpoints(frame_w, frame_h)

        def right(p: np.ndarray | tuple[float, float], u: np.ndarray, v: np.ndarray) -> bool:
            return float((v[0] - u[0]) * (p[1] - u[1]) - (v[1] - u[1]) * (p[0] - u[0])) >= 0

        r0, r1 = right(p0, a, b), right(p1, a, b)
        if r0 == r1:
            return 0
        q0, q1 = np.asarray(p0, dtype=np.float64), np.asarray(p1, dtype=np.float64)
        if right(a, q0, q1) == right(b, q0, q1):  # the move passes beside the segment, not through it
            return 0
        return 1 if r0 else -1


class GroundPlane:
    """A homography from image pixels to ground metres, from four point pairs (DLT)."""

    def __init__(self, cfg: GroundPlaneConfig) -> None:
        rows = []
        for (x, y), (u, v) in zip(cfg.image, cfg.world, strict=True):
            rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y, -u])
            rows.append([0, 0, 0, x, y, 1, -v * x, -v * y, -v])
        _, sv, vt = np.linalg.svd(np.asarray(rows, dtype=np.float64))
        if sv[-2] < 1e-9 * sv[0]:
            raise ValueError("ground_plane: the four image points must not be collinear")
        self.h = vt[-1].reshape(3, 3) / vt[-1][-1]

    def to_world(self, points: np.ndarray) -> np.ndarray:
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        q = np.c_[p, np.ones(len(p))] @ self.h.T
        return q[:, :2] / q[:, 2:3]
