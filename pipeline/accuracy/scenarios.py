"""The scenario library: scripted track sequences through every rule, without a model or video.

Each file of ``scenario_library/`` gives zones, rule overrides, tracks as keyframes ``[t, centre_x,
bottom_y, width, height]`` (linear in between, absent outside their first and last keyframe), each
with optional extras: an oscillation ``jitter``; ``posture``: ``[[t, upright | down], ...]``, a
posture model's verdict from each t on; ``labels``: ``[[t, class], ...]``, the class the detector
says from each t on (a van read as car, then truck); ``hidden``: ``[[t0, t1], ...]``, times the
object is not detected (occluded, missed); and the incidents expected, with the time their ``start``
is emitted (and optionally ``end``, when the situation is over; the scenario's end otherwise). The
tests check each scenario exactly, at 5 and at 10 analysed frames a second;
``safecity bench accuracy --scenarios`` scores the library as a whole.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..analytics.camera import CameraAnalytics
from ..config import parse_config
from ..types import Incident, Track

LIBRARY = Path(__file__).with_name("scenario_library")
SCENARIOS = sorted(LIBRARY.glob("*.yaml"))
FPS = 5
NOON = dt.datetime(2026, 11, 28, 12, 0).timestamp()  # local noon: schedules are checked against it


def box_at(track: dict[str, Any], t: float) -> np.ndarray | None:
    path = track["path"]
    if t < path[0][0] - 1e-9 or t > path[-1][0] + 1e-9:
        return None
    for a, b in zip(path, path[1:], strict=False):
        if a[0] <= t <= b[0]:
            f = 0.0 if b[0] == a[0] else (t - a[0]) / (b[0] - a[0])
            cx, by, w, h = (a[k] + f * (b[k] - a[k]) for k in range(1, 5))
            break
    else:
        _, cx, by, w, h = path[-1]
    j = track.get("jitter")
    if j and j.get("from", 0) <= t <= j.get("to", 1e9):
        cx += j["amp"] * math.sin(2 * math.pi * j["hz"] * t + j.get("phase", 0.0))
    return np.array([cx - w / 2, by - h, cx + w / 2, by], np.float32)


def label_at(track: dict[str, Any], t: float) -> str:
    label = str(track["label"])
    for since, what in track.get("labels", []):
        if t >= since - 1e-9:
            label = str(what)
    return label


def hidden_at(track: dict[str, Any], t: float) -> bool:
    return any(a - 1e-9 <= t < b - 1e-9 for a, b in track.get("hidden", []))


def posture_at(track: dict[str, Any], t: float) -> bool | None:
    verdict = None
    for since, what in track.get("posture", []):
        if t >= since - 1e-9:
            verdict = what == "down"
    return verdict


def run_scenario(
    data: dict[str, Any], rules: dict[str, Any] | None = None, *, fps: float = FPS
) -> list[Incident]:
    """The incident steps of a scenario (``rules``: overrides on top of the file's), analysed at ``fps``."""
    cfg = parse_config(
        {
            "cameras": [
                {
                    "id": "cam",
                    "source": "scripted.mp4",
                    "zones": data.get("zones", []),
                    "schedule": data.get("camera_schedule", []),
                }
            ],
            "model": {"backend": "scripted", "scripted_detections": "unused.jsonl"},
            "rules": merged_rules(data.get("rules", {}), rules or {}),
        }
    )
    ca = CameraAnalytics(cfg, 0, ())
    out: list[Incident] = []
    for k in range(int(data["duration"] * fps) + 1):
        t = round(k / fps, 3)
        tracks = []
        for tr in data["tracks"]:
            box = box_at(tr, t)
            if box is not None and not hidden_at(tr, t):
                conf = tr.get("confidence", 0.8)
                tracks.append(Track(tr["id"], box, conf, 0, label_at(tr, t), down=posture_at(tr, t)))
        out += ca.analyse_tracks(tracks, t=t, wall_time=NOON + t, frame_w=1280, frame_h=720)
    return out


def merged_rules(base: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for k, v in more.items():
        out[k] = {**out.get(k, {}), **v} if isinstance(v, dict) else v
    return out
