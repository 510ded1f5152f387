"""RGB frames -> letterboxed float NCHW, in torch, on the frames' device (same maths as Ultralytics)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

PAD_VALUE = 114


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
    frames: list[torch.Tensor], *, size: int, dtype: torch.dtype = torch.float32, rect: bool = False
) -> tuple[torch.Tensor, list[Letterbox]]:
    """Letterbox RGB uint8 (H, W, 3) frames into one (B, 3, H', W') tensor scaled to 0..1.

    (H', W') is ``size`` square, or with ``rect`` the smallest stride-multiple canvas (models exported
    with dynamic height and width). Frames of the same resolution are resized together in one call.
    """
    if not frames:
        raise ValueError("letterbox_batch needs at least one frame")
    device = frames[0].device
    shapes = [(int(f.shape[0]), int(f.shape[1])) for f in frames]
    ch, cw = batch_canvas(shapes, size, rect=rect)
    out = torch.full((len(frames), 3, ch, cw), PAD_VALUE / 255.0, dtype=dtype, device=device)
    params = [letterbox_params(h, w, size, (ch, cw)) for h, w in shapes]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, f in enumerate(frames):
        groups.setdefault((int(f.shape[0]), int(f.shape[1])), []).append(i)
    for idx in groups.values():
        p = params[idx[0]]
        x = torch.stack([frames[i] for i in idx]).permute(0, 3, 1, 2).float()
        if (p.new_h, p.new_w) != (p.src_h, p.src_w):
            x = F.interpolate(x, size=(p.new_h, p.new_w), mode="bilinear", align_corners=False)
        x = x.round_().clamp_(0, 255).div_(255.0).to(dtype)  # an 8-bit image, as cv2.resize gives
        out[idx, :, p.top : p.top + p.new_h, p.left : p.left + p.new_w] = x
    return out, params


def boxes_to_frame(xyxy: torch.Tensor, lb: Letterbox) -> torch.Tensor:
    """Map xyxy boxes from model-input pixels back to the frame's pixels, clipped to the frame."""
    out = xyxy.clone()
    out[:, [0, 2]] = ((out[:, [0, 2]] - lb.left) / lb.gain_x).clamp(0, lb.src_w)
    out[:, [1, 3]] = ((out[:, [1, 3]] - lb.top) / lb.gain_y).clamp(0, lb.src_h)
    return out
