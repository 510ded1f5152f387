"""Zones and lines drawn in the console's editor, checked by the config's own models and written as
the YAML of a camera's ``zones:`` and ``lines:`` (normalised coordinates: any resolution)."""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError

from ..config import LineConfig, ZoneConfig
from ..errors import ConfigError
from ..events.heartbeat import ID_RE

MAX_SHAPES = 64


def _round(points: Any) -> Any:
    if not isinstance(points, list):
        return points
    return [[round(float(v), 4) for v in p] if isinstance(p, list) else p for p in points]


def export_yaml(camera_id: str, body: Any) -> str:
    """``{"zones": [{name, polygon, kinds}], "lines": [{name, points}]}`` with points in 0..1 -> YAML;
    ConfigError naming the shape and the field when one would not load."""
    head = f"# zones and lines of camera {camera_id}: put these keys in its entry under cameras:\n"
    snippet = {k: v for k, v in checked(camera_id, body).items() if v}
    return head + yaml.safe_dump(snippet, sort_keys=False, default_flow_style=None, width=100)


def checked(camera_id: str, body: Any) -> dict[str, Any]:
    """The camera's ``zones`` and ``lines`` as its config takes them (normalised), checked."""
    if not isinstance(body, dict):
        raise ConfigError("expected a JSON object with 'zones' and 'lines'")
    if not ID_RE.fullmatch(camera_id):
        raise ConfigError(f"camera_id: expected {ID_RE.pattern}, got {camera_id[:80]!r}")
    zones_in, lines_in = body.get("zones") or [], body.get("lines") or []
    if not isinstance(zones_in, list) or not isinstance(lines_in, list):
        raise ConfigError("'zones' and 'lines' must be lists")
    if len(zones_in) + len(lines_in) > MAX_SHAPES:
        raise ConfigError(f"at most {MAX_SHAPES} zones and lines per camera")
    zones: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []
    names: set[str] = set()
    for kind, items, model, out in (
        ("zone", zones_in, ZoneConfig, zones),
        ("line", lines_in, LineConfig, lines),
    ):
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise ConfigError(f"{kind} {i + 1}: expected an object")
            item = dict(item)
            for key in ("polygon", "points"):
                if key in item:
                    item[key] = _round(item[key])
            item["normalized"] = True
            try:
                cfg = model.model_validate(item)
            except (ValidationError, TypeError, ValueError) as err:
                if not isinstance(err, ValidationError):
                    raise ConfigError(f"{kind} {i + 1}: points must be [x, y] numbers") from None
                first = err.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "shape"
                raise ConfigError(f"{kind} {item.get('name') or i + 1!r}: {where}: {first['msg']}") from None
            if cfg.name in names:
                raise ConfigError(f"two zones or lines are named {cfg.name!r}")
            names.add(cfg.name)
            out.append(cfg.model_dump(mode="json", exclude_defaults=True) | {"normalized": True})
    if not zones and not lines:
        raise ConfigError("nothing drawn: add a zone or a line first")
    return {"zones": zones, "lines": lines}


def normalised(shapes: list[dict[str, Any]], key: str, width: int, height: int) -> list[dict[str, Any]]:
    """A camera's configured zones (``key`` polygon) or lines (``points``) in 0..1, for the editor
    (pixel coordinates divided by the frame size they were drawn on: the camera's ``zones_drawn_on``,
    else the frame size its events report)."""
    out = []
    for shape in shapes:
        pts = shape.get(key) or []
        if not shape.get("normalized"):
            if not width or not height:
                continue  # pixels, and no frame size known to scale them: not shown
            pts = [[x / width, y / height] for x, y in pts]
        out.append({**shape, key: [[round(x, 4), round(y, 4)] for x, y in pts], "normalized": True})
    return out
