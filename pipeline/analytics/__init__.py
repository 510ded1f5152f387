"""Zones and lines per camera, and one small stateful rule per incident type."""

from .encroachment import EncroachmentRule
from .zones import Zone

__all__ = ["EncroachmentRule", "Zone"]
