"""Detector backends behind one interface, and the decode + NMS of YOLO outputs."""

from .base import Detector, DetectorInfo
from .factory import create_detector

__all__ = ["Detector", "DetectorInfo", "create_detector"]
