"""Snapshots an operator can read: the incident's objects boxed with label, track id and confidence,
its zone outlined, and a caption with the type, camera and time.

Drawn with OpenCV (which Ultralytics brings) on the CPU copy of the frame: a few milliseconds per
incident step, on the publish stage's thread, never on the analytics path.
"""

from __future__ import annotations

import time

import numpy as np

from ..analytics.zones import Zone
from ..types import Incident

SEVERITY_BGR = {
    "low": (80, 200, 80),
    "medium": (0, 200, 255),
    "high": (0, 120, 255),
    "critical": (40, 40, 230),
}
ZONE_RGB = (255, 230, 0)
DOWN_RGB = (255, 60, 60)


def _rgb(bgr: tuple[int, int, int]) -> tuple[int, int, int]:
    return bgr[2], bgr[1], bgr[0]


Rect = tuple[int, int, int, int]


class Labels:
    """White text on filled boxes, placed so that no two overlap where it can be helped."""

    def __init__(self, img: np.ndarray, scale: float) -> None:
        self.img, self.scale = img, scale
        self.placed: list[Rect] = []

    def put(self, text: str, colour: tuple[int, int, int], spots: list[tuple[int, int]]) -> None:
        """At the first of ``spots`` (bottom-left corners) where it overlaps nothing already placed (else
        where it overlaps least), kept inside the image, its scale shrunk to fit the width."""
        import cv2

        h, w = self.img.shape[:2]
        scale = self.scale
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        while tw > w - 4 and scale > 0.3:
            scale *= 0.9
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        rects = []
        for x, y in spots:
            x = int(min(max(x, 0), max(w - tw - 4, 0)))
            y = int(min(max(y, th + base + 2), h - 1))
            rects.append((x, y - th - base - 2, x + tw + 4, y))
        x0, y0, x1, y1 = min(rects, key=lambda r: sum(_overlap(r, p) for p in self.placed))
        self.placed.append((x0, y0, x1, y1))
        cv2.rectangle(self.img, (x0, y0), (x1, y1), colour, -1)
        cv2.putText(
            self.img,
            text,
            (x0 + 2, y1 - base),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )


def _overlap(a: Rect, b: Rect) -> int:
    """The area two rectangles share (0: none)."""
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def video_time(seconds: float) -> str:
    """A time in a video as H:MM:SS.s."""
    tenths = int(round(max(seconds, 0.0) * 10))
    h, rest = divmod(tenths, 36000)
    m, rest = divmod(rest, 600)
    return f"{h}:{m:02d}:{rest // 10:02d}.{rest % 10}"


def annotate(
    rgb: np.ndarray, inc: Incident, zones: list[Zone], *, wall_time: float, media_time: float | None = None
) -> np.ndarray:
    """A copy of the (H, W, 3) RGB frame with the incident drawn on it. The caption tells the frame's
    wall-clock time (a live camera) or, for a recording (``media_time``), its time in the video."""
    import cv2

    img = np.ascontiguousarray(rgb).copy()
    h, w = img.shape[:2]
    scale = max(0.4, min(h, w) / 900)
    thick = max(2, round(min(h, w) / 360))
    colour = _rgb(SEVERITY_BGR.get(inc.severity, (0, 200, 255)))
    labels = Labels(img, scale)
    when = (
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wall_time))
        if media_time is None
        else f"video {video_time(media_time)}"
    )
    caption = f"{inc.type.replace('_', ' ').upper()} {inc.status} ({inc.severity}) | {inc.camera_id} | {when}"
    labels.put(caption, (30, 30, 30), [(0, h - 1)])
    zone_names = []
    for z in zones:
        if z.name == inc.zone:
            poly = np.round(z.polygon_px(w, h)).astype(np.int32)
            cv2.polylines(img, [poly], True, ZONE_RGB, thick, cv2.LINE_AA)
            top = poly[np.argmin(poly[:, 1])]
            zone_names.append((z.name, int(top[0]), int(top[1]), int(poly[:, 1].max())))
    for o in inc.objects:
        x1, y1, x2, y2 = (round(v) for v in o.bbox_xyxy)
        box = DOWN_RGB if o.down else colour
        cv2.rectangle(img, (x1, y1), (x2, y2), box, thick, cv2.LINE_AA)
        text = f"{o.label} #{o.track_id} {o.confidence:.2f}" + (" DOWN" if o.down else "")
        tall = round(30 * scale)  # above the box, under it, inside its top
        labels.put(text, box, [(x1, y1 - 1), (x1, y2 + tall), (x1, y1 + tall)])
    for name, x, y, bottom in zone_names:  # inside its highest corner, above it, or under the zone
        labels.put(
            f"zone {name}",
            (150, 130, 0),
            [(x, y + round(28 * scale)), (x, y - 2), (x, bottom + round(30 * scale))],
        )
    return img
