"""The detector interface: a letterboxed batch in, per-frame Detections out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from ..types import Detections, FrameBatch


@dataclass(frozen=True)
class DetectorInfo:
    name: str
    version: str
    class_names: tuple[str, ...]
    imgsz: int
    backend: str
    device: str


class Detector(ABC):
    """``detect(batch)``, or in two steps that can run in two threads: ``prepare`` (preprocessing,
    while the previous batch is still in the model) and ``run`` (inference, decode, NMS)."""

    info: DetectorInfo

    @abstractmethod
    def detect(self, batch: FrameBatch) -> list[Detections]:
        """Detections for each frame of the batch, in that frame's pixels."""

    def prepare(self, batch: FrameBatch) -> Any:
        return batch

    def run(self, prepared: Any) -> list[Detections]:
        return self.detect(prepared)

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
