"""Frames (RGB or NV12) -> letterboxed float NCHW, in torch, on the frames' device.

Letterboxing follows Ultralytics' LetterBox; NV12 is resized plane by plane and converted to RGB
with the stream's matrix and range in the same pass, so GPU frames never leave the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .types import ColorSpec, Frame

PAD_VALUE = 114
KR_KB = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}
# FFmpeg's AVColorSpace codes that name a matrix; anything else is treated as untagged
AV_COLORSPACE = {1: "bt709", 5: "bt601", 6: "bt601"}


def color_spec(colorspace: int | None, color_range: int | None, height: int, pix_fmt: str = "") -> ColorSpec:
    """The stream's matrix and range from FFmpeg's codes (AVColorSpace, AVColorRange).

    Untagged streams follow the usual convention: BT.709 from 720 lines up, BT.601 below; limited
    range unless tagged full (AVCOL_RANGE_JPEG = 2) or a ``yuvj`` pixel format.
    """
    matrix = AV_COLORSPACE.get(colorspace or 0) or ("bt709" if height >= 720 else "bt601")
    full = color_range == 2 or pix_fmt.startswith("yuvj")
    return ColorSpec(matrix, full)  # type: ignore[arg-type]


def yuv_to_rgb(y: torch.Tensor, uv: torch.Tensor, color: ColorSpec) -> torch.Tensor:
    """(B, 1, h, w) luma and (B, 2, h, w) chroma, float 0..255 -> (B, 3, h, w) RGB float 0..255."""
    kr, kb = KR_KB[color.matrix]
    kg = 1.0 - kr - kb
    if color.full_range:
        yn, cb, cr = y, uv[:, 0:1] - 128.0, uv[:, 1:2] - 128.0
    else:
        yn = (y - 16.0) * (255.0 / 219.0)
        cb = (uv[:, 0:1] - 128.0) * (255.0 / 224.0)
        cr = (uv[:, 1:2] - 128.0) * (255.0 / 224.0)
    r = yn + (2.0 * (1.0 - kr)) * cr
    g = yn - (2.0 * kb * (1.0 - kb) / kg) * cb - (2.0 * kr * (1.0 - kr) / kg) * cr
    b = yn + (2.0 * (1.0 - kb)) * cb
    return torch.cat([r, g, b], dim=1)


def nv12_planes(nv12: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, H * 3 // 2, W) uint8 -> luma (B, 1, H, W) and chroma (B, 2, H / 2, W / 2), as float."""
    b, rows, w = nv12.shape
    h = rows * 2 // 3
    y = nv12[:, :h].unsqueeze(1).float()
    uv = nv12[:, h:].reshape(b, h // 2, w // 2, 2).permute(0, 3, 1, 2).float()
    return y, uv


def nv12_to_rgb(
    nv12: torch.Tensor, *, color: ColorSpec, out_hw: tuple[int, int] | None = None
) -> torch.Tensor:
    """NV12 (B, H * 3 // 2, W) uint8 -> RGB (B, 3, h, w) float 0..255, resized to ``out_hw`` on the way.

    Both planes are resized straight to the output size (chroma upsampled in the same step), then the
    matrix is applied once: one pass over the output pixels, not over the source ones.
    """
    y, uv = nv12_planes(nv12)
    hw = out_hw or (y.shape[2], y.shape[3])
    if (y.shape[2], y.shape[3]) != hw:
        y = F.interpolate(y, size=hw, mode="bilinear", align_corners=False)
    uv = F.interpolate(uv, size=hw, mode="bilinear", align_corners=False)
    return yuv_to_rgb(y, uv, color).clamp_(0.0, 255.0)


@dataclass(frozen=True)
class Letterbox:
    """How one frame was placed in the model input: ``input = frame * gain + pad``."""

    src_h: int
    src_w: int
    new_h: int
    new_w: int
    top: int
    left: int

    @property
    def gain_x(self) -> float:
        return self.new_w / self.src_w

    @property
    def gain_y(self) -> float:
        return self.new_h / self.src_h


def _fit(src_h: int, src_w: int, size: int) -> tuple[int, int]:
    if src_h < 1 or src_w < 1:
        raise ValueError(f"frame size must be positive, got {src_h}x{src_w}")
    r = min(size / src_h, size / src_w)
    return max(round(src_h * r), 1), max(round(src_w * r), 1)


def letterbox_params(src_h: int, src_w: int, size: int, canvas: tuple[int, int] | None = None) -> Letterbox:
    """Ultralytics' LetterBox(center=True) arithmetic: fit in ``size`` x ``size``, centre on ``canvas``.

    ``canvas`` (h, w) defaults to the square ``size`` (LetterBox(auto=False)).
    """
    new_h, new_w = _fit(src_h, src_w, size)
    ch, cw = canvas or (size, size)
    dw, dh = (cw - new_w) / 2, (ch - new_h) / 2
    return Letterbox(src_h, src_w, new_h, new_w, top=round(dh - 0.1), left=round(dw - 0.1))


def batch_canvas(
    shapes: list[tuple[int, int]], size: int, *, rect: bool, stride: int = 32
) -> tuple[int, int]:
    """The input (h, w) for a batch. ``rect``: the smallest stride multiple that holds every letterboxed
    frame (for frames of one shape this is Ultralytics' LetterBox(auto=True)); else the square."""
    if not rect:
        return size, size
    fits = [_fit(h, w, size) for h, w in shapes]
    ch = max(h for h, _ in fits)
    cw = max(w for _, w in fits)
    return size - (size - ch) // stride * stride, size - (size - cw) // stride * stride


def letterbox_batch(
    frames: list[torch.Tensor],
    *,
    size: int,
    dtype: torch.dtype = torch.float32,
    rect: bool = False,
    nv12: list[ColorSpec | None] | None = None,
) -> tuple[torch.Tensor, list[Letterbox]]:
    """Letterbox frames into one (B, 3, H', W') RGB tensor scaled to 0..1, on the frames' device.

    Frames are RGB uint8 (H, W, 3), or NV12 (H * 3 // 2, W) where ``nv12[i]`` gives frame i's colour
    spec. (H', W') is ``size`` square, or with ``rect`` the smallest stride-multiple canvas (models
    exported with dynamic height and width). Frames of one resolution and format are resized together.
    """
    if not frames:
        raise ValueError("letterbox_batch needs at least one frame")
    specs = nv12 or [None] * len(frames)
    device = frames[0].device
    shapes = [
        (int(f.shape[0]), int(f.shape[1])) if spec is None else (int(f.shape[0]) * 2 // 3, int(f.shape[1]))
        for f, spec in zip(frames, specs, strict=True)
    ]
    ch, cw = batch_canvas(shapes, size, rect=rect)
    out = torch.full((len(frames), 3, ch, cw), PAD_VALUE / 255.0, dtype=dtype, device=device)
    params = [letterbox_params(h, w, size, (ch, cw)) for h, w in shapes]
    groups: dict[tuple[tuple[int, int], ColorSpec | None], list[int]] = {}
    for i, key in enumerate(zip(shapes, specs, strict=True)):
        groups.setdefault(key, []).append(i)
    for (_, spec), idx in groups.items():
        p = params[idx[0]]
        stacked = torch.stack([frames[i] for i in idx])
        if spec is not None:
            x = nv12_to_rgb(stacked, color=spec, out_hw=(p.new_h, p.new_w))
        elif device.type == "cpu":  # resized as 8-bit (channels-last, vectorised), then made float:
            # about 7x faster at 1080p; pixels within 1 of resizing floats and rounding (the 8-bit
            # kernel rounds its weights), equal at 1080p -> 640
            x = stacked.permute(0, 3, 1, 2)
            if (p.new_h, p.new_w) != (p.src_h, p.src_w):
                x = F.interpolate(x, size=(p.new_h, p.new_w), mode="bilinear", align_corners=False)
            x = x.float()
        else:
            x = stacked.permute(0, 3, 1, 2).float()
            if (p.new_h, p.new_w) != (p.src_h, p.src_w):
                x = F.interpolate(x, size=(p.new_h, p.new_w), mode="bilinear", align_corners=False)
        x = x.round_().clamp_(0, 255).div_(255.0).to(dtype)  # an 8-bit image, as cv2.resize gives
        out[idx, :, p.top : p.top + p.new_h, p.left : p.left + p.new_w] = x
    return out, params


def letterbox_frames(
    frames: list[Frame], *, size: int, dtype: torch.dtype = torch.float32, rect: bool = False
) -> tuple[torch.Tensor, list[Letterbox]]:
    """``letterbox_batch`` for Frames of any pixel format."""
    specs = [f.color if f.pixel_format == "nv12" else None for f in frames]
    return letterbox_batch([f.pixels() for f in frames], size=size, dtype=dtype, rect=rect, nv12=specs)


def boxes_to_frame(xyxy: torch.Tensor, lb: Letterbox) -> torch.Tensor:
    """Map xyxy boxes from model-input pixels back to the frame's pixels, clipped to the frame."""
    out = xyxy.clone()
    out[:, [0, 2]] = ((out[:, [0, 2]] - lb.left) / lb.gain_x).clamp(0, lb.src_w)
    out[:, [1, 3]] = ((out[:, [1, 3]] - lb.top) / lb.gain_y).clamp(0, lb.src_h)
    return out
