"""Hard negatives from the operators' verdicts: the frames of false alarms, added to a dataset.

Each false alarm an operator marked in the console (``console/store.py``, ``verdicts``) names the
frame the camera showed when the incident started (``evidence.frame_jpeg_sha256``: nothing drawn on
it; the sink fetches it from the edge) and the boxes of the objects that raised it. ``add_negatives``
writes each such frame into the dataset's ``train`` split with its labels: the dataset's teacher's
detections (where the dataset has one) without those that match the false objects (IoU 0.5 or
more), so the model learns that what it saw there is not there, and the rest of the frame stays
labelled for a person to check (``safecity dataset import``). Without a teacher the label file is
empty (the frame is background).

Only false alarms of the kind a detector can learn from are taken by default: ``detection`` (the
model saw something that is not there). A ``behaviour`` false alarm (the objects are right, nothing
wrong happened) is a lesson for the rules, not the model: labelling its person as background would
teach the model to miss people. ``reason="any"`` takes every false alarm.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import ConfigError
from .dataset import IMAGE_SUFFIX, load_info, teacher_model, write_info

Reason = Literal["detection", "behaviour", "any"]
MATCH_IOU = 0.5


@dataclass
class Added:
    added: list[str] = field(default_factory=list)  # image names written
    missing: list[str] = field(default_factory=list)  # incidents whose frame the sink has not (yet)
    no_frame: list[str] = field(default_factory=list)  # incidents whose edge kept no frame (never will)
    unusable: list[str] = field(default_factory=list)  # a stored frame that is not the camera's JPEG
    skipped: int = 0  # false alarms of another reason, or already in the dataset


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _box(line: str, w: int, h: int) -> tuple[float, float, float, float]:
    _, cx, cy, bw, bh = (float(v) for v in line.split())
    return (cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h


def image_name(example: dict[str, Any]) -> str:
    """A file-name-safe, unique name for an example's image: fa_CAMERA_INCIDENT_HASH (the hash of
    the edge and incident id: two that read alike once made safe stay two)."""
    digest = hashlib.sha256(f"{example['source']}\0{example['incident_id']}".encode()).hexdigest()[:12]
    raw = f"fa_{example['camera_id']}_{example['incident_id']}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", raw)[:120] + f"_{digest}"


def _frame(jpeg: bytes, width: int, height: int) -> Any:
    """The stored frame as an RGB image, if it is a JPEG of the size the event reports (else None:
    not the camera's frame, however it got there)."""
    from PIL import Image

    if not jpeg.startswith(b"\xff\xd8"):
        return None
    try:
        img = Image.open(io.BytesIO(jpeg))
        if img.format != "JPEG" or img.size != (width, height):
            return None
        return img.convert("RGB")
    except (OSError, Image.DecompressionBombError, ValueError):
        return None


def add_negatives(
    dataset: Path,
    examples: list[dict[str, Any]],
    frame: Any,
    *,
    reason: Reason = "detection",
) -> Added:
    """Write the false alarms of ``examples`` (the console's verdicts) into ``dataset``.
    ``frame(sha256) -> bytes | None``: the JPEG of a frame the sink keeps (None: not there)."""
    info = load_info(dataset)
    teacher = None
    if info.teacher:
        try:
            teacher, _ = teacher_model(info.teacher, conf=info.teacher_conf or 0.3)
        except ConfigError as err:
            raise ConfigError(f"{dataset}: its teacher (dataset.json): {err}") from None
        teacher.mapping = {n: k for k, n in enumerate(info.names) if n in teacher.class_names}
    out = Added()
    taken = {n["image"] for n in info.negatives}
    images, labels = dataset / "images" / "train", dataset / "labels" / "train"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    for ex in examples:
        if ex.get("verdict") != "false_alarm" or (reason != "any" and ex.get("reason") != reason):
            out.skipped += 1
            continue
        name = image_name(ex)
        if name in taken:
            out.skipped += 1
            continue
        sha = ex.get("frame_jpeg_sha256")
        if not sha:  # an edge from before 1.3 events: it kept no such frame
            out.no_frame.append(ex["incident_id"])
            continue
        jpeg = frame(sha)
        if jpeg is None:
            out.missing.append(ex["incident_id"])
            continue
        size = ex["event"].get("frame") or {}
        img = _frame(jpeg, int(size.get("width") or 0), int(size.get("height") or 0))
        if img is None:
            out.unusable.append(ex["incident_id"])
            continue
        rgb = np.asarray(img)
        h, w = rgb.shape[:2]
        false_boxes = [tuple(float(v) for v in o["bbox"]) for o in ex["event"].get("objects", [])]
        lines = []
        if teacher is not None:
            import torch

            for line in teacher.labels(torch.from_numpy(rgb.copy())):
                box = _box(line, w, h)
                if not any(_iou(box, fb) >= MATCH_IOU for fb in false_boxes):  # type: ignore[arg-type]
                    lines.append(line)
        img.save(images / f"{name}{IMAGE_SUFFIX}", quality=95)
        (labels / f"{name}.txt").write_text("".join(f"{x}\n" for x in lines))
        info.negatives.append(
            {
                "image": name,
                "source": ex["source"],
                "incident_id": ex["incident_id"],
                "camera_id": ex["camera_id"],
                "type": ex["type"],
                "zone": ex.get("zone"),
                "reason": ex.get("reason") or "",
                "comment": ex.get("comment") or "",
                "false_objects": [
                    {"label": o.get("label"), "bbox": o.get("bbox")} for o in ex["event"].get("objects", [])
                ],
                "frame_jpeg_sha256": sha,
            }
        )
        taken.add(name)
        out.added.append(name)
    if out.added:
        info.counts["train"] = len(list(images.glob(f"*{IMAGE_SUFFIX}")))
        write_info(dataset, info)
    return out


def describe(result: Added, dataset: Path) -> str:
    parts = [f"{dataset}: {len(result.added)} false alarms added as hard negatives"]
    if result.missing:
        parts.append(
            f"{len(result.missing)} not yet (the sink has not fetched their frames from the edge; "
            "run again later)"
        )
    if result.no_frame:
        parts.append(f"{len(result.no_frame)} without a kept frame (their edges are older than events 1.3)")
    if result.unusable:
        parts.append(
            f"{len(result.unusable)} whose stored frame is not a JPEG of the camera's frame size "
            f"(left out: {', '.join(result.unusable[:3])})"
        )
    if result.skipped:
        parts.append(f"{result.skipped} skipped (another verdict or reason, or in the dataset already)")
    return "; ".join(parts)


def check_reason(text: str) -> Reason:
    if text not in ("detection", "behaviour", "any"):
        raise ConfigError(f"--reason: expected detection, behaviour or any; got {text!r}")
    return text  # type: ignore[return-value]


__all__ = ["Added", "add_negatives", "check_reason", "describe", "image_name"]
