"""The incident rules, one per file, and the registry that pairs each with its config section.

A new rule is one ``Rule`` subclass (its ``type`` is the name of its section under ``rules:`` and
``config`` that section's class), one field in ``RulesConfig``, one entry here and scenario files
in ``tests/scenarios``; ``tests/test_rules.py`` checks that the registry and the config agree.
"""

from __future__ import annotations

import logging

from ...config import RulesConfig
from ...errors import ConfigError
from ..zones import Zone
from .accident import AccidentRule
from .assault import AssaultRule
from .base import CAMERA, Rule
from .encroachment import EncroachmentRule
from .stray_animal import StrayAnimalRule
from .theft import TheftRule

RULES: tuple[type[Rule], ...] = (EncroachmentRule, StrayAnimalRule, AccidentRule, AssaultRule, TheftRule)

log = logging.getLogger(__name__)


def check_roles(rules: RulesConfig, provided: set[str], *, camera: str | None = None) -> None:
    """A rule's ``roles`` that no loaded model provides are an error (a typo like ``animals`` would
    otherwise be a rule that never fires); an enabled rule left at its defaults that none of the
    models can feed gets a warning. ``camera``: the check of one camera that runs some of the
    models (``provided``: their roles): warnings only."""
    where = f"camera {camera}: " if camera else ""
    for r in RULES:
        section = getattr(rules, r.type)
        if not section.enabled:
            continue
        wanted = tuple(getattr(section, "roles", r.roles))
        missing = [role for role in wanted if role not in provided]
        if camera is None and "roles" in section.model_fields_set and missing:
            raise ConfigError(
                f"rules.{r.type}.roles names {missing[0]!r}, which no loaded model provides "
                f"(they provide: {', '.join(sorted(provided)) or 'nothing'})"
            )
        if not any(role in provided for role in wanted):
            log.warning(
                "%srule %s cannot fire: none of the models provides %s", where, r.type, " or ".join(wanted)
            )


def build_rules(rules: RulesConfig, *, camera_id: str, zones: list[Zone]) -> list[Rule]:
    """One instance of every registered rule for one camera, with its section of the config."""
    return [r(getattr(rules, r.type), camera_id=camera_id, zones=zones) for r in RULES]


__all__ = [
    "CAMERA",
    "RULES",
    "AccidentRule",
    "AssaultRule",
    "EncroachmentRule",
    "Rule",
    "StrayAnimalRule",
    "TheftRule",
    "build_rules",
    "check_roles",
]
