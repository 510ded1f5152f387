"""ONNX Runtime backend (CPU provider here; CUDA / TensorRT providers on GPU servers)."""

from __future__ import annotations

import ast
import logging
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import BackendUnavailableError, ModelError
from ..preprocess import letterbox_frames
from ..types import Detections, FrameBatch
from .base import Detector, DetectorInfo
from .decode import decode_yolo

log = logging.getLogger(__name__)


def read_onnx_metadata(path: Path) -> dict[str, str]:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # onnx raises several types for a bad file
        raise ModelError(f"{path}: not a readable ONNX model: {err}") from err
    return {p.key: p.value for p in model.metadata_props}


def parse_class_names(meta: dict[str, str], path: Path) -> tuple[str, ...]:
    raw = meta.get("names")
    if raw is None:
        raise ModelError(f"{path}: ONNX metadata has no 'names' (export it with Ultralytics)")
    names = ast.literal_eval(raw)
    if isinstance(names, dict):
        return tuple(str(names[k]) for k in sorted(names))
    return tuple(str(n) for n in names)


class OnnxDetector(Detector):
    def __init__(
        self,
        path: Path,
        *,
        name: str,
        imgsz: int | None,
        conf_threshold: float,
        iou_threshold: float,
        max_det: int,
        threads: int = 0,
        device: str = "cpu",
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise BackendUnavailableError(
                "backend 'onnxruntime' needs the onnxruntime package: pip install -e .[cpu] (or .[gpu])"
            ) from err
        if not path.is_file():
            raise ModelError(f"model file not found: {path} (fetch it with: safecity models fetch NAME)")
        meta = read_onnx_metadata(path)
        self.class_names = parse_class_names(meta, path)
        meta_imgsz = ast.literal_eval(meta.get("imgsz", "[640, 640]"))
        self.imgsz = imgsz or int(meta_imgsz[0])
        self.end2end = meta.get("end2end", "False") == "True"
        self.conf_threshold, self.iou_threshold, self.max_det = conf_threshold, iou_threshold, max_det
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if device.startswith("cuda"):
            dev_id = int(device.split(":")[1]) if ":" in device else 0
            providers: list = [("CUDAExecutionProvider", {"device_id": dev_id}), "CPUExecutionProvider"]
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendUnavailableError(
                    f"device {device} asked for, but ONNX Runtime has no CUDA provider "
                    f"(available: {ort.get_available_providers()}); install onnxruntime-gpu"
                )
        else:
            providers = ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        in_shape = self.session.get_inputs()[0].shape
        # dynamic height and width: letterbox to the smallest canvas, as Ultralytics does (rect)
        self.rect = not all(isinstance(d, int) for d in in_shape[2:])
        in_type = self.session.get_inputs()[0].type
        self.input_dtype = torch.float16 if "float16" in in_type else torch.float32
        self.device = device
        self.info = DetectorInfo(
            name=name,
            version=meta.get("version", "unknown"),
            class_names=self.class_names,
            imgsz=self.imgsz,
            backend="onnxruntime",
            device=device,
        )

    def infer(self, images: torch.Tensor) -> torch.Tensor:
        """The raw model output for a letterboxed (B, 3, S, S) batch."""
        x = images.to(self.input_dtype).contiguous().cpu().numpy()
        (out,) = self.session.run(None, {self.input_name: x})[:1]
        return torch.from_numpy(np.asarray(out))

    def detect(self, batch: FrameBatch) -> list[Detections]:
        images, lbs = letterbox_frames(batch.frames, size=self.imgsz, rect=self.rect)
        raw = self.infer(images)
        return decode_yolo(
            raw,
            lbs,
            conf_threshold=self.conf_threshold,
            iou_threshold=self.iou_threshold,
            max_det=self.max_det,
            end2end=self.end2end,
        )
