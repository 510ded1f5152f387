"""Prepare, on a CPU machine, what the GPU check carries to the GPU machine (which has no network).

Writes data/gpu/: the person/fall model checkpoint, the real sample clips, two short 1080p CCTV-like
clips (H.264 and HEVC), reference NV12 statistics of the first frames decoded by PyAV, and reference
detections of the CPU path (PyAV + ONNX Runtime). Downloads into .whl/ the wheels the GPU machine
lacks. Then run the check there with scripts/gpu_check.sh (see the README).

    python scripts/gpu_prepare.py
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.detect.onnx_backend import OnnxDetector  # noqa: E402
from pipeline.footage import fetch_samples, generate_clip  # noqa: E402
from pipeline.preprocess import color_spec  # noqa: E402
from pipeline.registry import fetch_model, model_dir  # noqa: E402
from pipeline.sources.cpu import to_rgb24  # noqa: E402
from pipeline.types import Frame, FrameBatch  # noqa: E402

OUT = REPO / "data" / "gpu"
WHEELS = REPO / ".whl"
BLOCK = 8  # NV12 is compared as means over BLOCK x BLOCK tiles: small to carry, still strict
REF_FRAMES = 6
DETECT_EVERY = 5
# what the GPU machine lacks (see the device README): carried as Python 3.12 manylinux wheels
GPU_WHEELS = [
    "pynvvideocodec==2.2.4",
    "pyzmq==27.3.0",
    "pydantic==2.14.4",
    "pydantic-core==2.50.5",
    "annotated-types==0.8.0",
    "typing-inspection==0.4.5",
    "ultralytics==8.4.190",
]


def block_means(nv12: np.ndarray) -> np.ndarray:
    rows, w = nv12.shape
    h = rows * 2 // 3
    y = nv12[:h].reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK).mean(axis=(1, 3))
    uv = nv12[h:].reshape(h // 2, w // 2, 2)
    b2 = BLOCK // 2
    uv = uv.reshape(h // 2 // b2, b2, w // 2 // b2, b2, 2).mean(axis=(1, 3))
    return np.concatenate([y.ravel(), uv.ravel()]).astype(np.float32)


def slim_wheel(wheel: Path, *, drop: tuple[str, ...]) -> None:
    """Rewrite a wheel without the members whose path holds one of ``drop`` (PyNvVideoCodec's wheel
    carries 17 MB of tutorials and FFmpeg's source, which nothing imports), with its RECORD to match:
    more room in the 64 MiB a GPU call may carry."""
    import base64
    import hashlib
    import zipfile

    slim = wheel.with_suffix(".slim")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as dst:
        record_name = next(n for n in src.namelist() if n.endswith(".dist-info/RECORD"))
        lines = []
        for info in src.infolist():
            if info.filename == record_name or any(d in info.filename for d in drop):
                continue
            data = src.read(info)
            dst.writestr(info, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            lines.append(f"{info.filename},sha256={digest},{len(data)}")
        lines.append(f"{record_name},,")
        dst.writestr(record_name, "\n".join(lines) + "\n")
    slim.replace(wheel)


def ten_bit_clip(path: Path) -> Path:
    """A short 10-bit HEVC clip (Main 10): NVDEC would give P016, so the pipeline decodes it with PyAV."""
    if path.is_file():
        return path
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx265", rate=25)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p10le"
        stream.options = {"preset": "ultrafast", "x265-params": "log-level=error"}
        rng = np.random.default_rng(1)
        for i in range(50):
            img = np.full((360, 640, 3), 90, np.uint8)
            img[100:200, (i * 8) % 560 : (i * 8) % 560 + 80] = rng.integers(0, 255, 3, dtype=np.uint8)
            for pkt in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)
    return path


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    clips = dict(fetch_samples())
    for codec, ext in (("libx264", "h264"), ("libx265", "hevc")):
        p = OUT / f"cctv1080_{ext}.mp4"
        if not p.is_file():
            generate_clip(
                p, width=1920, height=1080, fps=30, seconds=4.0, gop=60, codec=codec, bitrate=3_000_000
            )
        clips[p.name] = p
    for name, p in list(clips.items()):
        if p.parent != OUT:
            shutil.copy(p, OUT / name)
            clips[name] = OUT / name
    onnx = fetch_model("fall-yolov8")
    shutil.copy(model_dir("fall-yolov8") / "fall-yolov8.pt", OUT / "fall-yolov8.pt")
    det = OnnxDetector(
        onnx, name="fall-yolov8", imgsz=640, conf_threshold=0.3, iou_threshold=0.7, max_det=300
    )
    refs: dict[str, dict] = {}
    for name, p in clips.items():
        stats, dets = [], []
        with av.open(str(p)) as c:
            for i, f in enumerate(c.decode(video=0)):
                if i < REF_FRAMES:
                    stats.append(block_means(f.to_ndarray(format="nv12")))
                if i % DETECT_EVERY == 0 and name in ("bikes.mp4", "carphone_pristine.mp4"):
                    spec = color_spec(f.colorspace, f.color_range, f.height, f.format.name)
                    frame = Frame("c", torch.from_numpy(to_rgb24(f, spec)), 0.0, i, 0.0)
                    (d,) = det.detect(FrameBatch([frame]))
                    dets.append(
                        {"index": i, "boxes": np.column_stack([d.xyxy, d.confidence, d.class_id]).tolist()}
                    )
        np.save(OUT / f"{name}.nv12stats.npy", np.stack(stats))
        refs[name] = {"detections": dets, "block": BLOCK, "frames": REF_FRAMES}
    (OUT / "reference.json").write_text(json.dumps(refs))
    ten_bit_clip(OUT / "hevc_10bit.mp4")
    WHEELS.mkdir(exist_ok=True)
    for stale in WHEELS.glob("*.whl"):
        stale.unlink()
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.12",
        "--implementation",
        "cp",
        "--platform",
        "manylinux_2_28_x86_64",
        "--platform",
        "manylinux_2_26_x86_64",
        "--platform",
        "manylinux_2_17_x86_64",
        "--platform",
        "manylinux2014_x86_64",
        "--platform",
        "manylinux1_x86_64",
        "-d",
        str(WHEELS),
        *GPU_WHEELS,
    ]
    subprocess.run(cmd, check=True)
    for wheel in WHEELS.glob("pynvvideocodec-*.whl"):
        slim_wheel(wheel, drop=("samples/", ".data/data/external/"))
    size = sum(f.stat().st_size for f in [*OUT.iterdir(), *WHEELS.iterdir()]) / 2**20
    print(f"prepared {OUT} and {WHEELS}: {size:.1f} MiB to carry (the limit is 64 MiB with the tree)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
