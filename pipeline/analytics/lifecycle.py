"""One incident per occurrence: confirm, start, update, end, cooldown.

A rule reports, every analysed frame, which keys (a zone, a pair of tracks, the camera...) are
active and with which objects. ``Lifecycle`` turns that into start / update / end steps. A key
starts an incident once it has been active for ``confirm_seconds`` of media time (the same time at
any ``analytics_fps``; a gap of up to ``GLITCH_SECONDS``, a frame or two where the object is hidden
or missed, does not break the run). An incident ends once its key has been inactive for
``clear_seconds``; after the end, the key waits ``cooldown_seconds`` before a new incident, unless
the condition that activates it began before that end (a blockage that went on while the last
incident ended: the cooldown never hides it).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..config import RuleConfig
from ..types import Incident, TrackedObject
from .memory import TrackInfo

GLITCH_SECONDS = 0.5  # a key inactive this long or less keeps confirming (a missed frame or two)


@dataclass
class Active:
    """One active key this frame."""

    objects: list[TrackInfo]
    zone: str | None = None
    started_at: float | None = None  # when the condition began (default: when it was confirmed)
    details: dict[str, float | int | str] = field(default_factory=dict)


@dataclass
class _KeyState:
    active_since: float | None = None  # start of the current unbroken run of active frames
    incident: Incident | None = None
    last_active_t: float = 0.0
    last_update_t: float = 0.0
    cooldown_until: float = float("-inf")
    ended_at: float = float("-inf")  # when the last incident of this key ended
    object_ids: frozenset[int] = frozenset()


class Lifecycle:
    def __init__(self, cfg: RuleConfig, *, type: str, camera_id: str) -> None:
        self.cfg = cfg
        self.type = type
        self.camera_id = camera_id
        self.keys: dict[str, _KeyState] = {}

    def update(self, active: dict[str, Active], t: float) -> list[Incident]:
        out: list[Incident] = []
        for key in set(self.keys) | set(active):
            st = self.keys.setdefault(key, _KeyState())
            a = active.get(key)
            if a is not None and a.objects:
                if st.active_since is None:
                    st.active_since = t
                st.last_active_t = t
                out += self._active(st, a, t)
            else:
                glitch = min(self.cfg.confirm_seconds, GLITCH_SECONDS)
                if st.active_since is not None and t - st.last_active_t > glitch + 1e-9:
                    st.active_since = None  # a break longer than a glitch: confirming starts again
                if st.incident is not None and t - st.last_active_t >= self.cfg.clear_seconds:
                    end = _step(st.incident, "end", t)
                    end.ended_at = st.last_active_t
                    out.append(end)
                    st.incident = None
                    st.active_since = None
                    st.ended_at = st.last_active_t
                    st.cooldown_until = t + self.cfg.cooldown_seconds
            if st.incident is None and st.active_since is None and t >= st.cooldown_until:
                del self.keys[key]  # nothing to remember: memory stays flat
        return out

    def is_open(self, key: str) -> bool:
        """Whether ``key`` has an incident going on."""
        st = self.keys.get(key)
        return st is not None and st.incident is not None

    def close(self, t: float, reason: str) -> list[Incident]:
        """End every open incident now (``details.end_reason``: why), e.g. its camera was removed."""
        out = []
        for st in self.keys.values():
            if st.incident is not None:
                end = _step(st.incident, "end", t)
                end.ended_at = st.last_active_t
                end.details["end_reason"] = reason
                out.append(end)
        self.keys.clear()
        return out

    def _active(self, st: _KeyState, a: Active, t: float) -> list[Incident]:
        ids = frozenset(o.track_id for o in a.objects)
        if st.incident is None:
            assert st.active_since is not None
            if t - st.active_since < self.cfg.confirm_seconds - 1e-9:
                return []
            went_on = a.started_at is not None and a.started_at < st.ended_at
            if t < st.cooldown_until and not went_on:
                return []
            st.incident = Incident(
                incident_id=str(uuid.uuid4()),
                type=self.type,
                status="start",
                severity=self.cfg.severity,
                camera_id=self.camera_id,
                zone=a.zone,
                started_at=a.started_at if a.started_at is not None else t,
                emitted_at=t,
                ended_at=None,
                objects=objects(a.objects),
                confidence=max(o.confidence for o in a.objects),
                details=dict(a.details),
            )
            st.last_update_t, st.object_ids = t, ids
            return [_step(st.incident, "start", t)]
        if ids != st.object_ids or t - st.last_update_t >= self.cfg.update_seconds:
            st.last_update_t, st.object_ids = t, ids
            st.incident.objects = objects(a.objects)
            st.incident.confidence = max(o.confidence for o in a.objects)
            st.incident.details = dict(a.details)
            return [_step(st.incident, "update", t)]
        return []


def objects(infos: Sequence[TrackInfo]) -> list[TrackedObject]:
    """The objects of an incident, as the event reports them."""
    out = []
    for i in infos:
        x1, y1, x2, y2 = (round(float(v), 1) for v in i.xyxy)
        person = i.has("person") or i.has("fallen_person")
        out.append(
            TrackedObject(
                i.track_id,
                i.label,
                round(float(i.confidence), 4),
                (x1, y1, x2, y2),
                down=i.down if person else None,
                models=i.models,
            )
        )
    return out


def _step(inc: Incident, status: str, t: float) -> Incident:
    """A snapshot of the incident at one lifecycle step (the live object keeps changing)."""
    return Incident(
        incident_id=inc.incident_id,
        type=inc.type,
        status=status,  # type: ignore[arg-type]
        severity=inc.severity,
        camera_id=inc.camera_id,
        zone=inc.zone,
        started_at=inc.started_at,
        emitted_at=t,
        ended_at=inc.ended_at,
        objects=list(inc.objects),
        confidence=inc.confidence,
        details=dict(inc.details),
    )
