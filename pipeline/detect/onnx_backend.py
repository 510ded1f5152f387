"""ONNX Runtime backend: CPU provider here; CUDA / TensorRT providers with IOBinding on GPU servers."""

from __future__ import annotations

import ast
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import BackendUnavailableError, ModelError
from .base import DetectorInfo
from .darknet import FAMILY as FAMILY_V3
from .decode_yolov3 import heads_from_metadata, yolov3_predictions
from .yolo import YoloDetector

log = logging.getLogger(__name__)


def read_onnx_metadata(path: Path) -> tuple[dict[str, str], str, bool]:
    """The model's metadata (Ultralytics writes names, imgsz ...), the name of its input, and whether
    that input has symbolic (dynamic) dimensions."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # onnx raises several types for a bad file
        raise ModelError(f"{path}: not a readable ONNX model: {err}") from err
    if not model.graph.input:
        raise ModelError(f"{path}: the model has no input")
    first = model.graph.input[0]
    dynamic = any(d.dim_param or not d.dim_value for d in first.type.tensor_type.shape.dim)
    return {p.key: p.value for p in model.metadata_props}, first.name, dynamic


def tensorrt_options(
    *, device_id: int, input_name: str, imgsz: int, max_batch: int, cache: str, dynamic: bool = True
) -> dict[str, Any]:
    """The TensorRT provider's options: fp16, engines cached, and one optimisation profile of square
    ``imgsz`` inputs from batch 1 to ``max_batch`` (the muxer's largest batch). Inputs are always
    letterboxed to that square with TensorRT: a rect canvas (say 288x640) would fall outside the
    profile and make TensorRT build a new engine, or fail."""
    shape = f"3x{imgsz}x{imgsz}"
    options: dict[str, Any] = {
        "device_id": device_id,
        "trt_fp16_enable": True,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": cache,
        "trt_timing_cache_enable": True,
    }
    if dynamic:  # a static export has its one shape; a profile there could only disagree with it
        options["trt_profile_min_shapes"] = f"{input_name}:1x{shape}"
        options["trt_profile_opt_shapes"] = f"{input_name}:{max(1, max_batch // 2)}x{shape}"
        options["trt_profile_max_shapes"] = f"{input_name}:{max_batch}x{shape}"
    return options


def uses_rect_canvas(input_shape: Any, *, tensorrt: bool) -> bool:
    """A model with dynamic height and width gets the smallest stride-multiple canvas (Ultralytics'
    rect); with TensorRT always the square its optimisation profile is built for."""
    return not tensorrt and not all(isinstance(d, int) for d in input_shape[2:])


def cuda_versions(ort: Any) -> str:
    """What ONNX Runtime was built for and what torch has, for an error that says why CUDA failed."""
    try:
        from onnxruntime.capi import build_and_package_info as info

        cuda = getattr(info, "cuda_version", None)
        built = f"CUDA {cuda}" if cuda else f"the CPU only (package {getattr(info, 'package_name', '?')})"
    except ImportError:
        built = "CUDA ?"
    torch_cuda = f"torch {torch.__version__} has CUDA {torch.version.cuda}"
    return f"onnxruntime {ort.__version__} built for {built}; {torch_cuda}"


def parse_class_names(raw: Any, path: Path) -> tuple[str, ...]:
    """Class names from Ultralytics metadata: a dict {0: 'person', ...} (or its repr), or a list."""
    if raw is None:
        raise ModelError(f"{path}: model metadata has no 'names' (export it with Ultralytics)")
    names = ast.literal_eval(raw) if isinstance(raw, str) else raw
    if isinstance(names, dict):
        return tuple(str(names[k]) for k in sorted(names, key=int))
    return tuple(str(n) for n in names)


class OnnxDetector(YoloDetector):
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
        tensorrt: bool = False,
        engine_cache: Path | None = None,
        max_batch: int = 32,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise BackendUnavailableError(
                "backend 'onnxruntime' needs the onnxruntime package: pip install -e .[cpu] (or .[gpu])"
            ) from err
        if not path.is_file():
            raise ModelError(f"model file not found: {path} (fetch it with: safecity models fetch NAME)")
        meta, self.input_name, self.dynamic_input = read_onnx_metadata(path)
        self.max_batch = max_batch
        self.class_names = parse_class_names(meta.get("names"), path)
        meta_imgsz = ast.literal_eval(meta.get("imgsz", "[640, 640]"))
        self.imgsz = imgsz or int(meta_imgsz[0])
        self.end2end = meta.get("end2end", "False") == "True"
        self.conf_threshold, self.iou_threshold, self.max_det = conf_threshold, iou_threshold, max_det
        self.device = torch.device(device)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = self._providers(ort, path, tensorrt, engine_cache)
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        started = self.session.get_providers()
        if self.device.type == "cuda" and "CUDAExecutionProvider" not in started:
            raise BackendUnavailableError(
                f"ONNX Runtime could not start its CUDA provider for {path} ({cuda_versions(ort)}): the "
                "CUDA major versions must match (pip install the onnxruntime-gpu build for torch's CUDA)"
            )
        if tensorrt and "TensorrtExecutionProvider" not in started:  # asked for by name: never a fallback
            raise BackendUnavailableError(
                f"ONNX Runtime could not start its TensorRT provider for {path} (is TensorRT 10's "
                f"libnvinfer installed?); started: {started}"
            )
        inp = self.session.get_inputs()[0]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.family = meta.get("family", "yolov8")
        if self.family == FAMILY_V3:
            self.anchor_heads = heads_from_metadata(meta.get("heads", "[]"))
        elif self.family != "yolov8":
            raise ModelError(f"{path}: output family {self.family!r} is not one this pipeline decodes")
        self.rect = uses_rect_canvas(inp.shape, tensorrt=tensorrt)
        self.static_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self.input_dtype = torch.float16 if "float16" in inp.type else torch.float32
        self.info = DetectorInfo(
            name=name,
            version=meta.get("version", "unknown"),
            class_names=self.class_names,
            imgsz=self.imgsz,
            backend="onnxruntime-tensorrt" if tensorrt else "onnxruntime",
            device=device,
        )
        if (
            self.device.type == "cuda"
        ):  # build TensorRT's engine (or CUDA's kernels) now, not on a camera's batch
            warm = torch.zeros((self.static_batch or 1, 3, self.imgsz, self.imgsz), device=self.device)
            self.infer(warm)

    def _providers(self, ort: Any, path: Path, tensorrt: bool, engine_cache: Path | None) -> list[Any]:
        if self.device.type != "cuda":
            if tensorrt:
                raise BackendUnavailableError("the TensorRT provider needs device: cuda")
            return ["CPUExecutionProvider"]
        available = ort.get_available_providers()
        if "CUDAExecutionProvider" not in available:
            raise BackendUnavailableError(
                f"device {self.device} asked for, but ONNX Runtime has no CUDA provider "
                f"(available: {available}; {cuda_versions(ort)}); install onnxruntime-gpu, not onnxruntime"
            )
        dev = self.device.index or 0
        providers: list[Any] = []
        if tensorrt:
            if "TensorrtExecutionProvider" not in available:
                raise BackendUnavailableError(
                    "model.tensorrt asked for, but ONNX Runtime has no TensorRT provider"
                )
            cache = str(engine_cache or path.parent / "trt-cache")
            options = tensorrt_options(
                device_id=dev,
                input_name=self.input_name,
                imgsz=self.imgsz,
                max_batch=self.max_batch,
                cache=cache,
            )
            providers.append(("TensorrtExecutionProvider", options))
        providers.append(("CUDAExecutionProvider", {"device_id": dev}))
        return providers

    def infer(self, images: torch.Tensor) -> torch.Tensor:
        outputs = self.infer_outputs(images)
        if self.family == FAMILY_V3:  # anchor heads -> the shared (B, 4 + nc, N) layout
            return yolov3_predictions(outputs, self.anchor_heads)
        return outputs[0]

    def infer_outputs(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Every output of the model, as it gives them, on the model's device."""
        x = images.to(self.input_dtype).contiguous()
        if self.device.type != "cuda":
            outs = self.session.run(self.output_names, {self.input_name: x.cpu().numpy()})
            return [torch.from_numpy(np.asarray(o)) for o in outs]
        # IOBinding: ONNX Runtime reads the torch tensor where it lies and writes its outputs on the GPU
        io = self.session.io_binding()
        np_dtype = np.float16 if self.input_dtype == torch.float16 else np.float32
        dev = self.device.index or 0
        io.bind_input(self.input_name, "cuda", dev, np_dtype, tuple(x.shape), x.data_ptr())
        for name in self.output_names:
            io.bind_output(name, "cuda", dev)
        torch.cuda.current_stream(
            self.device
        ).synchronize()  # x is ready before ONNX Runtime's stream reads it
        self.session.run_with_iobinding(io)
        outs = io.get_outputs()
        if all(hasattr(o, "__dlpack__") for o in outs):
            return [torch.from_dlpack(o) for o in outs]
        return [torch.from_numpy(o).to(self.device) for o in io.copy_outputs_to_cpu()]
