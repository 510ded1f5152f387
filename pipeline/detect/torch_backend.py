"""torch backend: a TorchScript export (deployments, GPU servers without ONNX Runtime) or an
Ultralytics .pt checkpoint (ML engineers trying a fresh one; needs ultralytics at load time).

fp16 on CUDA. A TorchScript model is traced for one batch size and input size: batches are padded
to it and frames letterboxed to the square input, which also suits CUDA graphs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from ..errors import ModelError
from .base import DetectorInfo
from .onnx_backend import parse_class_names
from .yolo import YoloDetector

log = logging.getLogger(__name__)


class TorchDetector(YoloDetector):
    def __init__(
        self,
        path: Path,
        *,
        name: str,
        imgsz: int | None,
        conf_threshold: float,
        iou_threshold: float,
        max_det: int,
        device: str = "cpu",
        half: bool | None = None,
    ) -> None:
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        self.device = torch.device(device)
        self.conf_threshold, self.iou_threshold, self.max_det = conf_threshold, iou_threshold, max_det
        use_half = self.device.type == "cuda" if half is None else half
        self.input_dtype = torch.float16 if use_half else torch.float32
        if path.suffix == ".pt":
            self.model, meta = self._load_checkpoint(path)
            self.static_batch, self.rect = None, True
        else:
            extra = {"config.txt": ""}
            try:
                self.model = torch.jit.load(str(path), map_location=self.device, _extra_files=extra)
            except RuntimeError as err:
                raise ModelError(f"{path}: not a loadable TorchScript model: {err}") from err
            meta = json.loads(extra["config.txt"] or "{}")
            self.static_batch, self.rect = int(meta.get("batch", 1)), False
        self.model = self.model.to(self.device, self.input_dtype).eval()
        self.class_names = parse_class_names(meta.get("names"), path)
        meta_imgsz = meta.get("imgsz", [640, 640])
        self.imgsz = imgsz or int(meta_imgsz[0] if isinstance(meta_imgsz, list) else meta_imgsz)
        if self.static_batch and imgsz and meta_imgsz and imgsz != int(meta_imgsz[0]):
            raise ModelError(
                f"{path} was traced for {meta_imgsz[0]} px input; model.imgsz {imgsz} cannot be used"
            )
        self.end2end = bool(meta.get("end2end", False))
        self.info = DetectorInfo(
            name=name,
            version=str(meta.get("version", "unknown")),
            class_names=self.class_names,
            imgsz=self.imgsz,
            backend="torch" + ("-fp16" if use_half else ""),
            device=device,
        )

    def _load_checkpoint(self, path: Path) -> tuple[torch.nn.Module, dict]:
        """An Ultralytics checkpoint, unpickled the safe way: ``torch.load(weights_only=True)`` with
        only the known model classes allowed (Ultralytics' restricted load); a file that needs
        anything else (code of its own) is refused, never run."""
        try:
            from ultralytics.nn.tasks import torch_safe_load
        except ImportError as err:
            raise ModelError(
                "a .pt checkpoint needs ultralytics installed (or export it to TorchScript)"
            ) from err
        try:
            ckpt, _ = torch_safe_load(str(path), safe_only=True)
        except Exception as err:  # noqa: BLE001 - whatever the unpickler refused or failed on
            raise ModelError(f"{path}: not a checkpoint that loads safely (weights only): {err}") from None
        model = ckpt.get("ema") or ckpt.get("model") if isinstance(ckpt, dict) else None
        if not isinstance(model, torch.nn.Module):
            raise ModelError(f"{path}: holds no model of the known Ultralytics classes")
        model = model.float()
        fuse = getattr(model, "fuse", None)
        model = (fuse() if callable(fuse) else model).eval().to(self.device)
        model.args = {**getattr(model, "args", {}), **(ckpt.get("train_args") or {})}
        names = getattr(model, "names", None)
        meta = {"names": names, "imgsz": [int(getattr(model, "args", {}).get("imgsz", 640))] * 2}
        return model, meta

    @torch.inference_mode()
    def infer(self, images: torch.Tensor) -> torch.Tensor:
        out = self.model(images)
        if isinstance(out, (list, tuple)):  # eval-mode checkpoints return (predictions, features)
            out = out[0]
        return out
