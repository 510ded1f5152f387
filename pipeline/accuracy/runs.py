"""Annotated footage through the pipeline: each file played once, as fast as it goes, on its
camera's zones and rules (and the models asked for), its incidents turned into intervals and scored
against the annotation's (``score.py``). The accuracy bench and ``safecity models compare`` use it.

With a ``cache`` folder, a file's detections are kept (``detections.py``) and a later run of the same
file, models and frame rate replays them through the camera's tracker and rules instead of the models.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..analytics.camera import CameraAnalytics
from ..config import Config
from ..errors import ConfigError
from ..types import Incident, Track
from .annotations import Annotation, Boxes
from .annotations import footage_key as annotation_key
from .detections import DetectionLog, cache_key
from .score import DEFAULT_ONSET_S, Interval, TypeScore, match


@dataclass
class Run:
    """One footage file through the pipeline: the incidents it raised, as intervals."""

    annotation: Annotation
    predicted: list[Interval]
    outbox: Path
    seconds: float  # media time analysed
    tracking: dict[str, Any] | None = None  # MOTA, IDF1 ... where the annotation has boxes
    replayed: bool = False  # from kept detections (no outbox, no snapshots)
    played: Path | None = None  # the re-encoding played instead of the annotation's footage
    steps: list[Incident] | None = None  # every incident step, in order


def camera_config(
    cfg: Config, ann: Annotation, work: Path, models: list[Any] | None, *, footage: Path | None = None
) -> Config:
    """The config reduced to the annotation's camera playing its footage once, as fast as it goes,
    into an outbox of its own (no sink, no clips). ``footage``: another encoding of the annotation's
    footage, played instead; zones drawn in pixels of the original scale to its frame size."""
    cams = {c.id: c for c in cfg.cameras}
    cam = cams.get(ann.camera) if ann.camera else cfg.cameras[0]
    if cam is None:
        raise ConfigError(
            f"{ann.path}: camera {ann.camera!r} is not in the config (it has: {', '.join(cams)})"
        )
    if not ann.footage.is_file():
        raise ConfigError(f"{ann.path}: footage {ann.footage} not found")
    played = footage if footage is not None else ann.footage
    cam = cam.model_copy(update={"source": str(played.resolve()), "loop": False, "realtime": False})
    if footage is not None and cam.zones_drawn_on is None:
        cam = cam.model_copy(update={"zones_drawn_on": frame_size(ann.footage)})
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


def predict(
    cfg: Config,
    ann: Annotation,
    work: Path,
    models: list[Any] | None = None,
    *,
    footage: Path | None = None,
    cache: Path | None = None,
) -> Run:
    """``footage``: play this file instead of the annotation's (a re-encoding of it, scored against the
    same annotation); ``cache``: where detections are kept and replayed from (the module's docstring)."""
    work.mkdir(parents=True, exist_ok=True)
    run_cfg = camera_config(cfg, ann, work, models, footage=footage)
    cam = run_cfg.cameras[0]
    kept = cache / f"{cache_key(run_cfg, cam, Path(cam.source), models)}.npz" if cache else None
    logged = DetectionLog.load(kept) if kept is not None else None
    replayed = logged is not None
    if logged is not None:
        steps, seconds, track_log = replay(run_cfg, logged, boxes=ann.boxes is not None)
    else:
        steps, seconds, track_log, logged = _run(run_cfg, boxes=ann.boxes is not None)
        if kept is not None and logged is not None:
            logged.save(kept)
    tracking = None
    if ann.boxes is not None and track_log is not None:
        from .tracks import track_scores

        # MOTChallenge frames count from 1; the pipeline's frame index from 0; only analysed frames score
        hyp: Boxes = {}
        for i, tracks in track_log:
            hyp[i + 1] = []
            for tr in tracks:
                x1, y1, x2, y2 = (float(v) for v in tr.xyxy)
                hyp[i + 1].append((tr.track_id, x1, y1, x2, y2))
        tracking = track_scores(ann.boxes, hyp, frames=sorted(hyp))
    return Run(
        ann,
        intervals(steps, footage_key(ann), seconds),
        work / "outbox.sqlite",
        seconds,
        tracking,
        replayed=replayed,
        played=footage,
        steps=steps,
    )


def _run(
    cfg: Config, *, boxes: bool
) -> tuple[list[Incident], float, list[tuple[int, list[Track]]] | None, DetectionLog]:
    """The whole pipeline on the one camera of ``cfg``: its committed incident steps, the media time it
    analysed, its tracks per frame (``boxes``) and its detections."""
    from ..runner import Runner

    runner = Runner(cfg)
    runner.incidents = deque()  # every step of the footage, not only the latest thousand
    if boxes:
        runner.track_log = {}
    runner.detection_log = {}
    runner.run()
    if runner.error is not None:
        raise runner.error
    seconds = max((s.media_time for s in runner.sources), default=0.0)
    cam = cfg.cameras[0].id
    d = runner.detector
    logged = DetectionLog(
        runner.detection_log.get(cam, []), d.info.class_names, dict(d.label_roles), d.model_tags, seconds
    )
    track_log = runner.track_log.get(cam, []) if runner.track_log is not None else None
    return list(runner.incidents), seconds, track_log, logged


def replay(
    cfg: Config, logged: DetectionLog, *, boxes: bool = False
) -> tuple[list[Incident], float, list[tuple[int, list[Track]]] | None]:
    """Kept detections through the camera's tracker and rules, as the pipeline's analytics stage runs
    them: the incident steps, the media time covered and (``boxes``) the tracks per frame."""
    ca = CameraAnalytics(
        cfg, cfg.cameras[0], logged.class_names, roles=logged.label_roles, model_names=logged.model_tags
    )
    steps: list[Incident] = []
    track_log: list[tuple[int, list[Track]]] | None = [] if boxes else None
    seconds = logged.seconds
    for i, t, wall, w, h, dets in logged.frames:
        tracks = ca.tracker.update(dets, t)
        steps += ca.analyse_tracks(tracks, t=t, wall_time=wall, frame_w=w, frame_h=h)
        if track_log is not None:
            track_log.append((i, tracks))
        seconds = max(seconds, t)
    return steps, seconds, track_log


def intervals(steps: list[Incident], name: str, seconds: float) -> list[Interval]:
    """Incident steps (in order) as one interval each: from the start the incident reports to its end
    (still open at the end of the footage: ended there), with the time its start was emitted."""
    by_id: dict[str, dict[str, Any]] = {}
    for inc in steps:
        s = by_id.setdefault(inc.incident_id, {"inc": inc, "alert": None, "end": None})
        if inc.status == "start":
            s["alert"] = inc.emitted_at
        if inc.ended_at is not None:
            s["end"] = inc.ended_at
    return [
        Interval(
            name,
            s["inc"].type,
            s["inc"].started_at,
            max(s["end"] if s["end"] is not None else seconds, s["inc"].started_at),
            s["inc"].zone,
            ref=iid,
            alert=s["alert"],
            severity=s["inc"].severity,
        )
        for iid, s in by_id.items()
    ]


def frame_size(path: Path) -> tuple[int, int]:
    """Width and height of a video file's first video stream."""
    import av

    with av.open(str(path)) as c:
        st = c.streams.video[0]
        return int(st.codec_context.width), int(st.codec_context.height)


def footage_key(ann: Annotation) -> str:
    """The key the annotation's incidents are matched by (``annotations.footage_key``)."""
    return annotation_key(ann.footage, ann.camera)


def score_runs(runs: list[Run], iou: float, onset_s: float = DEFAULT_ONSET_S) -> dict[str, TypeScore]:
    return match(
        [i for r in runs for i in r.annotation.incidents],
        [i for r in runs for i in r.predicted],
        iou=iou,
        onset_s=onset_s,
    )
