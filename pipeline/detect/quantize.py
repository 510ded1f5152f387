"""INT8 models for CPU edges: ONNX Runtime static quantization (QDQ, per-channel weights), calibrated
on frames of the user's own footage, with the detection head's final nodes left in float.

Quantizing everything sends the class scores to 0 (the sigmoid's input range does not survive 8
bits): the head is left in float, from each model output back to the last convolution block that
ends in an activation (those blocks, and everything before them, are quantized). A quantized model is
accepted only when its detections agree with the float model's on held-out frames (recall and
precision >= ``MIN_AGREEMENT`` at IoU 0.5, same class, the other model's detections counted down to
``1 - CONF_MARGIN`` of the threshold); otherwise it is refused with the figures.
"""

from __future__ import annotations

import ast
import itertools
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ModelError
from ..footage import sample_frames
from ..preprocess import letterbox_batch
from .agreement import CONF_MARGIN, MIN_AGREEMENT, Agreement, agreement

log = logging.getLogger(__name__)

ACTIVATIONS = {"Sigmoid", "LeakyRelu", "Relu", "HardSwish", "Mul"}  # what ends a convolution block


def head_nodes(model: Any) -> list[str]:
    """The nodes from each output back to (not into) the last activated convolution blocks: the
    head's final convolutions, its box decoding (DFL, anchors), concatenations and sigmoids."""
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    head: list[str] = []
    seen: set[str] = set()
    stack = [o.name for o in graph.output]
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type in ACTIVATIONS and any(
            (p := producer.get(i)) is not None and p.op_type == "Conv" for i in node.input
        ):
            continue  # a convolution block's activation (SiLU is Sigmoid and Mul): the head stops here
        head.append(node.name)
        stack.extend(node.input)
    return head


def export_size(raw: str) -> int:
    """The square input size to calibrate at, from an export's ``imgsz`` metadata: ``640``,
    ``[640, 640]``, ``(384, 640)`` (the larger side)."""
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        raise ModelError(f"the model's imgsz metadata {raw!r} is not a size") from None
    sizes = [value] if isinstance(value, int) else list(value)
    if not sizes or not all(isinstance(v, int) and v > 0 for v in sizes):
        raise ModelError(f"the model's imgsz metadata {raw!r} is not a size")
    return max(sizes)


def footage_frames(paths: Sequence[Path], *, every_s: float, limit: int) -> list[torch.Tensor]:
    """RGB frames (H, W, 3) uint8 sampled every ``every_s`` seconds of each file, ``limit`` in all."""
    per_file = max(limit // max(len(paths), 1), 1)
    out: list[torch.Tensor] = []
    for path in paths:
        out += [rgb for _, rgb in itertools.islice(sample_frames(path, every_s=every_s), per_file)]
    return out[:limit]


class _Reader:
    """Calibration batches for ONNX Runtime: the frames letterboxed as the pipeline does."""

    def __init__(self, frames: list[torch.Tensor], input_name: str, imgsz: int) -> None:
        self.items: Iterator[dict[str, np.ndarray]] = iter(
            {input_name: letterbox_batch([f], size=imgsz)[0].numpy()} for f in frames
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.items, None)


def int8_agreement(model: Path, int8_model: Path, frames: list[torch.Tensor], *, conf: float) -> Agreement:
    """The INT8 model (candidate) against the float one (reference) on held-out frames."""
    from .onnx_backend import OnnxDetector

    low = conf * (1 - CONF_MARGIN)
    float_det, int8_det = (
        OnnxDetector(path, name=key, imgsz=None, conf_threshold=low, iou_threshold=0.7, max_det=300)
        for key, path in (("float", model), ("int8", int8_model))
    )
    try:
        return agreement(float_det, int8_det, frames, conf=conf, names=("the float model", "the INT8 model"))
    finally:
        float_det.close()
        int8_det.close()


def quantize(
    model: Path,
    footage: Sequence[Path],
    dest: Path,
    *,
    calibration_frames: int = 64,
    held_out_frames: int = 32,
    every_s: float = 0.5,
    conf: float = 0.25,
) -> Agreement:
    """Write ``dest``, the INT8 model of ``model`` calibrated on ``footage``, if it agrees with the
    float model on held-out frames of it (else ModelError with the figures); its metadata (names,
    family, image size) is the float model's. A report ``dest`` + ``.json`` is written either way."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    frames = footage_frames(footage, every_s=every_s, limit=calibration_frames + held_out_frames)
    if len(frames) < 4:
        raise ModelError(f"calibration needs at least 4 frames of footage, got {len(frames)}")
    held = frames[::3][:held_out_frames]  # every third frame is held out, the rest calibrate
    calib = [f for k, f in enumerate(frames) if k % 3][:calibration_frames]
    fp = onnx.load(str(model))
    meta = {p.key: p.value for p in fp.metadata_props}
    imgsz = export_size(meta.get("imgsz", "640"))
    input_name = fp.graph.input[0].name
    dest.parent.mkdir(parents=True, exist_ok=True)
    pre = dest.with_suffix(".pre.onnx")
    tmp = dest.with_suffix(".tmp.onnx")
    try:
        quant_pre_process(str(model), str(pre), skip_symbolic_shape=True)
        exclude = head_nodes(onnx.load(str(pre)))  # named as in the graph that is quantized
        quantize_static(
            str(pre),
            str(tmp),
            _Reader(calib, input_name, imgsz),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude,
            calibrate_method=CalibrationMethod.MinMax,
        )
        q = onnx.load(str(tmp))
        del q.metadata_props[:]
        for k, v in meta.items():
            q.metadata_props.add(key=k, value=v)
        q.metadata_props.add(
            key="quantization", value=f"int8 qdq per-channel; {len(exclude)} head nodes in float"
        )
        onnx.save(q, str(tmp))
        result = int8_agreement(model, tmp, held, conf=conf)
        report = {
            **asdict(result),
            "accepted": result.accepted,
            "calibration_frames": len(calib),
            "head_nodes_in_float": len(exclude),
            "min_agreement": MIN_AGREEMENT,
        }
        dest.with_name(dest.name + ".json").write_text(json.dumps(report, indent=2))
        if not result.accepted:
            raise ModelError(
                f"the INT8 model does not agree with the float one on held-out frames: {result.summary()}; "
                f"first difference: {result.first_mismatch}; not written"
            )
        tmp.replace(dest)
        return result
    finally:
        pre.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
