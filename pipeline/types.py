"""The data that crosses stage boundaries: FrameBatch, Detections, Tracks, Incident."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

PixelFormat = Literal["rgb24", "nv12"]


@dataclass(frozen=True)
class ColorSpec:
    """How a YUV stream maps to RGB: the matrix (BT.601 / BT.709) and the range (limited / full)."""

    matrix: Literal["bt601", "bt709"] = "bt601"
    full_range: bool = False


@dataclass
class Frame:
    """One decoded, sampled frame of one camera, on CPU or GPU.

    ``rgb24``: (H, W, 3) uint8. ``nv12`` (what NVDEC gives): (H * 3 // 2, W) uint8, the Y plane then
    the interleaved UV plane; ``color`` says how to turn it into RGB.
    """

    camera_id: str
    data: torch.Tensor
    pts_seconds: float
    frame_index: int
    wall_time: float  # Unix time the frame shows: received (live), or the run's start + media time (files)
    pixel_format: PixelFormat = "rgb24"
    color: ColorSpec = ColorSpec()
    decoded_at: float = field(default_factory=time.monotonic)  # time.monotonic() when it was decoded
    # a CUDA event recorded on the camera's stream after the copy that made ``data`` (None on the CPU)
    ready: Any = field(default=None, repr=False)
    generation: int = 0  # which start of its camera made it (a camera restarted live gets a new one)

    def __post_init__(self) -> None:
        d = self.data
        if d.dtype != torch.uint8:
            raise ValueError(f"Frame.data must be uint8, got {d.dtype}")
        if self.pixel_format == "rgb24":
            if d.ndim != 3 or d.shape[2] != 3:
                raise ValueError(f"rgb24 Frame.data must be (H, W, 3), got {tuple(d.shape)}")
        elif d.ndim != 2 or d.shape[0] % 3 or d.shape[1] % 2 or (d.shape[0] * 2 // 3) % 2:
            raise ValueError(f"nv12 Frame.data must be (H * 3 // 2, W) with H, W even, got {tuple(d.shape)}")

    @property
    def height(self) -> int:
        return int(self.data.shape[0]) if self.pixel_format == "rgb24" else int(self.data.shape[0]) * 2 // 3

    @property
    def width(self) -> int:
        return int(self.data.shape[1])

    def pixels(self) -> torch.Tensor:
        """``data``, safe to read on the current CUDA stream: it waits for the camera stream's copy, and
        the allocator keeps the memory until this stream is done with it. Read frames through this."""
        if self.ready is not None:
            stream = torch.cuda.current_stream(self.data.device)
            stream.wait_event(self.ready)
            self.data.record_stream(stream)
        return self.data

    def rgb(self) -> torch.Tensor:
        """(H, W, 3) uint8 RGB on the frame's device (converted from NV12 if need be)."""
        if self.pixel_format == "rgb24":
            return self.pixels()
        from .preprocess import nv12_to_rgb

        rgb = nv12_to_rgb(self.pixels()[None], color=self.color)[0]
        return rgb.round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous()


@dataclass(frozen=True)
class FrameSize:
    """What events need of a camera's frame when there is no frame to show (its last one's size)."""

    camera_id: str
    width: int
    height: int
    index: int = 0


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


NO_VERDICT, UPRIGHT, DOWN = -1, 0, 1


@dataclass
class Detections:
    """Detections of one frame, in that frame's pixels: xyxy (N, 4), confidence (N,), class_id (N,).

    After several detectors are merged (``detect/merge.py``) each row may also carry a posture verdict
    (``down``: NO_VERDICT, UPRIGHT or DOWN, with ``down_conf``) and ``sources``, a bit per detector of
    the set whose detections made it (bit i: the i-th model). One detector alone leaves them unset.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    down: np.ndarray | None = None
    down_conf: np.ndarray | None = None
    sources: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        self.confidence = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        self.class_id = np.asarray(self.class_id, dtype=np.int64).reshape(-1)
        n = len(self.xyxy)
        self.down = np.full(n, NO_VERDICT, np.int8) if self.down is None else np.asarray(self.down, np.int8)
        self.down_conf = (
            np.zeros(n, np.float32) if self.down_conf is None else np.asarray(self.down_conf, np.float32)
        )
        self.sources = np.ones(n, np.int64) if self.sources is None else np.asarray(self.sources, np.int64)
        lengths = {len(a) for a in (self.confidence, self.class_id, self.down, self.down_conf, self.sources)}
        if lengths != {n}:
            raise ValueError(
                f"Detections: xyxy has {n} rows but confidence {len(self.confidence)}, "
                f"class_id {len(self.class_id)}, down {len(self.down)}, sources {len(self.sources)}"
            )

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0))

    FIELDS = ("xyxy", "confidence", "class_id", "down", "down_conf", "sources")

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: np.ndarray | slice) -> Detections:
        return Detections(*(getattr(self, k)[index] for k in self.FIELDS))

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
    down: bool | None = None  # a posture model's verdict on this object (None: no model gave one)
    down_confidence: float = 0.0  # that model's confidence in its verdict
    models: tuple[str, ...] = ()  # "name@version" of the detectors whose detections made it

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
    down: bool | None = None  # lying (posture model or box shape) where the object is a person
    models: tuple[str, ...] = ()


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
    wall_offset: float = 0.0  # Unix time = media time + this; one value for all of an incident's steps
