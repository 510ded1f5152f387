"""``device: auto | cpu | cuda[:N]``: a device asked for by name and missing is an error; and how many
batches run in the model at once there."""

from __future__ import annotations

import os

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


def inference_workers(asked: int | None, device: str) -> int:
    """Batches in the model at once (``batching.workers``; None: chosen for ``device``).

    On a CPU, two batches each on half the cores beat one batch on all of them: a model's operators
    scale sublinearly over threads, and a thread taken away by decoding stalls a batch on one core
    only, not every operator's join (``benchmarks/levers.py``). On a GPU one batch at a time.
    """
    if asked is not None:
        return asked
    return min(2, os.cpu_count() or 1) if device == "cpu" else 1


def model_threads(asked: int, workers: int) -> int:
    """Intra-op threads of a CPU model (``models[].threads``; 0: the cores shared out between the
    inference workers)."""
    return asked or max(1, (os.cpu_count() or 1) // workers)
