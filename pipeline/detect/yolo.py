"""What every YOLO backend shares: letterbox the batch on its device, run the model, decode + NMS."""

from __future__ import annotations

from abc import abstractmethod

import torch

from ..preprocess import letterbox_frames
from ..types import Detections, FrameBatch
from .base import Detector
from .decode import decode_yolo


class YoloDetector(Detector):
    """Subclasses load the model, set the attributes below and implement ``infer``."""

    imgsz: int
    rect: bool  # dynamic height/width: smallest stride-multiple canvas; else the square imgsz
    static_batch: int | None  # a model traced for one batch size: batches are padded to it
    input_dtype: torch.dtype
    device: torch.device
    end2end: bool = False
    conf_threshold: float
    iou_threshold: float
    max_det: int

    @abstractmethod
    def infer(self, images: torch.Tensor) -> torch.Tensor:
        """The raw model output, on the model's device, for a letterboxed (B, 3, H, W) batch."""

    def detect(self, batch: FrameBatch) -> list[Detections]:
        out: list[Detections] = []
        step = self.static_batch or len(batch)
        for i in range(0, len(batch), step):
            frames = batch.frames[i : i + step]
            images, lbs = letterbox_frames(frames, size=self.imgsz, rect=self.rect)
            images = images.to(self.device, self.input_dtype, non_blocking=True)
            n = len(frames)
            if self.static_batch and n < self.static_batch:
                pad = images.new_zeros((self.static_batch - n, *images.shape[1:]))
                images = torch.cat([images, pad])
            raw = self.infer(images)[:n]
            out += decode_yolo(
                raw,
                lbs,
                conf_threshold=self.conf_threshold,
                iou_threshold=self.iou_threshold,
                max_det=self.max_det,
                end2end=self.end2end,
            )
        return out
