"""Annotated footage through the pipeline: each file played once, as fast as it goes, on its
camera's zones and rules (and the models asked for), its incidents turned into intervals and scored
against the annotation's (``score.py``). The accuracy bench and ``safecity models compare`` use it."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import ConfigError
from .annotations import Annotation, Boxes
from .score import Interval, TypeScore, match


@dataclass
class Run:
    """One footage file through the pipeline: the incidents it raised, as intervals."""

    annotation: Annotation
    predicted: list[Interval]
    outbox: Path
    seconds: float  # media time analysed
    tracking: dict[str, Any] | None = None  # MOTA, IDF1 ... where the annotation has boxes


def camera_config(cfg: Config, ann: Annotation, work: Path, models: list[Any] | None) -> Config:
    """The config reduced to the annotation's camera playing its footage once, as fast as it goes,
    into an outbox of its own (no sink, no clips)."""
    cams = {c.id: c for c in cfg.cameras}
    cam = cams.get(ann.camera) if ann.camera else cfg.cameras[0]
    if cam is None:
        raise ConfigError(
            f"{ann.path}: camera {ann.camera!r} is not in the config (it has: {', '.join(cams)})"
        )
    if not ann.footage.is_file():
        raise ConfigError(f"{ann.path}: footage {ann.footage} not found")
    cam = cam.model_copy(update={"source": str(ann.footage.resolve()), "loop": False, "realtime": False})
    if models is not None:  # one detector alone: the camera's own list of detectors does not apply
        cam = cam.model_copy(update={"models": None})
    update: dict[str, Any] = {
        "cameras": [cam],
        "duration_seconds": None,
        "sink": cfg.sink.model_copy(  # nothing leaves: a port nobody listens on, no keys needed
            update={
                "outbox": work / "outbox.sqlite",
                "endpoint": "tcp://127.0.0.1:9",
                "insecure": True,
                "drain_seconds": 0.0,
            }
        ),
        "clips": cfg.clips.model_copy(update={"enabled": False}),
    }
    if models is not None:
        update["models"] = models
    return cfg.model_copy(update=update)


def predict(cfg: Config, ann: Annotation, work: Path, models: list[Any] | None = None) -> Run:
    work.mkdir(parents=True, exist_ok=True)
    from ..runner import Runner

    runner = Runner(camera_config(cfg, ann, work, models))
    runner.incidents = deque()  # every step of the footage, not only the latest thousand
    if ann.boxes is not None:
        runner.track_log = {}
    runner.run()
    if runner.error is not None:
        raise runner.error
    seconds = max((s.media_time for s in runner.sources), default=0.0)
    steps: dict[str, dict[str, Any]] = {}
    for inc in runner.incidents:  # committed steps, in order
        s = steps.setdefault(inc.incident_id, {"inc": inc, "alert": None, "end": None})
        if inc.status == "start":
            s["alert"] = inc.emitted_at
        if inc.ended_at is not None:
            s["end"] = inc.ended_at
    name = footage_key(ann)
    predicted = [
        Interval(
            name,
            s["inc"].type,
            s["inc"].started_at,
            max(s["end"] if s["end"] is not None else seconds, s["inc"].started_at),
            s["inc"].zone,
            ref=iid,
            alert=s["alert"],
        )
        for iid, s in steps.items()
    ]
    tracking = None
    if ann.boxes is not None and runner.track_log is not None:
        from .tracks import track_scores

        # MOTChallenge frames count from 1; the pipeline's frame index from 0; only analysed frames score
        logged = next(iter(runner.track_log.values()), [])
        hyp: Boxes = {}
        for i, tracks in logged:
            hyp[i + 1] = []
            for tr in tracks:
                x1, y1, x2, y2 = (float(v) for v in tr.xyxy)
                hyp[i + 1].append((tr.track_id, x1, y1, x2, y2))
        tracking = track_scores(ann.boxes, hyp, frames=sorted(hyp))
    return Run(ann, predicted, work / "outbox.sqlite", seconds, tracking)


def footage_key(ann: Annotation) -> str:
    """What incidents of one footage file are matched by: its resolved path (two files of one name
    in different folders are different footage)."""
    return str(ann.footage.resolve())


def score_runs(runs: list[Run], iou: float) -> dict[str, TypeScore]:
    return match(
        [i for r in runs for i in r.annotation.incidents], [i for r in runs for i in r.predicted], iou=iou
    )
