"""What every YOLO backend shares: letterbox the batch on its device, run the model, decode + NMS."""

from __future__ import annotations

import contextlib
import dataclasses
from abc import abstractmethod
from dataclasses import dataclass

import torch

from ..preprocess import Letterbox, letterbox_frames
from ..types import Detections, Frame, FrameBatch
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
    bytes_to_host: int = 0  # device -> host bytes of detections (frames never come back on the GPU path)
    batches_run: int = 0
    conf_threshold: float
    iou_threshold: float
    max_det: int

    @abstractmethod
    def infer(self, images: torch.Tensor) -> torch.Tensor:
        """The raw model output, on the model's device, for a letterboxed (B, 3, H, W) batch."""

    def detect(self, batch: FrameBatch) -> list[Detections]:
        return self.run(self.prepare(batch))

    def canvas_key(self) -> tuple[object, ...]:
        """Detectors with the same key letterbox a batch identically: the set does it once for them."""
        return (self.imgsz, self.rect, str(self.device), self.input_dtype)

    def prepare(self, batch: FrameBatch) -> Prepared:
        """Letterbox (and convert NV12) on the frames' device.

        On a GPU this runs on its own CUDA stream; ``run`` waits for it with an event, so
        preprocessing of the next batch overlaps inference of this one.
        """
        stream = self._cuda_stream("_prep_stream")
        with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            frames = [self._on_device(f) for f in batch.frames]
            images, lbs = letterbox_frames(frames, size=self.imgsz, rect=self.rect)
            images = images.to(self.device, self.input_dtype, non_blocking=True)
            event = None
            if stream is not None:
                event = torch.cuda.Event()
                event.record(stream)
        return Prepared(images, lbs, event)

    def run(self, prepared: Prepared) -> list[Detections]:
        """Inference, decode and NMS of the prepared frames (its ``rows`` where given), in chunks of the
        model's batch, on a CUDA stream of their own (on a GPU): not the default stream, which other
        work (a camera's decoder given stream 0, snapshots) may use."""
        out: list[Detections] = []
        self.batches_run += 1
        stream = self._cuda_stream("_infer_stream")
        with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            images, lbs = prepared.images, prepared.letterboxes
            if prepared.ready is not None:
                current = torch.cuda.current_stream(self.device)
                current.wait_event(prepared.ready)
                images.record_stream(current)  # not reused while inference reads it
            if prepared.rows is not None:
                images = images[torch.as_tensor(prepared.rows, device=images.device)]
                lbs = [lbs[i] for i in prepared.rows]
            step = self.static_batch or len(lbs) or 1
            for i in range(0, len(lbs), step):
                chunk = images[i : i + step]
                n = len(chunk)
                if self.static_batch and n < self.static_batch:
                    chunk = torch.cat([chunk, chunk.new_zeros((self.static_batch - n, *chunk.shape[1:]))])
                raw = self.infer(chunk)[:n]
                out += decode_yolo(
                    raw,
                    lbs[i : i + step],
                    conf_threshold=self.conf_threshold,
                    iou_threshold=self.iou_threshold,
                    max_det=self.max_det,
                    end2end=self.end2end,
                )
        if self.device.type == "cuda":  # detections come back as one packed float32 (N, 7) copy per chunk
            self.bytes_to_host += sum(len(d) for d in out) * 7 * 4
        return out

    def _cuda_stream(self, name: str) -> torch.cuda.Stream | None:
        """This detector's CUDA stream called ``name`` (one for preprocessing, one for inference): from
        torch's high-priority pool, apart from the low-priority streams the cameras decode on."""
        if self.device.type != "cuda":
            return None
        stream = getattr(self, name, None)
        if stream is None:
            stream = torch.cuda.Stream(self.device, priority=-1)
            setattr(self, name, stream)
        return stream

    def _on_device(self, frame: Frame) -> Frame:
        """A frame decoded on the CPU (PyAV) is uploaded as it is, 8-bit, so that the conversion and
        resize run on the model's device too."""
        if self.device.type == "cuda" and frame.data.device.type == "cpu":
            return dataclasses.replace(frame, data=frame.data.to(self.device))
        return frame


@dataclass
class Prepared:
    images: torch.Tensor  # (B, 3, H, W), one row per frame of the batch
    letterboxes: list[Letterbox]
    ready: torch.cuda.Event | None
    rows: list[int] | None = None  # the frames a detector runs on (cameras choose detectors); None: all
