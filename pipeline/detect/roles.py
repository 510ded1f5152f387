"""Roles: what the rules read a model's classes as (``person``, ``vehicle``, ``animal`` ...).

A model's roles come from its config (``models[].roles``), else from the manifest, else (a model
given by path) from the common COCO names it has. Every class a role names must be one of the
model's classes: a typo is an error at load, not a rule that never fires.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from ..config import COMMON_CLASS_ROLES, ModelConfig
from ..errors import ConfigError

LabelRoles = dict[str, frozenset[str]]  # class name -> its roles


def role_map(m: ModelConfig, class_names: tuple[str, ...]) -> dict[str, list[str]]:
    """Role -> class names for one loaded model (classes checked against what it has)."""
    where = f"models[{m.key}].roles"
    roles = m.roles
    if roles is None and m.name is not None and "@" in m.name:
        from ..ml.versions import load_version

        roles = load_version(m.name).roles
        where = f"the roles of version {m.name}"
    elif roles is None and m.name is not None:
        from ..registry import load_manifest

        entry = load_manifest().get(m.name, {})
        roles = entry.get("roles")
        where = f"the manifest's roles of {m.name}"
    if roles is None:
        have = set(class_names)
        return {r: [c for c in cs if c in have] for r, cs in COMMON_CLASS_ROLES.items() if have & set(cs)}
    if class_names:  # a scripted detector names its classes in its file; nothing to check against here
        for role, classes in roles.items():
            for c in classes:
                if c not in class_names:
                    near = difflib.get_close_matches(c, class_names, n=1)
                    hint = f" (did you mean {near[0]!r}?)" if near else ""
                    raise ConfigError(
                        f"{where}: role {role!r} names class {c!r}, which model {m.key} does not have{hint}; "
                        f"its classes: {', '.join(class_names[:12])}{' ...' if len(class_names) > 12 else ''}"
                    )
    return {r: list(cs) for r, cs in roles.items()}


def label_roles(maps: Iterable[Mapping[str, list[str]]]) -> LabelRoles:
    """Class name -> roles over several models' role maps (a name two models share gets both's)."""
    out: dict[str, frozenset[str]] = {}
    for roles in maps:
        for role, classes in roles.items():
            for c in classes:
                out[c] = out.get(c, frozenset()) | {role}
    return out


def common_label_roles() -> LabelRoles:
    """The roles of the common class names (scripted detections, scenario files)."""
    return label_roles([COMMON_CLASS_ROLES])
