"""Camera sources: demux + decode per camera thread, and the muxer that batches across cameras."""

from .cpu import CameraSource, CameraState
from .mux import Muxer

__all__ = ["CameraSource", "CameraState", "Muxer"]
