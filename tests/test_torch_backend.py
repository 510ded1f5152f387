"""The torch backend (TorchScript and .pt checkpoints) against the ONNX Runtime backend, on CPU."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from pipeline.config import parse_config
from pipeline.detect import create_detector
from pipeline.detect.onnx_backend import OnnxDetector
from pipeline.detect.torch_backend import TorchDetector
from pipeline.errors import BackendUnavailableError, ModelError
from pipeline.registry import export_torchscript
from pipeline.types import Detections, Frame, FrameBatch

from .test_detect import assert_same


@pytest.fixture(scope="module")
def tiny_torchscript(tiny_onnx: Path) -> Path:
    return export_torchscript(
        tiny_onnx.with_suffix(".pt"), tiny_onnx.with_suffix(".torchscript"), imgsz=320, batch=4
    )


def frames_of(clip: Path, n: int, crop: int | None = None) -> list[Frame]:
    out = []
    with av.open(str(clip)) as c:
        for i, f in enumerate(c.decode(video=0)):
            img = f.to_ndarray(format="rgb24")
            if crop:
                img = np.ascontiguousarray(img[:crop, :crop])
            out.append(Frame(f"c{i}", torch.from_numpy(img), 0.0, i, 0.0))
            if len(out) == n:
                break
    return out


def as_ref(d: Detections) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return d.xyxy, d.class_id, d.confidence


def test_torchscript_matches_onnx_and_pads_to_its_batch(
    tiny_onnx: Path, tiny_torchscript: Path, clips: list[Path]
) -> None:
    # square crops: the static TorchScript input (320 x 320) and ONNX's rect canvas are the same
    frames = frames_of(clips[0], 6, crop=240)
    ts = TorchDetector(
        tiny_torchscript, name="t", imgsz=None, conf_threshold=0.25, iou_threshold=0.7, max_det=1000
    )
    assert ts.static_batch == 4 and not ts.rect and len(ts.info.class_names) == 80
    onnx = OnnxDetector(tiny_onnx, name="t", imgsz=320, conf_threshold=0.25, iou_threshold=0.7, max_det=1000)
    ours, ref = ts.detect(FrameBatch(frames)), onnx.detect(FrameBatch(frames))
    assert len(ours) == 6 and sum(len(d) for d in ours) > 20  # 6 frames: one full batch and one padded
    for o, r in zip(ours, ref, strict=True):
        assert_same(o, as_ref(r), tol_px=1.0)


def test_the_export_check_accepts_a_torchscript_export_of_its_checkpoint(
    tiny_onnx: Path, tiny_torchscript: Path, clips: list[Path]
) -> None:
    """``safecity models fetch --torchscript-batch`` keeps the export only if it sees what the .pt sees."""
    from pipeline.detect.agreement import export_agreement

    frames = frames_of(clips[0], 4, crop=240)
    pixels = [f.rgb() for f in frames]
    a = export_agreement(tiny_onnx.with_suffix(".pt"), tiny_torchscript, pixels, imgsz=320, conf=0.25)
    assert a.accepted and a.reference_detections > 10 and a.first_mismatch is None, a


def test_pt_checkpoint_matches_onnx(tiny_onnx: Path, clips: list[Path]) -> None:
    frames = frames_of(clips[1], 3)
    pt = TorchDetector(
        tiny_onnx.with_suffix(".pt"),
        name="t",
        imgsz=320,
        conf_threshold=0.25,
        iou_threshold=0.7,
        max_det=1000,
    )
    assert pt.rect and pt.static_batch is None
    onnx = OnnxDetector(tiny_onnx, name="t", imgsz=320, conf_threshold=0.25, iou_threshold=0.7, max_det=1000)
    for o, r in zip(pt.detect(FrameBatch(frames)), onnx.detect(FrameBatch(frames)), strict=True):
        assert_same(o, as_ref(r), tol_px=1.0)


def test_config_picks_the_backend_and_names_missing_devices(tiny_torchscript: Path) -> None:
    base = {"cameras": [{"id": "c", "source": "x.mp4"}], "device": "cpu"}
    det = create_detector(
        parse_config({**base, "model": {"backend": "torch", "path": str(tiny_torchscript)}})
    )
    assert isinstance(det, TorchDetector) and det.info.backend == "torch"
    if not torch.cuda.is_available():
        cfg = parse_config(
            {**base, "device": "cuda:0", "model": {"backend": "torch", "path": str(tiny_torchscript)}}
        )
        with pytest.raises(BackendUnavailableError, match="no CUDA GPU"):
            create_detector(cfg)


def test_traced_input_size_is_enforced(tiny_torchscript: Path) -> None:
    with pytest.raises(ModelError, match="traced for 320 px"):
        TorchDetector(
            tiny_torchscript, name="t", imgsz=640, conf_threshold=0.25, iou_threshold=0.7, max_det=10
        )


def test_onnx_tensorrt_needs_cuda(tiny_onnx: Path) -> None:
    with pytest.raises(BackendUnavailableError, match="TensorRT provider needs device: cuda"):
        OnnxDetector(
            tiny_onnx, name="t", imgsz=None, conf_threshold=0.3, iou_threshold=0.7, max_det=10, tensorrt=True
        )


def test_decoder_choice() -> None:
    from pipeline.sources import choose_decoder

    assert choose_decoder("pyav", "cpu") == "pyav"
    assert choose_decoder("auto", "cpu") == "pyav"
    with pytest.raises(BackendUnavailableError, match="needs a CUDA device"):
        choose_decoder("nvdec", "cpu")


def test_pynvvideocodec_import_is_guarded() -> None:
    from pipeline.sources.nvdec import load_nvc, nvdec_available

    if torch.cuda.is_available():
        pytest.skip("a GPU machine: covered by the needs_cuda tests")
    assert nvdec_available() is False
    try:
        load_nvc()
    except BackendUnavailableError as err:
        assert "PyNvVideoCodec" in str(err)
