"""Watching a camera live: its analysed frames with what the pipeline sees drawn on them (zones, lines,
detections, tracks with trails, dwell timers, open incidents: ``preview.Scene``), as JPEGs for the
control interface's MJPEG stream (``GET /cameras/{id}/preview.mjpeg``).

Nothing is drawn for a camera nobody watches. For a watched one the analytics thread draws at most
``max_fps`` frames a second (the scene reads the camera's track memory and rule timers, which only
that thread may read) and encodes the JPEG; each viewer gets the latest, a frame it has not seen.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.io import encode_jpeg

from .analytics.camera import CameraAnalytics
from .detect.detector_set import DetectorSet
from .preview import Scene
from .types import Detections, Frame, Incident, Track

MAX_VIEWERS = 8


@dataclass
class _Camera:
    viewers: int = 0
    scene: Scene | None = None
    next_at: float = 0.0
    jpeg: bytes = b""
    seq: int = 0


class Watch:
    def __init__(self, detectors: DetectorSet, *, max_fps: float = 5.0, quality: int = 80) -> None:
        self.detectors = detectors
        self.period = 1.0 / max_fps
        self.quality = quality
        self.cameras: dict[str, _Camera] = {}  # the watched ones (analytics reads membership only)
        self.changed = threading.Condition()

    # -- viewers (the control interface's threads) -------------------------------------------
    def join(self, camera_id: str) -> bool:
        """A viewer starts watching; False when there are ``MAX_VIEWERS`` already."""
        with self.changed:
            if sum(c.viewers for c in self.cameras.values()) >= MAX_VIEWERS:
                return False
            self.cameras.setdefault(camera_id, _Camera()).viewers += 1
            return True

    def leave(self, camera_id: str) -> None:
        with self.changed:
            cam = self.cameras.get(camera_id)
            if cam is not None:
                cam.viewers -= 1
                if cam.viewers <= 0:
                    del self.cameras[camera_id]

    def next_jpeg(self, camera_id: str, after: int, timeout_s: float) -> tuple[int, bytes] | None:
        """The camera's first frame drawn after ``after`` (its sequence number and JPEG); None if none
        comes within ``timeout_s``."""
        with self.changed:
            ok = self.changed.wait_for(
                lambda: (c := self.cameras.get(camera_id)) is not None and c.seq > after, timeout_s
            )
            cam = self.cameras.get(camera_id)
            return (cam.seq, cam.jpeg) if ok and cam is not None else None

    # -- the analytics thread ---------------------------------------------------------------
    def offer(
        self,
        frame: Frame,
        ca: CameraAnalytics,
        dets: Detections,
        tracks: list[Track],
        incidents: list[Incident],
    ) -> None:
        """An analysed frame of a camera somebody watches (the caller checks ``frame.camera_id in
        cameras``): drawn and encoded when it is time for the next one."""
        cam = self.cameras.get(frame.camera_id)
        if cam is None:
            return
        if cam.scene is None or cam.scene.ca is not ca:  # watched anew, or its analytics were rebuilt
            cam.scene = Scene(ca.cam, ca, self.detectors)
        cam.scene.note(incidents)
        now = time.monotonic()
        if now < cam.next_at:
            return
        cam.next_at = now + self.period
        rgb = frame.rgb().cpu().numpy()
        drawn = cam.scene.draw(rgb, dets, tracks, frame.pts_seconds)
        chw = torch.from_numpy(np.ascontiguousarray(drawn)).permute(2, 0, 1).contiguous()
        jpeg = bytes(encode_jpeg(chw, quality=self.quality).numpy().tobytes())
        with self.changed:
            cam.jpeg, cam.seq = jpeg, cam.seq + 1
            self.changed.notify_all()
