"""Decode YOLO head outputs and run NMS on the outputs' device; one packed copy to host per batch."""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import batched_nms

from ..preprocess import Letterbox, boxes_to_frame
from ..types import Detections

MAX_WH = 7680  # class offset for class-aware NMS, as in Ultralytics


def decode_yolo(
    raw: torch.Tensor,
    letterboxes: list[Letterbox],
    *,
    conf_threshold: float,
    iou_threshold: float,
    max_det: int,
    end2end: bool = False,
) -> list[Detections]:
    """Turn a (B, 4 + nc, anchors) YOLO output (cx, cy, w, h, class scores) into Detections.

    ``end2end`` outputs are (B, max_det, 6) rows of x1, y1, x2, y2, score, class with NMS done.
    """
    if raw.ndim != 3 or raw.shape[0] != len(letterboxes):
        raise ValueError(f"expected a (B={len(letterboxes)}, C, N) output, got {tuple(raw.shape)}")
    raw = raw.float()
    rows: list[torch.Tensor] = []
    for b, lb in enumerate(letterboxes):
        if end2end:
            p = raw[b]
            p = p[p[:, 4] > conf_threshold][:max_det]
            xyxy, conf, cls = p[:, :4], p[:, 4], p[:, 5]
        else:
            p = raw[b].T  # (anchors, 4 + nc)
            scores, cls_idx = p[:, 4:].max(dim=1)
            keep = scores > conf_threshold
            p, conf, cls = p[keep], scores[keep], cls_idx[keep].float()
            cxcywh = p[:, :4]
            xyxy = torch.cat([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], dim=1)
            if len(conf) > 30_000:
                top = conf.topk(30_000).indices
                xyxy, conf, cls = xyxy[top], conf[top], cls[top]
            keep_idx = batched_nms(xyxy, conf, cls.long(), iou_threshold)[:max_det]
            xyxy, conf, cls = xyxy[keep_idx], conf[keep_idx], cls[keep_idx]
        xyxy = boxes_to_frame(xyxy, lb)
        idx = torch.full_like(conf, float(b))
        rows.append(torch.cat([idx[:, None], xyxy, conf[:, None], cls[:, None]], dim=1))
    packed = torch.cat(rows).cpu().numpy() if rows else np.zeros((0, 7), np.float32)  # one copy per batch
    out = []
    for b in range(len(letterboxes)):
        r = packed[packed[:, 0] == b]
        out.append(Detections(r[:, 1:5], r[:, 5], r[:, 6].astype(np.int64)))
    return out
