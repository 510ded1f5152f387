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


def letterbox_params(src_h: int, src_w: int, size: int) -> Letterbox:
    """Ultralytics' LetterBox(auto=False, center=True) arithmetic for a square ``size`` input."""
    if src_h < 1 or src_w < 1:
        raise ValueError(f"frame size must be positive, got {src_h}x{src_w}")
    r = min(size / src_h, size / src_w)
    new_w, new_h = max(round(src_w * r), 1), max(round(src_h * r), 1)
    dw, dh = (size - new_w) / 2, (size - new_h) / 2
    return Letterbox(src_h, src_w, new_h, new_w, top=round(dh - 0.1), left=round(dw - 0.1))


def letterbox_batch(
    frames: list[torch.Tensor], *, size: int, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, list[Letterbox]]:
    """Letterbox RGB uint8 (H, W, 3) frames into one (B, 3, size, size) tensor scaled to 0..1.

    Frames of the same resolution are resized together in one call.
    """
    if not frames:
        raise ValueError("letterbox_batch needs at least one frame")
    device = frames[0].device
    out = torch.full((len(frames), 3, size, size), PAD_VALUE / 255.0, dtype=dtype, device=device)
    params = [letterbox_params(int(f.shape[0]), int(f.shape[1]), size) for f in frames]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, f in enumerate(frames):
        groups.setdefault((int(f.shape[0]), int(f.shape[1])), []).append(i)
    for idx in groups.values():
        p = params[idx[0]]
        x = torch.stack([frames[i] for i in idx]).permute(0, 3, 1, 2).float()
        if (p.new_h, p.new_w) != (p.src_h, p.src_w):
            x = F.interpolate(x, size=(p.new_h, p.new_w), mode="bilinear", align_corners=False)
        x = x.clamp_(0, 255).div_(255.0).to(dtype)
        out[idx, :, p.top : p.top + p.new_h, p.left : p.left + p.new_w] = x
    return out, params


def boxes_to_frame(xyxy: torch.Tensor, lb: Letterbox) -> torch.Tensor:
    """Map xyxy boxes from model-input pixels back to the frame's pixels, clipped to the frame."""
    out = xyxy.clone()
    out[:, [0, 2]] = ((out[:, [0, 2]] - lb.left) / lb.gain_x).clamp(0, lb.src_w)
    out[:, [1, 3]] = ((out[:, [1, 3]] - lb.top) / lb.gain_y).clamp(0, lb.src_h)
    return out
