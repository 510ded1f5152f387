"""Choose and build the detector backend for a config."""

from __future__ import annotations

from typing import TypedDict

from ..config import Config
from ..devices import resolve_device
from .base import Detector


class ModelSettings(TypedDict):
    """What every YOLO backend's constructor takes from the model config."""

    name: str
    imgsz: int | None
    conf_threshold: float
    iou_threshold: float
    max_det: int


def _onnx_device(asked: str) -> str:
    """``auto`` takes CUDA only when ONNX Runtime has its CUDA provider; a named device must exist."""
    device = resolve_device(asked)
    if asked == "auto" and device.startswith("cuda"):
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return "cpu"
    return device


def create_detector(cfg: Config) -> Detector:
    m = cfg.model
    if m.backend == "scripted":
        from .scripted import ScriptedDetector

        assert m.scripted_detections is not None
        return ScriptedDetector(m.scripted_detections)
    from ..registry import resolve_model_path

    path, name = resolve_model_path(m)
    common = ModelSettings(
        name=name,
        imgsz=m.imgsz,
        conf_threshold=m.conf_threshold,
        iou_threshold=m.iou_threshold,
        max_det=m.max_det,
    )
    if m.backend == "onnxruntime":
        from .onnx_backend import OnnxDetector

        return OnnxDetector(
            path,
            threads=m.threads,
            device=_onnx_device(cfg.device),
            tensorrt=m.tensorrt,
            max_batch=cfg.batching.max_batch_size,
            **common,
        )
    from .torch_backend import TorchDetector

    return TorchDetector(path, device=resolve_device(cfg.device), half=m.half, **common)
