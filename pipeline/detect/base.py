"""The detector interface: a letterboxed batch in, per-frame Detections out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

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
    info: DetectorInfo

    @abstractmethod
    def detect(self, batch: FrameBatch) -> list[Detections]:
        """Detections for each frame of the batch, in that frame's pixels."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
