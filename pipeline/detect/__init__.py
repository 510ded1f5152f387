"""Detector backends behind one interface, the set that runs several on one batch, and the decode
+ NMS of YOLO outputs."""

from .base import Detector, DetectorInfo
from .detector_set import DetectorSet
from .factory import as_set, create_detector, create_detectors

__all__ = ["Detector", "DetectorInfo", "DetectorSet", "as_set", "create_detector", "create_detectors"]
