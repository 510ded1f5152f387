"""``device: auto | cpu | cuda[:N]``: a device asked for by name and missing is an error."""

from __future__ import annotations

import torch

from .errors import BackendUnavailableError


def resolve_device(device: str) -> str:
    if device == "cpu":
        return "cpu"
    has_cuda = torch.cuda.is_available()
    if device == "auto":
        return "cuda:0" if has_cuda else "cpu"
    if not has_cuda:
        raise BackendUnavailableError(f"device {device!r} asked for, but torch sees no CUDA GPU")
    idx = int(device.split(":")[1]) if ":" in device else 0
    if idx >= torch.cuda.device_count():
        raise BackendUnavailableError(
            f"device {device!r} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist"
        )
    return f"cuda:{idx}"
