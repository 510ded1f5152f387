"""Camera sources: demux + decode per camera thread, and the muxer that batches across cameras."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..errors import BackendUnavailableError
from .cpu import CameraSource, CameraState
from .mux import Muxer

__all__ = ["CameraSource", "CameraState", "Muxer", "choose_decoder", "make_source"]


def choose_decoder(decoder: str, device: str) -> str:
    """``pyav`` or ``nvdec`` for the config's ``decoder`` on a resolved device (named and missing: error)."""
    from .nvdec import load_nvc, nvdec_available

    on_gpu = device.startswith("cuda")
    if decoder == "pyav":
        return "pyav"
    if decoder == "nvdec":
        if not on_gpu:
            raise BackendUnavailableError(f"decoder 'nvdec' needs a CUDA device, but the device is {device}")
        load_nvc()  # raises with the reason when PyNvVideoCodec or the driver is missing
        return "nvdec"
    return "nvdec" if on_gpu and nvdec_available() else "pyav"


def make_source(
    cam: Any,
    *,
    decoder: str,
    device: str,
    fallback: bool = True,
    on_decoder: Callable[[str, str], None] | None = None,
    **kwargs: Any,
) -> CameraSource:
    """A camera's source for the chosen decoder; with NVDEC, ``fallback`` lets a stream it cannot
    decode go to PyAV (``decoder: auto``), and ``on_decoder`` hears of it."""
    if decoder == "nvdec":
        from .nvdec import NvdecCameraSource

        return NvdecCameraSource(
            cam, device=torch.device(device), fallback=fallback, on_decoder=on_decoder, **kwargs
        )
    return CameraSource(cam, **kwargs)
