"""The incident rules, one per file, and the registry that pairs each with its config section.

A new rule is one ``Rule`` subclass (its ``type`` is the name of its section under ``rules:`` and
``config`` that section's class), one field in ``RulesConfig``, one entry here and scenario files
in ``pipeline/accuracy/scenario_library``; ``tests/test_rules.py`` checks that the registry and the
config agree.
"""

from __future__ import annotations

import difflib
import logging

from ...config import Config, RulesConfig
from ...errors import ConfigError
from ..filters import check_filter_keys
from ..zones import Zone
from .accident import AccidentRule
from .assault import AssaultRule
from .base import CAMERA, Rule
from .encroachment import EncroachmentRule
from .stray_animal import StrayAnimalRule
from .theft import TheftRule

RULES: tuple[type[Rule], ...] = (EncroachmentRule, StrayAnimalRule, AccidentRule, AssaultRule, TheftRule)

log = logging.getLogger(__name__)


def roles_read(rules: RulesConfig) -> set[str]:
    """Every role some rule reads (posture included), whether the rule is enabled or not."""
    out = {"fallen_person", "fight"}
    for r in RULES:
        out |= set(getattr(getattr(rules, r.type), "roles", r.roles))
    return out


def check_roles(
    rules: RulesConfig,
    provided: set[str],
    *,
    camera: str | None = None,
    strict: set[str] | None = None,
    warn: bool = True,
) -> None:
    """A rule's ``roles`` that no loaded model provides are an error (a typo like ``animals`` would
    otherwise be a rule that never fires); an enabled rule left at its defaults that none of the
    models can feed gets a warning. ``camera``: the check of one camera (``provided``: the roles of
    the models it runs); errors only for the rules in ``strict`` (those whose roles it sets itself)."""
    where = f"camera {camera}: " if camera else ""
    for r in RULES:
        section = getattr(rules, r.type)
        if not section.enabled:
            continue
        wanted = tuple(getattr(section, "roles", r.roles))
        missing = [role for role in wanted if role not in provided]
        explicit = r.type in strict if strict is not None else "roles" in section.model_fields_set
        if explicit and missing:
            field = f"cameras[{camera}].rules" if camera else "rules"
            models = "model it runs" if camera else "loaded model"
            raise ConfigError(
                f"{field}.{r.type}.roles names {missing[0]!r}, which no {models} provides "
                f"(they provide: {', '.join(sorted(provided)) or 'nothing'})"
            )
        if warn and not any(role in provided for role in wanted):
            log.warning(
                "%srule %s cannot fire: none of the models provides %s", where, r.type, " or ".join(wanted)
            )


def build_rules(rules: RulesConfig, *, camera_id: str, zones: list[Zone]) -> list[Rule]:
    """One instance of every registered rule for one camera, with its section of the config."""
    return [r(getattr(rules, r.type), camera_id=camera_id, zones=zones) for r in RULES]


def check_loaded_roles(
    cfg: Config,
    model_roles: dict[str, dict[str, list[str]]],
    *,
    warn: bool = True,
    class_names: tuple[str, ...] = (),
) -> None:
    """At load, with the models' role maps (model id -> role -> classes): a role a config gives a
    model that no rule reads is a typo (``vehicel``); the rules' roles against what the models
    provide, over all of them and per camera that chose some; a model none of whose classes has a
    role is a warning."""
    read = roles_read(cfg.rules)
    for m in cfg.models:
        for role in m.roles or {}:
            if role not in read:
                near = difflib.get_close_matches(role, sorted(read), n=1)
                raise ConfigError(
                    f"models[{m.key}].roles: no rule reads role {role!r}"
                    + (f" (did you mean {near[0]!r}?)" if near else "")
                    + f"; the rules read: {', '.join(sorted(read))}"
                )
    provided = {key: {r for r, classes in roles.items() if classes} for key, roles in model_roles.items()}
    classes = set(class_names) | {c for roles in model_roles.values() for cs in roles.values() for c in cs}
    check_filter_keys(cfg, read | set().union(*provided.values(), set()), classes)
    for key, roles in provided.items():
        if warn and not roles:
            log.warning("model %s: none of its classes has a role: no rule reads its detections", key)
    check_roles(cfg.rules, set().union(*provided.values()), warn=warn)
    for cam in cfg.cameras:
        if cam.models or cam.rules:
            runs = cam.models or list(provided)
            own = {t for t, v in (cam.rules or {}).items() if isinstance(v, dict) and "roles" in v}
            rules = cfg.camera_rules(cam)
            provides = set().union(*(provided.get(k, set()) for k in runs))
            check_roles(rules, provides, camera=cam.id, strict=own, warn=warn)


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
    "check_loaded_roles",
    "check_roles",
    "roles_read",
]
