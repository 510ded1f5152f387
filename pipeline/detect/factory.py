"""Choose and build the detector backend for a config."""

from __future__ import annotations

from dataclasses import replace
from typing import TypedDict

from ..config import Config, ModelConfig
from ..devices import inference_workers, model_threads, resolve_device
from ..errors import ConfigError, ModelError
from ..metrics import Metrics
from .base import Detector
from .detector_set import DetectorSet, SetMember
from .roles import role_map


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


def check_model_names(cfg: Config) -> None:
    """Every ``models[].name`` is in the manifest (ConfigError naming it and the known ones)."""
    from ..registry import load_manifest, manifest_path

    known = load_manifest()
    for m in cfg.models:
        if m.name is not None and "@" in m.name:
            from ..ml.versions import load_version

            try:
                load_version(m.name)
            except ModelError as err:
                raise ConfigError(f"models[{m.key}].name: {err}") from None
        elif m.name is not None and m.name not in known:
            raise ConfigError(
                f"models[{m.key}].name: {m.name!r} is not in the manifest {manifest_path()}; "
                f"known: {', '.join(known)}"
            )


def create_detectors(cfg: Config, *, metrics: Metrics | None = None) -> DetectorSet:
    """Every detector of ``models:``, as one set (a detector that fails to load closes the others)."""
    members: list[SetMember] = []
    try:
        for m in cfg.models:
            det = create_detector(cfg, m)
            members.append(SetMember(m.key, det, {}))
            members[-1].roles = role_map(m, det.info.class_names)
    except BaseException:
        for member in members:
            member.detector.close()
        raise
    return DetectorSet(
        members,
        camera_models={c.id: cfg.camera_models(c) for c in cfg.cameras if c.models},
        merge=cfg.merge,
        metrics=metrics,
    )


def as_set(cfg: Config, detector: Detector, *, metrics: Metrics | None = None) -> DetectorSet:
    """A detector built elsewhere (tests, benchmarks) as the set of the config's first model."""
    if isinstance(detector, DetectorSet):
        return detector
    m = cfg.models[0]
    member = SetMember(m.key, detector, role_map(m, detector.info.class_names))
    return DetectorSet([member], merge=cfg.merge, metrics=metrics)  # it runs on every camera


def create_detector(cfg: Config, m: ModelConfig | None = None) -> Detector:
    """One detector: ``m``, or the config's first model (a version NAME@N says so in its info: name
    NAME, version N, as its events will)."""
    m = m or cfg.models[0]
    det = _create_detector(cfg, m)
    if m.name is not None and "@" in m.name:
        root, n = m.name.rsplit("@", 1)
        det.info = replace(det.info, name=root, version=n)
    return det


def _create_detector(cfg: Config, m: ModelConfig) -> Detector:
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

        device = _onnx_device(cfg.device)
        return OnnxDetector(
            path,
            threads=model_threads(m.threads, inference_workers(cfg.batching.workers, device)),
            device=device,
            tensorrt=m.tensorrt,
            max_batch=cfg.batching.max_batch_size,
            **common,
        )
    from .torch_backend import TorchDetector

    return TorchDetector(path, device=resolve_device(cfg.device), half=m.half, **common)
