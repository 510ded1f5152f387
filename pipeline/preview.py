"""``safecity preview``: one camera's video with what the pipeline sees drawn on it, for whoever
draws its zones: zones and lines, every detection (label, confidence, the detector that made it),
tracks with their ids and trails, the dwell timers the rules are counting, and the incidents open.

It runs the config's detectors, tracker and rules on the camera's frames at its ``analytics_fps``
(one decoding thread, no sink, no outbox) and writes an H.264 MP4 of the annotated frames.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from .analytics.camera import CameraAnalytics
from .analytics.zones import camera_lines, camera_zones
from .config import CameraConfig, Config
from .detect import create_detectors
from .detect.detector_set import DetectorSet
from .errors import ConfigError
from .events.annotate import Labels
from .preprocess import color_spec
from .sources.cpu import Sampler, open_container, to_rgb24
from .types import Detections, Frame, FrameBatch, Incident, Track

log = logging.getLogger(__name__)

ZONE_RGB = {
    "no_encroachment": (255, 200, 0),
    "carriageway": (80, 160, 255),
    "protected": (200, 90, 255),
    "mask": (140, 140, 140),
}
LINE_RGB = (0, 255, 255)
DETECTION_RGB = (200, 200, 200)
TRACK_RGB = (60, 220, 60)
INCIDENT_RGB = (230, 40, 40)
DWELL_RGB = (255, 170, 0)  # a dwell timer filling along the top of its object's box


class Scene:
    """Draws one analysed frame: the camera's geometry, the detections, the tracks and rule states."""

    def __init__(self, cam: CameraConfig, ca: CameraAnalytics, detectors: DetectorSet) -> None:
        self.cam = cam
        self.ca = ca
        self.names = detectors.info.class_names
        self.models = detectors.model_tags
        self.zones = camera_zones(cam)
        self.lines = camera_lines(cam)
        self.open: dict[str, Incident] = {}

    def note(self, incidents: list[Incident]) -> None:
        for inc in incidents:
            if inc.status == "end":
                self.open.pop(inc.incident_id, None)
            else:
                self.open[inc.incident_id] = inc

    def draw(self, rgb: np.ndarray, dets: Detections, tracks: list[Track], t: float) -> np.ndarray:
        import cv2

        img = np.ascontiguousarray(rgb).copy()
        h, w = img.shape[:2]
        scale = max(0.35, min(h, w) / 1500)
        thick = max(1, round(min(h, w) / 400))
        labels = Labels(img, scale)
        for z in self.zones:
            colour = next((ZONE_RGB[k] for k in ZONE_RGB if k in z.kinds), ZONE_RGB["no_encroachment"])
            poly = np.round(z.polygon_px(w, h)).astype(np.int32)
            cv2.polylines(img, [poly], True, colour, thick + 1, cv2.LINE_AA)
            top = poly[np.argmin(poly[:, 1])]
            labels.put(
                f"{z.name} ({', '.join(sorted(z.kinds))})", _dark(colour), [(int(top[0]), int(top[1]) + 18)]
            )
        for ln in self.lines:
            (ax, ay), (bx, by) = np.round(ln.endpoints(w, h)).astype(int)
            cv2.arrowedLine(img, (ax, ay), (bx, by), LINE_RGB, thick + 1, cv2.LINE_AA, tipLength=0.03)
            labels.put(f"line {ln.name}", (0, 120, 120), [(bx, by - 4)])
        for k in range(len(dets)):  # every detection, thin, with the detector(s) that made it
            x1, y1, x2, y2 = (round(float(v)) for v in dets.xyxy[k])
            cv2.rectangle(img, (x1, y1), (x2, y2), DETECTION_RGB, 1, cv2.LINE_AA)
        for tr in tracks:
            self._track(img, labels, tr, dets, thick)
        self._dwell(img, labels, t)
        banner = [
            f"{inc.type} {inc.zone or ''} ({len(inc.objects)} objects)".replace("  ", " ")
            for inc in self.open.values()
        ]
        caption = f"{self.cam.id}  t={t:7.2f} s  detections={len(dets)} tracks={len(tracks)}"
        labels.put(caption, (30, 30, 30), [(0, h - 1)])
        for i, text in enumerate(banner[:4]):
            labels.put("INCIDENT " + text, INCIDENT_RGB, [(0, round(24 * scale) * (i + 1) + 4)])
        return img

    def _track(self, img: np.ndarray, labels: Labels, tr: Track, dets: Detections, thick: int) -> None:
        import cv2

        x1, y1, x2, y2 = (round(float(v)) for v in tr.xyxy)
        info = self.ca.memory.tracks.get(tr.track_id)
        colour = (
            INCIDENT_RGB
            if any(o.track_id == tr.track_id for i in self.open.values() for o in i.objects)
            else TRACK_RGB
        )
        if info is not None and len(info.history) > 1:  # the trail of its bottom-centre
            pts = np.array([(x, y) for _, x, y in info.history], np.int32)
            cv2.polylines(img, [pts], False, colour, thick, cv2.LINE_AA)
        cv2.rectangle(img, (x1, y1), (x2, y2), colour, thick + 1, cv2.LINE_AA)
        models = "+".join(m.split("@", 1)[0].split("-", 1)[0] for m in tr.models) or "?"
        posture = "" if tr.down is None else (" DOWN" if tr.down else " up")
        text = f"#{tr.track_id} {tr.label} {tr.confidence:.2f} {models}{posture}"
        labels.put(text, _dark(colour), [(x1, y1 - 1), (x1, y2 + 18)])

    def _dwell(self, img: np.ndarray, labels: Labels, t: float) -> None:
        """The dwell timers the rules are counting, on their own object: a bar along the top of its
        box that fills as the dwell runs, and the seconds inside the box (in a crowd, where labels
        beside boxes get pushed about, the timer stays on the person it counts for)."""
        import cv2

        h, w = img.shape[:2]
        thick = max(3, round(min(h, w) / 200))
        for rule in self.ca.rules:
            for timer in rule.timers(t):
                if timer.info.last_seen != t:
                    continue
                x1, y1, x2, y2 = (round(float(v)) for v in timer.info.xyxy)
                share = min(timer.seconds / timer.need, 1.0) if timer.need > 0 else 1.0
                cv2.line(img, (x1, y1), (x2, y1), (60, 60, 60), thick, cv2.LINE_AA)
                cv2.line(img, (x1, y1), (x1 + round((x2 - x1) * share), y1), DWELL_RGB, thick, cv2.LINE_AA)
                labels.put(
                    f"{timer.seconds:.1f}/{timer.need:g} s",
                    (90, 60, 0),
                    [(x1 + 2, y1 + round(22 * labels.scale) + thick), (x1 + 2, (y1 + y2) // 2)],
                )


def _dark(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    return (rgb[0] * 3 // 5, rgb[1] * 3 // 5, rgb[2] * 3 // 5)


def preview(
    cfg: Config,
    camera_id: str | None,
    out: Path,
    *,
    seconds: float,
    progress: Callable[[float], None] | None = None,
) -> tuple[int, CameraConfig]:
    """Write ``out`` (MP4, H.264, at the camera's analytics rate) for ``seconds`` of the camera's
    video; returns the frames written and the camera."""
    import av

    cams = {c.id: c for c in cfg.cameras}
    if camera_id is None:
        camera_id = cfg.cameras[0].id
    cam = cams.get(camera_id)
    if cam is None:
        raise ConfigError(
            f"--camera {camera_id!r}: the config has no such camera (it has: {', '.join(cams)})"
        )
    detectors = create_detectors(cfg)
    ca = CameraAnalytics(
        cfg, cam, detectors.info.class_names, roles=detectors.label_roles, model_names=detectors.model_tags
    )
    scene = Scene(cam, ca, detectors)
    sampler = Sampler(cam.analytics_fps)
    wall0 = time.time()  # schedules are checked against the time now
    written = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with open_container(cam) as container, av.open(str(out), "w") as sink:
        stream = container.streams.video[0]
        enc = None
        t0: float | None = None
        for frame in container.decode(stream):
            if frame.pts is None or frame.time_base is None:
                continue
            t = float(frame.pts * frame.time_base)
            t0 = t if t0 is None else t0
            t -= t0
            if t > seconds:
                break
            if not sampler.take(t):
                continue
            rgb = to_rgb24(
                frame, color_spec(frame.colorspace, frame.color_range, frame.height, frame.format.name)
            )
            batch = FrameBatch([Frame(cam.id, torch.from_numpy(rgb), t, written, wall0 + t)])
            dets = detectors.detect(batch)[0]
            tracks = ca.tracker.update(dets, t)
            h, w = rgb.shape[:2]
            scene.note(ca.analyse_tracks(tracks, t=t, wall_time=wall0 + t, frame_w=w, frame_h=h))
            drawn = scene.draw(rgb, dets, tracks, t)
            if enc is None:
                enc = sink.add_stream("libx264", rate=Fraction(cam.analytics_fps).limit_denominator(1000))
                enc.width, enc.height = drawn.shape[1] // 2 * 2, drawn.shape[0] // 2 * 2
                enc.pix_fmt = "yuv420p"
            img = av.VideoFrame.from_ndarray(drawn[: enc.height, : enc.width], format="rgb24")
            for packet in enc.encode(img):
                sink.mux(packet)
            written += 1
            if progress:
                progress(t)
        if enc is not None:
            for packet in enc.encode():
                sink.mux(packet)
    if written == 0:
        out.unlink(missing_ok=True)
        raise ConfigError(f"camera {cam.id}: no frame could be decoded from its source")
    return written, cam


__all__ = ["Scene", "preview"]
