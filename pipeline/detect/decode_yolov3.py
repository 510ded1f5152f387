"""The anchor-based YOLOv3 output family (Darknet's yolo layers): raw heads -> boxes and scores.

Each head is (B, anchors * (5 + classes), H, W) at its stride. Per cell and anchor:
``cx = (sigmoid(tx) + col) * stride``, ``cy = (sigmoid(ty) + row) * stride``,
``w = anchor_w * exp(tw)``, ``h = anchor_h * exp(th)`` (anchors in input pixels), and each class's
score is ``sigmoid(objectness) * sigmoid(class)``. The result has the YOLOv8 layout,
(B, 4 + classes, boxes) with centre, size and class scores in input pixels, so NMS and the mapping
back through the letterbox are ``decode_yolo``'s, shared by every family.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AnchorHead:
    anchors: tuple[tuple[float, float], ...]
    stride: int


def heads_from_metadata(raw: str) -> list[AnchorHead]:
    """The heads an exported model's metadata lists (``[{"anchors": [[w, h], ...], "stride": s}, ...]``)."""
    return [
        AnchorHead(tuple((float(w), float(h)) for w, h in h["anchors"]), int(h["stride"]))
        for h in json.loads(raw)
    ]


def yolov3_predictions(outputs: Sequence[torch.Tensor], heads: Sequence[AnchorHead]) -> torch.Tensor:
    """The heads' raw outputs -> (B, 4 + classes, sum of H * W * anchors), on the outputs' device."""
    if len(outputs) != len(heads):
        raise ValueError(f"{len(outputs)} outputs for a model of {len(heads)} heads")
    parts = []
    for raw, head in zip(outputs, heads, strict=True):
        b, c, h, w = raw.shape
        na = len(head.anchors)
        no = c // na
        p = raw.float().view(b, na, no, h, w)
        rows = torch.arange(h, device=raw.device, dtype=torch.float32).view(1, 1, h, 1)
        cols = torch.arange(w, device=raw.device, dtype=torch.float32).view(1, 1, 1, w)
        anchors = torch.tensor(head.anchors, device=raw.device, dtype=torch.float32).view(1, na, 2, 1, 1)
        cx = (p[:, :, 0].sigmoid() + cols) * head.stride
        cy = (p[:, :, 1].sigmoid() + rows) * head.stride
        wh = p[:, :, 2:4].exp() * anchors
        scores = p[:, :, 4:5].sigmoid() * p[:, :, 5:].sigmoid()
        boxes = torch.cat([cx[:, :, None], cy[:, :, None], wh, scores], dim=2)  # (B, na, 4 + nc, H, W)
        parts.append(boxes.permute(0, 2, 1, 3, 4).reshape(b, no - 1, na * h * w))
    return torch.cat(parts, dim=2)
