"""Zones and lines per camera, the shared track memory, and the incident rules (``rules/``)."""

from .rules import EncroachmentRule
from .zones import Zone

__all__ = ["EncroachmentRule", "Zone"]
