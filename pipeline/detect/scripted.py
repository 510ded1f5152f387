"""A detector that replays scripted detections from a JSONL file (tests and rule development).

Only the detector is replaced: frames are still decoded, batched, tracked and turned into incidents.
File format: a first line ``{"names": [...]}``, then one line per camera and media time:
``{"camera": "cam1", "t": 1.2, "boxes": [[x1, y1, x2, y2, conf, cls], ...]}``. A frame gets the
boxes of the latest line at or before its media time (looped files wrap at ``"period"`` seconds
if the header gives one).
"""

from __future__ import annotations

import bisect
import json
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..types import Detections, FrameBatch
from .base import Detector, DetectorInfo


class ScriptedDetector(Detector):
    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise ModelError(f"scripted detections file not found: {path}")
        lines = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    lines.append((n, json.loads(line)))
                except json.JSONDecodeError as err:
                    raise ModelError(f"{path}:{n}: not a JSON line: {err.msg} (column {err.colno})") from None
        if not lines or not isinstance(lines[0][1], dict) or "names" not in lines[0][1]:
            raise ModelError(f'{path}: first line must be {{"names": [...]}}')
        header = lines[0][1]
        self.period = float(header.get("period", 0.0))
        self.script: dict[str, tuple[list[float], list[np.ndarray]]] = {}
        rows = []
        for n, row in lines[1:]:
            try:
                rows.append(
                    (str(row["camera"]), float(row["t"]), np.asarray(row["boxes"], np.float32).reshape(-1, 6))
                )
            except (KeyError, TypeError, ValueError) as err:
                raise ModelError(
                    f'{path}:{n}: expected {{"camera": ID, "t": SECONDS, "boxes": '
                    f"[[x1, y1, x2, y2, conf, class], ...]}} ({type(err).__name__}: {err})"
                ) from None
        for camera, t, boxes in sorted(rows, key=lambda r: (r[0], r[1])):
            ts, per_t = self.script.setdefault(camera, ([], []))
            ts.append(t)
            per_t.append(boxes)
        self.info = DetectorInfo(
            name=header.get("model", "scripted"),
            version=str(header.get("version", "1")),
            class_names=tuple(header["names"]),
            imgsz=640,
            backend="scripted",
            device="cpu",
        )

    def detect(self, batch: FrameBatch) -> list[Detections]:
        out = []
        for f in batch.frames:
            ts, boxes = self.script.get(f.camera_id, ([], []))
            t = f.pts_seconds % self.period if self.period > 0 else f.pts_seconds
            i = bisect.bisect_right(ts, t + 1e-6) - 1
            if i < 0:
                out.append(Detections.empty())
                continue
            b = boxes[i]
            out.append(Detections(b[:, :4], b[:, 4], b[:, 5].astype(np.int64)))
        return out
