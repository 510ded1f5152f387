"""Changes to a running edge's cameras: what a new config (a reload, an API call) changes, and how.

Only cameras change while the edge runs. A camera whose source settings changed (URL, live, loop,
realtime, timeouts, RTSP transport: anything but what follows) is restarted; one whose analytics
changed (zones, lines, ground plane, zones_drawn_on, filters, schedule, rules, models) is
reconfigured between batches,
its decoding untouched (its open incidents end with reason ``camera_changed``); a new rate goes to
its sampler; a removed camera's open incidents end with reason ``camera_removed``. Every other
camera goes on untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import CameraConfig, Config, parse_config
from .errors import ConfigError

# what a change rebuilds a camera's analytics for (its decoding goes on); any other setting (the
# source, live, loop, realtime, timeouts, rtsp_transport ...) restarts the camera
ANALYTICS_FIELDS = (
    "zones",
    "lines",
    "ground_plane",
    "zones_drawn_on",
    "filters",
    "schedule",
    "rules",
    "models",
)
RATE_FIELDS = ("analytics_fps",)
INFO_FIELDS = ("location",)  # only what events say


@dataclass
class Plan:
    removed: list[str] = field(default_factory=list)
    added: list[CameraConfig] = field(default_factory=list)
    restarted: list[CameraConfig] = field(default_factory=list)
    reconfigured: list[CameraConfig] = field(default_factory=list)  # analytics rebuilt
    rate: list[CameraConfig] = field(default_factory=list)  # only the sampling rate or the location

    @property
    def empty(self) -> bool:
        return not (self.removed or self.added or self.restarted or self.reconfigured or self.rate)

    def summary(self) -> dict[str, list[str]]:
        return {
            "removed": list(self.removed),
            "added": [c.id for c in self.added],
            "restarted": [c.id for c in self.restarted],
            "reconfigured": [c.id for c in self.reconfigured],
            "rate_or_location": [c.id for c in self.rate],
        }


def plan(old: Config, new: Config) -> Plan:
    """What turns ``old`` into ``new``; ConfigError if something besides the cameras changed."""
    before = old.model_dump(mode="json", exclude={"cameras"})
    after = new.model_dump(mode="json", exclude={"cameras"})
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if changed:
        raise ConfigError(
            f"only cameras can change while the edge runs; changed: {', '.join(changed)} "
            "(restart the edge for these)"
        )
    olds = {c.id: c for c in old.cameras}
    news = {c.id: c for c in new.cameras}
    p = Plan(removed=[cid for cid in olds if cid not in news])
    for cid, cam in news.items():
        was = olds.get(cid)
        if was is None:
            p.added.append(cam)
            continue
        a, b = was.model_dump(mode="json"), cam.model_dump(mode="json")
        diff = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
        if not diff:
            continue
        if diff - set(ANALYTICS_FIELDS) - set(RATE_FIELDS) - set(INFO_FIELDS):
            p.restarted.append(cam)
        elif diff & set(ANALYTICS_FIELDS):
            p.reconfigured.append(cam)
        else:
            p.rate.append(cam)
    return p


def with_cameras(
    cfg: Config, cameras: list[dict[str, Any]], *, source: str, base_dir: Path | None = None
) -> Config:
    """``cfg`` with another camera list, checked as the config loader checks a file (the same
    one-line errors, prefixed with ``source``; relative file sources relative to ``base_dir``)."""
    data = cfg.model_dump(mode="json", exclude_unset=True)
    if base_dir is not None:
        cameras = [dict(c) for c in cameras]
        for c in cameras:
            src = c.get("source")
            if isinstance(src, str) and "://" not in src and not Path(src).is_absolute():
                c["source"] = str(base_dir / src)
    data["cameras"] = cameras
    data.pop("model", None)
    data["models"] = [m.model_dump(mode="json", exclude_unset=True) for m in cfg.models]
    return parse_config(data, source=source)


def camera_dicts(cfg: Config) -> list[dict[str, Any]]:
    return [c.model_dump(mode="json", exclude_unset=True) for c in cfg.cameras]
