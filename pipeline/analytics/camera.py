"""Everything one camera's analysed frames go through: tracker, masks, schedules, all the rules."""

from __future__ import annotations

import logging
import time

import numpy as np

from ..config import CameraConfig, Config, RuleConfig
from ..detect.roles import common_label_roles
from ..track import Tracker
from ..types import Detections, FrameSize, Incident, Track
from .filters import Filters
from .memory import TrackMemory
from .rules import Rule, build_rules
from .zones import Line, Zone, bottom_centres, camera_ground, camera_lines, camera_zones

log = logging.getLogger(__name__)


def in_schedule(schedule: list[str], wall_time: float) -> bool:
    """Whether local wall-clock time falls in one of the ``HH:MM-HH:MM`` ranges (ranges may wrap
    midnight, 22:00-06:00); an empty schedule is always on."""
    if not schedule:
        return True
    lt = time.localtime(wall_time)
    now = lt.tm_hour * 60 + lt.tm_min
    for entry in schedule:
        a, b = entry.split("-")
        start = int(a[:2]) * 60 + int(a[3:])
        end = int(b[:2]) * 60 + int(b[3:])
        if (start <= now < end) if start <= end else (now >= start or now < end):
            return True
    return False


class CameraAnalytics:
    """``roles``: class name -> roles of the loaded detectors (default: the common COCO names');
    ``model_names``: the set's detectors, bit by bit of a detection's ``sources``."""

    def __init__(
        self,
        cfg: Config,
        cam: int | CameraConfig,
        class_names: tuple[str, ...] = (),
        *,
        roles: dict[str, frozenset[str]] | None = None,
        model_names: tuple[str, ...] = (),
    ) -> None:
        self.tracker = Tracker(cfg.tracker, class_names, model_names)
        self.roles = roles if roles is not None else common_label_roles()
        self.last: tuple[float, float, FrameSize] | None = (
            None  # media time, Unix time, size of the last frame
        )
        self._wall_offsets: dict[str, float] = {}  # open incident -> its Unix time offset
        self.configure(cfg, cfg.cameras[cam] if isinstance(cam, int) else cam)

    def configure(self, cfg: Config, cam: CameraConfig) -> list[Incident]:
        """(Re)build what depends on the camera's settings: zones, lines, schedules, rules, track
        memory. The tracker goes on (track ids stay). A change ends the open incidents (reason
        ``camera_changed``): they are returned, to be published."""
        ended = self.close("camera_changed") if hasattr(self, "rules") else []
        self.cam = cam
        rules = cfg.camera_rules(cam)
        self.lines: list[Line] = camera_lines(cam)
        ground = camera_ground(cam)
        self.memory = TrackMemory(
            self.roles,
            fallen_aspect=rules.fallen_aspect,
            forget_seconds=max(cfg.tracker.max_lost_seconds * 2, 5.0),
            lines=self.lines,
            ground=ground,
        )
        self.filters = Filters(cfg.camera_filters(cam), ground)
        self.zones: list[Zone] = camera_zones(cam)
        for zone, zcfg in zip(self.zones, cam.zones, strict=True):
            zone.filters = Filters(dict(zcfg.filters), ground) if zcfg.filters else None
        self._frame_size: tuple[int, int] | None = None
        self.zone_schedules = {z.name: z.schedule for z in cam.zones}
        self.masks = [z for z in self.zones if "mask" in z.kinds]
        self.rules: list[Rule] = build_rules(rules, camera_id=cam.id, zones=self.zones)
        return ended

    def close(self, reason: str) -> list[Incident]:
        """End every open incident of this camera at its last analysed frame (``details.end_reason``)."""
        if self.last is None:
            return []
        t, wall, _ = self.last
        out = [inc for rule in self.rules for inc in rule.lifecycle.close(t, reason)]
        for inc in out:
            inc.wall_offset = self._wall_offsets.pop(inc.incident_id, wall - t)
        return out

    def analyse(
        self, dets: Detections, *, t: float, wall_time: float, frame_w: int, frame_h: int
    ) -> list[Incident]:
        """Track, then run every rule; ``t`` is the camera's media time, ``wall_time`` the Unix time the
        frame shows (for schedules, and for the incidents' times)."""
        return self.analyse_tracks(
            self.tracker.update(dets, t), t=t, wall_time=wall_time, frame_w=frame_w, frame_h=frame_h
        )

    def _check_frame(self, frame_w: int, frame_h: int) -> None:
        """Once per frame size: warn about zones that lie wholly outside the frame."""
        if self._frame_size == (frame_w, frame_h):
            return
        self._frame_size = (frame_w, frame_h)
        for z in self.zones:
            if z.outside_frame(frame_w, frame_h):
                log.warning(
                    "camera %s: zone %s lies wholly outside the %dx%d frame: nothing can be inside it",
                    self.cam.id,
                    z.name,
                    frame_w,
                    frame_h,
                )

    def analyse_tracks(
        self, tracks: list[Track], *, t: float, wall_time: float, frame_w: int, frame_h: int
    ) -> list[Incident]:
        self._check_frame(frame_w, frame_h)
        self.last = (t, wall_time, FrameSize(self.cam.id, frame_w, frame_h))
        if self.masks and tracks:
            points = bottom_centres(np.array([tr.xyxy for tr in tracks]))
            masked = np.zeros(len(tracks), bool)
            for m in self.masks:
                masked |= m.contains(points, frame_w=frame_w, frame_h=frame_h)
            tracks = [tr for tr, hidden in zip(tracks, masked, strict=True) if not hidden]
        self.memory.frame_size = (frame_w, frame_h)
        infos = self.memory.update(tracks, t)
        if self.filters:  # false-alarm controls: objects the rules may not look at
            infos = [i for i in infos if self.filters.admits(i, frame_w, frame_h)]
        open_zones = {name for name, sched in self.zone_schedules.items() if in_schedule(sched, wall_time)}
        out: list[Incident] = []
        for rule in self.rules:
            if not rule.cfg.enabled:
                continue
            active = (
                rule.evaluate(infos, t, frame_w, frame_h, open_zones) if self._on(rule.cfg, wall_time) else {}
            )
            out += rule.lifecycle.update(active, t)
        for inc in out:  # all of an incident's times are mapped to Unix time with the offset of its start
            if inc.status == "start":
                self._wall_offsets[inc.incident_id] = wall_time - t
            inc.wall_offset = self._wall_offsets.get(inc.incident_id, wall_time - t)
            if inc.status == "end":
                self._wall_offsets.pop(inc.incident_id, None)
        return out

    def _on(self, cfg: RuleConfig, wall_time: float) -> bool:
        """A rule runs when enabled and both its schedule and the camera's are on."""
        return (
            cfg.enabled and in_schedule(cfg.schedule, wall_time) and in_schedule(self.cam.schedule, wall_time)
        )
