"""Whether two detectors see the same things on the same frames: the check every export must pass.

An export (ONNX from a PyTorch checkpoint, INT8 from a float ONNX model) is a candidate; the model it
was made from is the reference. Both run on the same frames with the threshold lowered by
``CONF_MARGIN``; a reference detection at or above the threshold must be found by the candidate (IoU
>= ``AGREE_IOU``, same class) and a candidate detection at or above it must be the reference's: a
score a hair either side of the threshold is no disagreement about the object. Recall and precision
of the candidate against the reference must both reach ``MIN_AGREEMENT``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..types import Detections, Frame, FrameBatch
from .base import Detector

MIN_AGREEMENT = 0.95
AGREE_IOU = 0.5
CONF_MARGIN = 0.2  # the other model's detections down to 80 % of the threshold count for agreement


@dataclass
class Agreement:
    frames: int
    reference_detections: int
    candidate_detections: int
    matched: int
    recall: float  # of the reference's detections, found by the candidate
    precision: float  # of the candidate's detections, also the reference's
    reference_ms: float  # per frame, batch of one, this machine
    candidate_ms: float
    first_mismatch: str | None = None  # the first detection only one of them made, in words

    @property
    def accepted(self) -> bool:
        return self.recall >= MIN_AGREEMENT and self.precision >= MIN_AGREEMENT

    def summary(self) -> str:
        return (
            f"recall {self.recall:.3f}, precision {self.precision:.3f} on {self.frames} frames "
            f"(at least {MIN_AGREEMENT} each)"
        )


def pairs(ref: Detections, got: Detections) -> list[tuple[int, int]]:
    """(ref row, got row) of detections that match (IoU >= 0.5, same class), one to one, greedily."""
    from ..track import greedy_match, iou_matrix

    iou = iou_matrix(ref.xyxy, got.xyxy)
    if iou.size:
        iou[ref.class_id[:, None] != got.class_id[None, :]] = 0
    return [(int(r), int(c)) for r, c in greedy_match(iou, AGREE_IOU)]


def run_on_frames(det: Detector, frames: Sequence[torch.Tensor]) -> tuple[list[Detections], float]:
    """Each frame's detections (batches of one) and the mean milliseconds a frame, after a warm-up."""
    batches = [FrameBatch([Frame("check", f, 0.0, k, 0.0)]) for k, f in enumerate(frames)]
    if batches:
        det.detect(batches[0])
    t0 = time.perf_counter()
    out = [det.detect(b)[0] for b in batches]
    return out, (time.perf_counter() - t0) / max(len(batches), 1) * 1000


def _unmatched(sure: Detections, other: Detections) -> int | None:
    """The first row of ``sure`` with no match in ``other``."""
    found = {r for r, _ in pairs(sure, other)}
    return next((k for k in range(len(sure)) if k not in found), None)


def compare(
    reference: list[Detections],
    candidate: list[Detections],
    *,
    conf: float,
    class_names: Sequence[str] = (),
    timing: tuple[float, float] = (0.0, 0.0),
    names: tuple[str, str] = ("the reference", "the export"),
) -> Agreement:
    """Agreement of ``candidate`` with ``reference`` (each frame's detections, made at ``conf`` lowered
    by ``CONF_MARGIN``), and the first detection only one of them made."""
    sure_ref = [d[d.confidence >= conf] for d in reference]
    sure_got = [d[d.confidence >= conf] for d in candidate]
    found = sum(len(pairs(a, b)) for a, b in zip(sure_ref, candidate, strict=True))
    kept = sum(len(pairs(a, b)) for a, b in zip(sure_got, reference, strict=True))
    n_ref = sum(len(d) for d in sure_ref)
    n_got = sum(len(d) for d in sure_got)
    first = None
    for k, (sr, sg) in enumerate(zip(sure_ref, sure_got, strict=True)):
        for sure, other, who, missing in (
            (sr, candidate[k], names[0], names[1]),
            (sg, reference[k], names[1], names[0]),
        ):
            row = _unmatched(sure, other)
            if row is not None and first is None:
                cls = int(sure.class_id[row])
                label = class_names[cls] if cls < len(class_names) else f"class {cls}"
                box = ", ".join(f"{v:.0f}" for v in sure.xyxy[row])
                score = f"{sure.confidence[row]:.2f}"
                first = f"frame {k}: {who} sees {label} ({score}) at [{box}], {missing} does not"
    return Agreement(
        len(reference),
        n_ref,
        n_got,
        found,
        1.0 if n_ref == 0 else found / n_ref,
        1.0 if n_got == 0 else kept / n_got,
        round(timing[0], 1),
        round(timing[1], 1),
        first,
    )


def agreement(
    reference: Detector,
    candidate: Detector,
    frames: Sequence[torch.Tensor],
    *,
    conf: float,
    names: tuple[str, str] = ("the reference", "the export"),
) -> Agreement:
    """Run both detectors (built with ``conf_threshold = conf * (1 - CONF_MARGIN)``) on ``frames``."""
    ref, ref_ms = run_on_frames(reference, frames)
    got, got_ms = run_on_frames(candidate, frames)
    return compare(
        ref, got, conf=conf, class_names=reference.info.class_names, timing=(ref_ms, got_ms), names=names
    )


def export_agreement(
    checkpoint: Path, export: Path, frames: Sequence[torch.Tensor], *, imgsz: int, conf: float
) -> Agreement:
    """An export (candidate: ONNX, or TorchScript) against the PyTorch checkpoint it was made from."""
    from .onnx_backend import OnnxDetector
    from .torch_backend import TorchDetector

    low = conf * (1 - CONF_MARGIN)
    settings: dict[str, Any] = {"imgsz": imgsz, "conf_threshold": low, "iou_threshold": 0.7, "max_det": 300}
    ref = TorchDetector(checkpoint, name="checkpoint", half=False, **settings)
    onnx = export.suffix == ".onnx"
    got: Detector = (
        OnnxDetector(export, name="export", **settings)
        if onnx
        else TorchDetector(export, name="export", half=False, **settings)
    )
    try:
        what = "the ONNX export" if onnx else "the TorchScript export"
        return agreement(ref, got, frames, conf=conf, names=("the checkpoint", what))
    finally:
        got.close()
        ref.close()
