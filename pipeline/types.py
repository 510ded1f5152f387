"""The data that crosses stage boundaries: FrameBatch, Detections, Tracks, Incident."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch


@dataclass
class Frame:
    """One decoded, sampled frame of one camera: RGB, (H, W, 3) uint8, on CPU or GPU."""

    camera_id: str
    data: torch.Tensor
    pts_seconds: float
    frame_index: int
    wall_time: float

    def __post_init__(self) -> None:
        if self.data.ndim != 3 or self.data.shape[2] != 3 or self.data.dtype != torch.uint8:
            raise ValueError(
                f"Frame.data must be (H, W, 3) uint8, got {tuple(self.data.shape)} {self.data.dtype}"
            )

    @property
    def height(self) -> int:
        return int(self.data.shape[0])

    @property
    def width(self) -> int:
        return int(self.data.shape[1])


@dataclass
class FrameBatch:
    """Frames of several cameras analysed together.

    Cameras differ in resolution, so frames are kept as a list and become one tensor only after
    letterboxing (see preprocess). Per-frame metadata lines up with ``frames``.
    """

    frames: list[Frame]

    def __post_init__(self) -> None:
        if not self.frames:
            raise ValueError("FrameBatch needs at least one frame")

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def camera_ids(self) -> list[str]:
        return [f.camera_id for f in self.frames]

    @property
    def device(self) -> torch.device:
        return self.frames[0].data.device

    def __repr__(self) -> str:
        shapes = ", ".join(f"{f.camera_id}:{f.height}x{f.width}" for f in self.frames)
        return f"FrameBatch(n={len(self.frames)}, device={self.device}, [{shapes}])"


@dataclass
class Detections:
    """Detections of one frame, in that frame's pixels: xyxy (N, 4), confidence (N,), class_id (N,)."""

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        self.confidence = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        self.class_id = np.asarray(self.class_id, dtype=np.int64).reshape(-1)
        n = len(self.xyxy)
        if len(self.confidence) != n or len(self.class_id) != n:
            raise ValueError(
                f"Detections: xyxy has {n} rows but confidence {len(self.confidence)}, "
                f"class_id {len(self.class_id)}"
            )

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0))

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: np.ndarray | slice) -> Detections:
        return Detections(self.xyxy[index], self.confidence[index], self.class_id[index])

    def __repr__(self) -> str:
        return f"Detections(n={len(self)})"


@dataclass
class Track:
    """A tracked object in one camera at one sampled frame."""

    track_id: int
    xyxy: np.ndarray
    confidence: float
    class_id: int
    label: str
    age_frames: int = 1

    @property
    def bottom_centre(self) -> tuple[float, float]:
        x1, _, x2, y2 = (float(v) for v in self.xyxy)
        return ((x1 + x2) / 2.0, y2)


IncidentStatus = Literal["start", "update", "end"]


@dataclass
class TrackedObject:
    track_id: int
    label: str
    confidence: float
    bbox_xyxy: tuple[float, float, float, float]


@dataclass
class Incident:
    """One lifecycle step (start / update / end) of one incident, before it becomes an event."""

    incident_id: str
    type: str
    status: IncidentStatus
    severity: Literal["low", "medium", "high", "critical"]
    camera_id: str
    zone: str | None
    started_at: float
    emitted_at: float
    ended_at: float | None
    objects: list[TrackedObject] = field(default_factory=list)
    confidence: float = 0.0
    frame_index: int = 0
    details: dict[str, float | int | str] = field(default_factory=dict)
