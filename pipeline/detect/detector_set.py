"""The detectors a pipeline runs, as one: each batch letterboxed once per canvas, run through every
detector its cameras chose, and each frame's detections merged (``merge.py``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ..config import MergeConfig
from ..metrics import Metrics
from ..types import Detections, FrameBatch
from .base import Detector, DetectorInfo
from .merge import Member, merge
from .roles import LabelRoles, label_roles
from .yolo import Prepared, YoloDetector

PERSON = "person"  # the class of a person only a posture model saw, where no detector has one


@dataclass
class CameraChoice:
    """camera -> the members (indices) it runs; replaced whole, so readers need no lock."""

    members: dict[str, set[int]]


@dataclass
class SetMember:
    key: str  # the model's id in the config
    detector: Detector
    roles: dict[str, list[str]]  # role -> its class names

    @property
    def tag(self) -> str:
        """``name@version``: how events name the detector."""
        return f"{self.detector.info.name}@{self.detector.info.version}"


class DetectorSet(Detector):
    def __init__(
        self,
        members: list[SetMember],
        *,
        camera_models: dict[str, list[str]] | None = None,
        merge: MergeConfig | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        if not members:
            raise ValueError("a detector set needs at least one detector")
        self.members = members
        self.merge = merge or MergeConfig()
        self.metrics = metrics
        self.on_member_time: Callable[[str, float, int], None] | None = None  # (member, seconds, frames)
        self._index = {m.key: i for i, m in enumerate(members)}
        # camera -> the members it runs; a camera not named runs them all (shared by the sets a model
        # swap makes of this one: a camera's change reaches the set running and the one to roll back to)
        self._choice = CameraChoice(
            {cam: {self._index[k] for k in keys} for cam, keys in (camera_models or {}).items()}
        )
        # members that letterbox alike, by canvas; a detector of another kind is a group of its own
        self._canvases: list[list[int]] = []
        by_key: dict[tuple[object, ...], list[int]] = {}
        for i, m in enumerate(members):
            key = m.detector.canvas_key() if isinstance(m.detector, YoloDetector) else ("own", i)
            if key not in by_key:
                by_key[key] = []
                self._canvases.append(by_key[key])
            by_key[key].append(i)
        self.merge_members: list[Member] = []
        names: list[str] = []
        for i, m in enumerate(members):
            classes = m.detector.info.class_names
            per_class = tuple(frozenset(r for r, cs in m.roles.items() if c in cs) for c in classes)
            self.merge_members.append(Member(i, len(names), per_class))
            names += classes
        self.label_roles: LabelRoles = label_roles(m.roles for m in members)
        # the class a person only a posture model saw is given: an object detector's person class,
        # else one of the set's own
        self.person_class = next(
            (
                mm.class_offset + c
                for mm in self.merge_members
                if not mm.posture
                for c, roles in enumerate(mm.class_roles)
                if "person" in roles
            ),
            None,
        )
        if self.person_class is None and any(mm.posture for mm in self.merge_members):
            self.person_class = len(names)
            names.append(PERSON)
            self.label_roles[PERSON] = self.label_roles.get(PERSON, frozenset()) | {"person"}
        self.model_tags = tuple(m.tag for m in members)
        first = members[0].detector.info
        self.info = DetectorInfo(
            name="+".join(m.detector.info.name for m in members),
            version="+".join(m.detector.info.version for m in members),
            class_names=tuple(names),
            imgsz=max(m.detector.info.imgsz for m in members),
            backend=first.backend,
            device=first.device,
        )
        self._latency = (
            [metrics.model_latency.labels(m.key, m.detector.info.version) for m in members] if metrics else []
        )
        self._count = (
            [metrics.model_detections.labels(m.key, m.detector.info.version) for m in members]
            if metrics
            else []
        )

    @property
    def camera_members(self) -> dict[str, set[int]]:
        return self._choice.members

    def replaced(
        self, key: str, detector: Detector, roles: dict[str, list[str]], *, counted: bool = True
    ) -> DetectorSet:
        """A set like this one with member ``key``'s detector replaced (the others shared, the cameras'
        choices kept): a live model swap (``swap.py``); ``counted``: in this set's metrics (a shadow's
        runs are not)."""
        members = [SetMember(key, detector, roles) if m.key == key else m for m in self.members]
        new = DetectorSet(members, merge=self.merge, metrics=self.metrics if counted else None)
        new._choice = self._choice
        return new

    def member(self, key: str) -> SetMember:
        return self.members[self._index[key]]

    def set_camera_models(self, camera_id: str, keys: list[str] | None) -> None:
        """A camera's detectors, changed while running (None: all). Replaces the mapping whole: the
        preprocess thread reads it without a lock."""
        chosen = dict(self.camera_members)
        if keys is None:
            chosen.pop(camera_id, None)
        else:
            chosen[camera_id] = {self._index[k] for k in keys}
        self._choice.members = chosen

    def _uses(self, camera_id: str, member: int) -> bool:
        chosen = self.camera_members.get(camera_id)
        return chosen is None or member in chosen

    def prepare(self, batch: FrameBatch) -> SetPrepared:
        """Per canvas: the batch's frames its members need, letterboxed once, and which of them each
        member runs on (the cameras that chose it)."""
        groups = []
        for members in self._canvases:
            frames = [
                j for j, f in enumerate(batch.frames) if any(self._uses(f.camera_id, i) for i in members)
            ]
            if not frames:
                continue
            runs = []
            for i in members:
                rows = [k for k, j in enumerate(frames) if self._uses(batch.frames[j].camera_id, i)]
                if rows:
                    runs.append((i, rows))
            sub = FrameBatch([batch.frames[j] for j in frames])
            groups.append(GroupPrepared(frames, runs, self.members[members[0]].detector.prepare(sub)))
        return SetPrepared(len(batch), groups)

    def run(self, prepared: SetPrepared) -> list[Detections]:
        per_frame: list[list[tuple[Member, Detections]]] = [[] for _ in range(prepared.count)]
        for g in prepared.groups:
            for i, rows in g.runs:
                det = self.members[i].detector
                t0 = time.perf_counter()
                if isinstance(g.prepared, Prepared):
                    every = len(rows) == len(g.frames)
                    dets = det.run(g.prepared if every else replace(g.prepared, rows=rows))
                else:  # a detector of another kind prepared its own frames: keep the rows it needs
                    dets = det.run(g.prepared)
                    dets = [dets[k] for k in rows]
                seconds = time.perf_counter() - t0
                if self._latency:
                    self._latency[i].observe(seconds)
                    self._count[i].inc(sum(len(d) for d in dets))
                if self.on_member_time is not None:
                    self.on_member_time(self.members[i].key, seconds, len(rows))
                for k, d in zip(rows, dets, strict=True):
                    per_frame[g.frames[k]].append((self.merge_members[i], d))
        if (
            len(self.members) == 1 and not self.merge_members[0].posture
        ):  # one object detector: as it gives them
            return [parts[0][1] if parts else Detections.empty() for parts in per_frame]
        m = self.merge
        return [
            merge(parts, m.iou, lone_posture_conf=m.lone_posture_conf, person_class=self.person_class)
            for parts in per_frame
        ]

    def detect(self, batch: FrameBatch) -> list[Detections]:
        return self.run(self.prepare(batch))

    def close(self) -> None:
        for m in self.members:
            m.detector.close()


@dataclass
class GroupPrepared:
    frames: list[int]  # the batch's frames this canvas letterboxed
    runs: list[tuple[int, list[int]]]  # member -> the rows of ``frames`` it runs on
    prepared: Any


@dataclass
class SetPrepared:
    count: int  # frames in the batch
    groups: list[GroupPrepared]
