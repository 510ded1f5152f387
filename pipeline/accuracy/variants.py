"""The same footage as cameras would send it: re-encodings that must not change the verdict.

A camera sends a scene at its own resolution, codec, bitrate and frame rate, and at dusk the same scene
is darker and noisier. ``safecity bench accuracy`` scores every annotated clip in each of these
variants beside the original (the robustness matrix): the incidents must be the same.

Variants are made with PyAV (libx264 / libx265, CCTV-like: a key frame every 2 s, no B-frames, a
fixed bitrate) from the original's decoded frames, and kept beside it in ``variants/`` under a name
that carries a digest of the original and the recipe, so each is made once. The aspect ratio is
kept (a 1080p variant fits 1920 x 1080); zones drawn on the original's pixels are scaled to the variant's
frame size by the camera's ``zones_drawn_on``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..registry import sha256_file


@dataclass(frozen=True)
class Variant:
    """One way a camera might send the scene (None: as the original)."""

    codec: str = "libx264"  # libx264 | libx265
    height: int | None = None  # fits a 16:9 frame of this height, the aspect ratio kept (even sides)
    bitrate: int | None = None  # bits per second (None: the encoder's default quality)
    fps: float | None = None  # frames per second kept (None: all of them)
    dusk: bool = False  # darker, greyer, bluer and noisier, as a camera sees the scene at dusk


VARIANTS: dict[str, Variant | None] = {
    "original": None,
    "h264-1080p-2Mbps": Variant(codec="libx264", height=1080, bitrate=2_000_000),
    "hevc-720p": Variant(codec="libx265", height=720, bitrate=1_000_000),
    "dusk": Variant(codec="libx264", dusk=True),
    "5fps": Variant(codec="libx264", fps=5.0),
}


def dusk(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The frame as at dusk: a third of the light with a gamma, half the colour, a blue cast, and
    sensor noise (the camera's gain up)."""
    x = rgb.astype(np.float32) / 255.0
    grey = x.mean(axis=2, keepdims=True)
    x = 0.5 * x + 0.5 * grey
    x = 0.38 * np.power(x, 1.25) * np.array([0.85, 0.95, 1.15], np.float32)
    x = x * 255.0 + rng.normal(0.0, 3.5, x.shape).astype(np.float32)
    return np.clip(x, 0, 255).astype(np.uint8)


def variant_path(original: Path, name: str, folder: Path | None = None) -> Path:
    """Where the variant ``name`` of ``original`` is kept (a digest of both in its name)."""
    recipe = VARIANTS[name]
    assert recipe is not None
    digest = hashlib.sha256(
        (sha256_file(original) + json.dumps(asdict(recipe), sort_keys=True)).encode()
    ).hexdigest()[:12]
    return (folder or original.parent / "variants") / f"{original.stem}.{name}.{digest}.mp4"


def make_variant(
    original: Path,
    name: str,
    *,
    folder: Path | None = None,
    progress: Callable[[float], None] | None = None,
) -> Path:
    """The variant ``name`` of ``original`` (made once, then reused). ``progress``: called with the
    fraction done while it is being made."""
    if VARIANTS.get(name, ...) is ...:
        raise ValueError(f"unknown variant {name!r}; expected one of {', '.join(VARIANTS)}")
    recipe = VARIANTS[name]
    if recipe is None:
        return original
    out = variant_path(original, name, folder)
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part.mp4")
    rng = np.random.default_rng(0)
    with av.open(str(original)) as src, av.open(str(part), "w") as dst:
        vin = src.streams.video[0]
        vin.thread_type = "AUTO"
        rate = Fraction(vin.average_rate or vin.guessed_rate or 25).limit_denominator(1001)
        out_rate = Fraction(recipe.fps).limit_denominator(1001) if recipe.fps else rate
        w0, h0 = vin.codec_context.width, vin.codec_context.height
        scale = min(recipe.height * 16 / 9 / w0, recipe.height / h0) if recipe.height else 1.0
        w, h = int(round(w0 * scale / 2)) * 2, int(round(h0 * scale / 2)) * 2
        st: av.VideoStream = dst.add_stream(recipe.codec, rate=out_rate)  # type: ignore[assignment]
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        frame_base = 1 / out_rate  # (the muxer may change the stream's own time base once it starts)
        st.time_base = frame_base
        gop = max(int(round(2 * out_rate)), 1)
        if recipe.codec == "libx265":
            params = f"keyint={gop}:min-keyint={gop}:bframes=0:log-level=error"
            if recipe.bitrate:
                params += f":bitrate={recipe.bitrate // 1000}:vbv-maxrate={recipe.bitrate // 1000}"
                params += f":vbv-bufsize={recipe.bitrate // 1000}"
            st.options = {"x265-params": params, "preset": "fast"}
        else:
            st.options = {"preset": "fast", "bf": "0", "g": str(gop)}
            if recipe.bitrate:
                st.bit_rate = recipe.bitrate
                st.options |= {"maxrate": str(recipe.bitrate), "bufsize": str(recipe.bitrate)}
        total = float(vin.duration * vin.time_base) if vin.duration and vin.time_base else 0.0
        t0: float | None = None
        kept = 0
        for frame in src.decode(vin):
            t = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else 0.0
            t0 = t if t0 is None else t0
            t -= t0
            if recipe.fps and t + 1e-6 < kept / recipe.fps:
                continue
            img = frame.reformat(width=w, height=h, format="rgb24").to_ndarray()
            if recipe.dusk:
                img = dusk(img, rng)
            new = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
            new.pts = kept  # constant frame rate: the kept frame's number
            new.time_base = frame_base
            kept += 1
            for packet in st.encode(new):
                dst.mux(packet)
            if progress is not None and total > 0:
                progress(min(t / total, 1.0))
        for packet in st.encode():
            dst.mux(packet)
    part.replace(out)
    return out
