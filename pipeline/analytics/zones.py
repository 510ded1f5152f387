"""Geometry per camera: zones (polygons, pixels or normalised 0..1), directed lines, ground plane.

Pixel coordinates are the frame's own, or, where the camera says which frame size they were drawn on
(``zones_drawn_on``), that size's, scaled to the frame at hand (a sub-stream, a changed resolution).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..config import CameraConfig, GroundPlaneConfig, LineConfig, ZoneConfig

if TYPE_CHECKING:
    from .filters import Filters
    from .memory import TrackInfo

Size = tuple[int, int]


def _scale(
    points: np.ndarray, normalized: bool, drawn_on: Size | None, frame_w: int, frame_h: int
) -> np.ndarray:
    """Points of the config in the pixels of a ``frame_w`` x ``frame_h`` frame."""
    if normalized:
        return points * np.array([frame_w, frame_h])
    if drawn_on is not None and (frame_w, frame_h) != tuple(drawn_on) and frame_w > 0 and frame_h > 0:
        return points * np.array([frame_w / drawn_on[0], frame_h / drawn_on[1]])
    return points


class Zone:
    def __init__(self, cfg: ZoneConfig, *, drawn_on: Size | None = None) -> None:
        self.name = cfg.name
        self.kinds = set(cfg.kinds)
        self.normalized = cfg.normalized
        self.drawn_on = drawn_on
        self._poly = np.asarray(cfg.polygon, dtype=np.float64)
        self.filters: Filters | None = None  # the zone's object filters (set by the camera's analytics)

    def admits(self, info: TrackInfo, frame_w: int, frame_h: int) -> bool:
        """Whether an object passes the zone's own filters (``analytics/filters.py``)."""
        return self.filters is None or self.filters.admits(info, frame_w, frame_h)

    def polygon_px(self, frame_w: int, frame_h: int) -> np.ndarray:
        return _scale(self._poly, self.normalized, self.drawn_on, frame_w, frame_h)

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

    def __init__(self, cfg: LineConfig, *, drawn_on: Size | None = None) -> None:
        self.name = cfg.name
        self.normalized = cfg.normalized
        self.drawn_on = drawn_on
        self._pts = np.asarray(cfg.points, dtype=np.float64)

    def endpoints(self, frame_w: int, frame_h: int) -> np.ndarray:
        return _scale(self._pts, self.normalized, self.drawn_on, frame_w, frame_h)

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

    def __init__(self, cfg: GroundPlaneConfig, *, drawn_on: Size | None = None) -> None:
        self.drawn_on = drawn_on
        rows = []
        for (x, y), (u, v) in zip(cfg.image, cfg.world, strict=True):
            rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y, -u])
            rows.append([0, 0, 0, x, y, 1, -v * x, -v * y, -v])
        _, sv, vt = np.linalg.svd(np.asarray(rows, dtype=np.float64))
        if sv[-2] < 1e-9 * sv[0]:
            raise ValueError("ground_plane: the four image points must not be collinear")
        self.h = vt[-1].reshape(3, 3) / vt[-1][-1]

    def to_world(self, points: np.ndarray, *, frame_w: int = 0, frame_h: int = 0) -> np.ndarray:
        """Ground metres of pixel points of a ``frame_w`` x ``frame_h`` frame (the size matters only
        where the image points were drawn on another size)."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if self.drawn_on is not None and frame_w > 0 and frame_h > 0:
            p = p * np.array([self.drawn_on[0] / frame_w, self.drawn_on[1] / frame_h])
        q = np.c_[p, np.ones(len(p))] @ self.h.T
        return q[:, :2] / q[:, 2:3]


def camera_zones(cam: CameraConfig) -> list[Zone]:
    return [Zone(z, drawn_on=cam.zones_drawn_on) for z in cam.zones]


def camera_lines(cam: CameraConfig) -> list[Line]:
    return [Line(ln, drawn_on=cam.zones_drawn_on) for ln in cam.lines]


def camera_ground(cam: CameraConfig) -> GroundPlane | None:
    return GroundPlane(cam.ground_plane, drawn_on=cam.zones_drawn_on) if cam.ground_plane else None
