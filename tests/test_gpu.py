"""GPU path checks: run by scripts/gpu_check.sh on a GPU machine (skipped here, failing with
FAIL_WITHOUT_CUDA=1 when there is no GPU). References come from the CPU path, made by
scripts/gpu_prepare.py into $SAFECITY_GPU_REF (default data/gpu)."""

from __future__ import annotations

import importlib
import itertools
import json
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config import CameraConfig, parse_config
from pipeline.sources.cpu import Pixels

from .conftest import REPO, free_port

pytestmark = pytest.mark.needs_cuda
REF = Path(os.environ.get("SAFECITY_GPU_REF", REPO / "data" / "gpu"))


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


NO_NVDEC = os.environ.get("SAFECITY_NO_NVDEC") == "1"  # set by gpu_check.sh when its preflight found none
needs_nvdec = pytest.mark.skipif(
    NO_NVDEC, reason="NVDEC is not reachable on this machine (gpu_check preflight)"
)
HAVE_PYAV = _importable("av")  # the GPU machine has none (it cannot be carried)
needs_pyav = pytest.mark.skipif(not HAVE_PYAV, reason="PyAV is not installed on this machine")


@pytest.fixture(scope="module")
def ref() -> dict:
    if not (REF / "reference.json").is_file():
        pytest.fail(f"no GPU references in {REF}: run scripts/gpu_prepare.py on a CPU machine first")
    return json.loads((REF / "reference.json").read_text())


def nvdec_pixels(path: Path, count: int) -> list[Pixels]:
    """The first ``count`` frames of a file as NVDEC gives them through the pipeline's own source:
    NV12 CUDA tensors copied on the camera's stream, with the colour spec the source read."""
    from pipeline.sources.nvdec import NvdecCameraSource

    cam = CameraConfig(id="t", source=str(path))
    src = NvdecCameraSource(
        cam,
        device=torch.device("cuda:0"),
        fallback=False,
        emit=lambda f, b: True,
        stop_event=threading.Event(),
    )
    opened = src._open()
    out = []
    try:
        for _, convert in opened.frames:
            px = convert()
            assert px.pixel_format == "nv12" and px.data.is_cuda and px.ready is not None
            out.append(px)
            if len(out) == count:
                break
    finally:
        opened.close()
    torch.cuda.synchronize()
    return out


def pyav_pixels(path: Path, count: int) -> list[Pixels]:
    """The first ``count`` frames decoded by PyAV (RGB on the CPU), as the CPU path gives them."""
    from pipeline.sources.cpu import CameraSource

    src = CameraSource(
        CameraConfig(id="t", source=str(path)), emit=lambda f, b: True, stop_event=threading.Event()
    )
    opened = src._open()
    try:
        return [convert() for _, convert in itertools.islice(opened.frames, count)]
    finally:
        opened.close()


def nvdec_frames(path: Path, count: int) -> list[torch.Tensor]:
    return [px.data for px in nvdec_pixels(path, count)]


def block_means(nv12: torch.Tensor, block: int) -> np.ndarray:
    rows, w = nv12.shape
    h = rows * 2 // 3
    x = nv12.float()
    y = x[:h].reshape(h // block, block, w // block, block).mean(dim=(1, 3))
    b2 = block // 2
    uv = x[h:].reshape(h // 2, w // 2, 2).reshape(h // 2 // b2, b2, w // 2 // b2, b2, 2).mean(dim=(1, 3))
    return torch.cat([y.ravel(), uv.ravel()]).cpu().numpy()


@needs_nvdec
@pytest.mark.parametrize(
    "clip", ["bikes.mp4", "carphone_pristine.mp4", "cctv1080_h264.mp4", "cctv1080_hevc.mp4"]
)
def test_nvdec_frames_equal_pyav_frames(ref: dict, clip: str) -> None:
    expected = np.load(REF / f"{clip}.nv12stats.npy")
    frames = nvdec_frames(REF / clip, len(expected))
    assert len(frames) == len(expected)
    for got, want in zip(frames, expected, strict=True):
        diff = np.abs(block_means(got, ref[clip]["block"]) - want)
        assert diff.max() < 1.0, (clip, diff.max())


@pytest.mark.parametrize("clip", ["bikes.mp4", "carphone_pristine.mp4"])
def test_gpu_detections_match_the_cpu_path(ref: dict, clip: str) -> None:
    from pipeline.detect.torch_backend import TorchDetector
    from pipeline.preprocess import color_spec
    from pipeline.track import iou_matrix
    from pipeline.types import Frame, FrameBatch

    det = TorchDetector(
        REF / "fall-yolov8.pt",
        name="fall",
        imgsz=640,
        conf_threshold=0.3,
        iou_threshold=0.7,
        max_det=300,
        device="cuda:0",
    )
    assert det.info.backend == "torch-fp16"
    wanted = {d["index"]: np.asarray(d["boxes"]).reshape(-1, 6) for d in ref[clip]["detections"]}
    if NO_NVDEC:  # PyAV frames: the detector uploads them and preprocesses on the GPU
        if not HAVE_PYAV:
            pytest.skip("neither NVDEC nor PyAV on this machine: no frames to detect on")
        pixels = pyav_pixels(REF / clip, max(wanted) + 1)
    else:
        pixels = nvdec_pixels(REF / clip, max(wanted) + 1)
        h = pixels[0].data.shape[0] * 2 // 3
        assert pixels[0].color == color_spec(None, None, h)  # the sample clips are untagged: PyAV's defaults
    batch = FrameBatch(
        [
            Frame(
                "c",
                pixels[i].data,
                0.0,
                i,
                0.0,
                pixels[i].pixel_format,
                pixels[i].color,
                ready=pixels[i].ready,
            )
            for i in sorted(wanted)
        ]
    )
    compared = 0
    for d, i in zip(det.detect(batch), sorted(wanted), strict=True):
        for box in wanted[i][wanted[i][:, 4] > 0.5]:
            same = d.class_id == int(box[5])
            iou = iou_matrix(box[None, :4], d.xyxy[same])
            assert iou.size, (clip, i, box)
            j = int(iou.argmax())
            assert np.abs(d.xyxy[same][j] - box[:4]).max() <= 2.0, (clip, i, box, d.xyxy[same][j])
            compared += 1
    assert compared >= 3


@needs_nvdec
def test_auto_picks_the_gpu_backends() -> None:
    from pipeline.devices import resolve_device
    from pipeline.sources import choose_decoder

    assert resolve_device("auto") == "cuda:0"
    assert choose_decoder("auto", "cuda:0") == "nvdec"


def test_corrupt_and_vanished_streams_leave_the_others_running(tmp_path: Path) -> None:
    if NO_NVDEC and not HAVE_PYAV:
        pytest.skip("neither NVDEC nor PyAV on this machine")
    from pipeline.runner import Runner

    good = REF / "cctv1080_h264.mp4"
    corrupt = tmp_path / "corrupt.mp4"
    data = bytearray(good.read_bytes())
    rng = np.random.default_rng(0)
    for pos in rng.integers(len(data) // 4, len(data), size=200):  # damage packets past the header
        data[pos] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    vanishing = tmp_path / "vanishing.mp4"
    shutil.copy(good, vanishing)
    script = tmp_path / "s.jsonl"
    script.write_text(json.dumps({"names": ["person"]}))
    cfg = parse_config(
        {
            "device": "cuda:0",
            "decoder": "pyav" if NO_NVDEC else "nvdec",
            "cameras": [
                {"id": "good", "source": str(good), "loop": True},
                {"id": "corrupt", "source": str(corrupt), "loop": True},
                {
                    "id": "vanishing",
                    "source": str(vanishing),
                    "loop": True,
                    "reconnect_initial_seconds": 0.2,
                    "reconnect_max_seconds": 0.5,
                },
            ],
            "model": {"backend": "scripted", "scripted_detections": str(script)},
            "sink": {
                "endpoint": f"tcp://127.0.0.1:{free_port()}",
                "outbox": str(tmp_path / "o.sqlite"),
                "insecure": True,
            },
        }
    )
    runner = Runner(cfg)
    runner.start()
    try:
        time.sleep(1.0)
        vanishing.unlink()
        time.sleep(5.0)  # the 4 s clip ends, its reopen fails and is retried
        before = runner.stats.cameras["good"].analysed
        time.sleep(1.0)
        after = runner.stats.cameras["good"].analysed
    finally:
        runner.request_stop()
        runner.stop()
    stats = runner.stats.cameras
    assert after > before and stats["good"].errors == 0
    assert stats["corrupt"].decoded > 0  # concealed frames keep coming; the camera is not taken down
    assert stats["vanishing"].errors >= 1 and stats["vanishing"].state in ("down", "stopped", "failed")


@needs_nvdec
@needs_pyav
def test_a_10_bit_camera_goes_to_pyav_and_the_others_stay_on_nvdec(tmp_path: Path) -> None:
    """decoder: auto. A 10-bit HEVC camera (NVDEC would give P016) is decoded by PyAV, with its metric
    label; the 8-bit camera beside it stays on NVDEC; both are analysed."""
    from pipeline.metrics import Metrics
    from pipeline.runner import Runner

    script = tmp_path / "s.jsonl"
    script.write_text(json.dumps({"names": ["person"]}))
    cfg = parse_config(
        {
            "device": "cuda:0",
            "decoder": "auto",
            "cameras": [
                {"id": "eight", "source": str(REF / "cctv1080_h264.mp4"), "loop": True},
                {"id": "ten", "source": str(REF / "hevc_10bit.mp4"), "loop": True},
            ],
            "model": {"backend": "scripted", "scripted_detections": str(script)},
            "sink": {
                "endpoint": f"tcp://127.0.0.1:{free_port()}",
                "outbox": str(tmp_path / "o.sqlite"),
                "insecure": True,
            },
        }
    )
    metrics = Metrics()
    runner = Runner(cfg, metrics=metrics)
    runner.start()
    try:
        time.sleep(4.0)
    finally:
        runner.request_stop()
        runner.stop()
    reg = metrics.registry
    assert reg.get_sample_value("safecity_camera_decoder", {"camera": "ten", "decoder": "pyav"}) == 1
    assert reg.get_sample_value("safecity_camera_decoder", {"camera": "eight", "decoder": "nvdec"}) == 1
    assert runner.stats.cameras["ten"].analysed > 5 and runner.stats.cameras["eight"].analysed > 5
