"""Tracking accuracy where the annotation has boxes: MOTA and IDF1 (py-motmetrics, the CLEAR MOT and
ID measures as MOTChallenge computes them), on the frames both the truth and the run cover."""

from __future__ import annotations

from typing import Any

import numpy as np

from .annotations import Boxes

MATCH_IOU = 0.5  # a predicted box is a candidate for a true one when their IoU is at least this


def iou_distances(
    gt: list[tuple[int, float, float, float, float]], hyp: list[tuple[int, float, float, float, float]]
) -> np.ndarray:
    """1 - IoU between each true and predicted box, NaN (no match allowed) below ``MATCH_IOU``: what
    ``motmetrics.distances.iou_matrix`` gives (it calls ``np.asfarray``, gone in NumPy 2)."""
    from ..track import iou_matrix

    a = np.array([b[1:] for b in gt], dtype=np.float64).reshape(-1, 4)
    b = np.array([h[1:] for h in hyp], dtype=np.float64).reshape(-1, 4)
    iou = iou_matrix(a, b).astype(np.float64)
    dist = 1.0 - iou
    dist[iou < MATCH_IOU - 1e-6] = np.nan
    return dist


def track_scores(truth: Boxes, predicted: Boxes, *, frames: list[int] | None = None) -> dict[str, Any]:
    """MOTA, IDF1 and their parts over ``frames`` (default: every frame the truth has boxes in or
    the prediction covers). ``predicted`` has the same shape as ``truth``: frame -> [(track id, x1, y1,
    x2, y2)]; a frame missing from it had no detections."""
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=True)
    for frame in frames if frames is not None else sorted(set(truth) | set(predicted)):
        gt = truth.get(frame, [])
        hyp = predicted.get(frame, [])
        acc.update([g[0] for g in gt], [h[0] for h in hyp], iou_distances(gt, hyp))
    names = ["mota", "motp", "idf1", "num_switches", "num_misses", "num_false_positives", "num_objects"]
    summary = mm.metrics.create().compute(acc, metrics=names, name="run")
    row = summary.loc["run"]
    out = {}
    for name in names:
        value = float(row[name])
        out[name] = int(value) if name.startswith("num_") else (None if np.isnan(value) else round(value, 4))
    return out
