"""Live model swaps: load a new version of one detector, check it, put it in between batches, and
take it back, by itself or on command, without stopping a camera or losing an incident in progress.

A swap (``ModelSwaps.swap``, from the control interface) loads the candidate beside the running
model and checks it on recent frames of the cameras before anything changes:

- the same classes and roles as the detector it replaces (the cameras' trackers and open incidents
  go on across the swap; other classes need a restart with the new config);
- for a version made here (``NAME@N``), the export check again on those frames: its ONNX export
  against its checkpoint (``agreement.py``);
- a warm-up batch, and its time per frame against the running model's on the same frames, side by
  side: at most ``swap.max_latency_ratio`` (default 1.5).

A candidate that fails any of these is refused (``SwapRefused``, naming why) and nothing changed.
Otherwise the runner's detector set becomes a copy with that member replaced: batches already
prepared finish on the set that prepared them, the next ones run on the new set. For
``swap.grace_seconds`` it is on probation: an error on a batch rolls it back at once (that batch is
run again on the previous model, so no frame is lost), as do ``swap.slow_batches`` batches in a row
slower per frame than the bound (its own time, not the set's). After the grace period it is kept.
``rollback`` takes it back on command while on probation. A replaced model is closed
``RETIRE_AFTER_S`` later, when no batch in flight can still be on it.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import torch

from ..config import Config, ModelConfig, SwapConfig
from ..errors import SafeCityError
from ..metrics import Metrics
from ..types import Frame, FrameBatch
from .base import Detector
from .detector_set import DetectorSet

log = logging.getLogger(__name__)

BLANK = (360, 640)  # a frame to warm up on when no camera has given one yet
RETIRE_AFTER_S = 30.0  # a replaced model is closed this long after: no batch in flight is older


class SwapRefused(SafeCityError):
    """The candidate model did not pass its check; nothing changed."""


@dataclass
class Probation:
    key: str
    previous: DetectorSet
    candidate: DetectorSet
    until: float
    bound_s_per_frame: float  # the candidate's time per frame above which a batch is slow
    report: dict[str, Any]
    slow_in_a_row: int = 0
    batches: int = 0


@dataclass
class SwapReport:
    model: str
    previous: str
    candidate: str
    checks: dict[str, Any] = field(default_factory=dict)
    probation_s: float = 0.0


def _median_ms(det: Detector, batch: FrameBatch, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        det.detect(batch)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def load_candidate(
    cfg: Config, running: DetectorSet, key: str, model: ModelConfig, *, counted: bool = True
) -> DetectorSet:
    """``running`` with detector ``key`` replaced by ``model``, loaded; SwapRefused when it does not
    load or does not see the same classes, in the same roles (a swap or a shadow needs both)."""
    from .factory import create_detector
    from .roles import role_map

    keys = [m.key for m in running.members]
    if key not in keys:
        raise SwapRefused(f"no detector {key!r} runs here (detectors: {', '.join(keys)})")
    old = running.member(key)
    if model.name is not None and "@" in model.name:  # a version: its files are the ones registered
        from ..errors import ModelError
        from ..ml.versions import verify_files

        try:
            verify_files(model.name)
        except ModelError as err:
            raise SwapRefused(str(err)) from None
    try:
        candidate = create_detector(cfg, model)
    except Exception as err:  # a file that does not load is refused, whatever the library raised
        raise SwapRefused(f"it does not load: {type(err).__name__}: {err}") from err
    try:
        if tuple(candidate.info.class_names) != tuple(old.detector.info.class_names):
            raise SwapRefused(
                f"its classes {list(candidate.info.class_names)} are not the running model's "
                f"{list(old.detector.info.class_names)} (a model with other classes needs a restart with its "
                "config)"
            )
        roles = role_map(model, candidate.info.class_names)
        if roles != old.roles:
            raise SwapRefused(f"its roles {roles} differ from the running model's {old.roles}")
    except Exception:
        candidate.close()
        raise
    return running.replaced(key, candidate, roles, counted=counted)


class ModelSwaps:
    """The runner's live model changes. ``current()`` is the set batches are prepared with now;
    ``install(set)`` makes another set current (the runner also hands it to publishing and preview)."""

    def __init__(
        self,
        *,
        current: Callable[[], DetectorSet],
        install: Callable[[DetectorSet], None],
        recent_frames: Callable[[int], list[Frame]],
        metrics: Metrics,
        settings: Callable[[], SwapConfig],
    ) -> None:
        self.current = current
        self.install = install
        self.recent_frames = recent_frames
        self.metrics = metrics
        self.settings = settings
        self.probation: Probation | None = None
        # candidates rolled back -> the set to run again on: batches already on them may still fail
        self._rolled_back: list[tuple[DetectorSet, DetectorSet]] = []
        self.retired: list[tuple[float, Detector]] = []  # (when to close, replaced detector)
        self._lock = threading.RLock()  # one swap at a time; probation read by the inference workers
        for m in current().members:
            self._info(m.key, m.detector, "live")

    def _info(self, key: str, det: Detector, state: str, *, remove: bool = False) -> None:
        labels = (key, det.info.name, det.info.version, state)
        if remove:
            try:
                self.metrics.model_info.remove(*labels)
            except KeyError:
                pass
        else:
            self.metrics.model_info.labels(*labels).set(1)

    # -- a swap ------------------------------------------------------------------------------
    def swap(self, cfg: Config, key: str, model: ModelConfig) -> SwapReport:
        """Load ``model`` for detector ``key``, check it, and put it in (SwapRefused: nothing changed)."""
        with self._lock:
            if self.probation is not None:
                raise SwapRefused(
                    f"model {self.probation.key} is still on probation after a swap: wait for it to be kept, "
                    "or roll it back first"
                )
            running = self.current()
            old = running.member(key) if key in {m.key for m in running.members} else None
            try:
                new = load_candidate(cfg, running, key, model)
            except SwapRefused as err:
                self._refused(key, str(err))
            candidate = new.member(key).detector
            try:
                assert old is not None  # load_candidate checked the key
                report = self._check(key, old.detector, candidate, model)
            except Exception as err:  # whatever went wrong checking it, the candidate is refused
                candidate.close()
                why = (
                    str(err)
                    if isinstance(err, SwapRefused)
                    else f"its check failed: {type(err).__name__}: {err}"
                )
                self._refused(key, why)
            s = self.settings()
            bound = report.checks["running_ms_per_frame"] * s.max_latency_ratio / 1000
            self.probation = Probation(
                key, running, new, time.monotonic() + s.grace_seconds, bound, report.checks
            )
            new.on_member_time = self._member_time
            self.install(new)
            self._info(key, old.detector, "live", remove=True)
            self._info(key, candidate, "probation")
            self.metrics.model_swaps.labels(key, "swapped").inc()
            report.probation_s = s.grace_seconds
            log.info(
                "model %s: %s swapped in for %s (%.1f against %.1f ms a frame); on probation for %g s",
                key,
                report.candidate,
                report.previous,
                report.checks["candidate_ms_per_frame"],
                report.checks["running_ms_per_frame"],
                s.grace_seconds,
            )
            if s.grace_seconds == 0:
                self._keep()
            return report

    def _refused(self, key: str, why: str) -> NoReturn:
        self.metrics.model_swaps.labels(key, "refused").inc()
        log.warning("model %s: swap refused: %s", key, why)
        raise SwapRefused(f"swap of model {key} refused: {why}")

    def _check(self, key: str, old: Detector, candidate: Detector, model: ModelConfig) -> SwapReport:
        s = self.settings()
        report = SwapReport(
            key, f"{old.info.name}@{old.info.version}", f"{candidate.info.name}@{candidate.info.version}"
        )
        frames = [f.rgb() for f in self.recent_frames(s.check_frames)]
        report.checks["frames"] = len(frames)
        if model.name is not None and "@" in model.name:
            report.checks["export_check"] = self._export_check(model, frames)
        pixels = frames or [torch.zeros((*BLANK, 3), dtype=torch.uint8)]
        batch = FrameBatch([Frame("swap-check", p, 0.0, k, 0.0) for k, p in enumerate(pixels)])
        try:
            candidate.detect(batch)  # warm-up
        except Exception as err:
            raise SwapRefused(f"its warm-up batch failed: {type(err).__name__}: {err}") from err
        running_ms = new_ms = 0.0
        for _ in range(2):  # side by side, alternately: a noisy machine slows both alike
            running_ms += _median_ms(old, batch, 2)
            new_ms += _median_ms(candidate, batch, 2)
        per = 2 * len(batch)
        report.checks["running_ms_per_frame"] = round(running_ms / per, 2)
        report.checks["candidate_ms_per_frame"] = round(new_ms / per, 2)
        ratio = new_ms / max(running_ms, 1e-9)
        report.checks["latency_ratio"] = round(ratio, 3)
        if ratio > s.max_latency_ratio:
            raise SwapRefused(
                f"it takes {new_ms / per:.1f} ms a frame against the running model's {running_ms / per:.1f} "
                f"({ratio:.2f}x, at most {s.max_latency_ratio:g}x: swap.max_latency_ratio)"
            )
        return report

    def _export_check(self, model: ModelConfig, frames: Sequence[torch.Tensor]) -> dict[str, Any]:
        """A version's ONNX export against its checkpoint on the cameras' recent frames (RGB)."""
        from ..ml.versions import load_version, onnx_path, weights_path
        from .agreement import export_agreement

        assert model.name is not None
        v = load_version(model.name)
        if not v.export_check.get("accepted"):
            raise SwapRefused(f"{model.name}'s export check did not pass when it was made")
        if not frames or model.backend != "onnxruntime":
            return {"accepted": True, "at_training": True, "frames": 0}
        a = export_agreement(
            weights_path(model.name),
            onnx_path(model.name),
            frames,
            imgsz=v.imgsz,
            conf=model.conf_threshold,
        )
        if not a.accepted:
            raise SwapRefused(
                f"its ONNX export does not agree with its checkpoint on the cameras' frames: {a.summary()}; "
                f"first difference: {a.first_mismatch}"
            )
        return {
            "accepted": True,
            "recall": round(a.recall, 3),
            "precision": round(a.precision, 3),
            "frames": a.frames,
        }

    # -- probation ---------------------------------------------------------------------------
    def failed(self, used: DetectorSet, err: BaseException) -> DetectorSet | None:
        """A batch raised on ``used``: if that is the candidate on probation (or one rolled back, with
        batches still in flight on it), roll back and return the set to run the batch again on; else
        None (the error is the run's)."""
        with self._lock:
            p = self.probation
            if p is not None and used is p.candidate:
                self._roll_back(f"a batch failed on it: {type(err).__name__}: {err}")
                return p.previous
            return next((prev for cand, prev in self._rolled_back if cand is used), None)

    def _member_time(self, key: str, seconds: float, frames: int) -> None:
        """The candidate's own time on a batch (the set's other detectors not counted): on probation,
        count the batches slower per frame than the bound; keep it once the grace period is over."""
        with self._lock:
            p = self.probation
            if p is None or key != p.key:
                return
            p.batches += 1
            p.slow_in_a_row = p.slow_in_a_row + 1 if seconds / max(frames, 1) > p.bound_s_per_frame else 0
            if p.slow_in_a_row >= self.settings().slow_batches:
                self._roll_back(
                    f"{p.slow_in_a_row} batches in a row slower than "
                    f"{p.bound_s_per_frame * 1000:.1f} ms a frame"
                )
            elif time.monotonic() >= p.until:
                self._keep()

    def tick(self) -> None:
        """Keep a candidate whose grace period is over even if no batch came (cameras idle); close the
        models replaced a while ago (no batch is on them any more)."""
        now = time.monotonic()
        with self._lock:
            p = self.probation
            if p is not None and now >= p.until:
                self._keep()
            due = [d for when, d in self.retired if when <= now]
            self.retired = [(when, d) for when, d in self.retired if when > now]
        for det in due:
            det.close()

    def rollback(self, key: str) -> dict[str, Any]:
        """On command: take back the model on probation (SwapRefused when there is none for ``key``)."""
        with self._lock:
            p = self.probation
            if p is None or p.key != key:
                raise SwapRefused(f"model {key} has no swap on probation to roll back")
            self._roll_back("on command")
            return {
                "model": key,
                "running": p.previous.member(key).tag,
                "rolled_back": p.candidate.member(key).tag,
            }

    def _roll_back(self, why: str) -> None:
        p = self.probation
        assert p is not None
        self.install(p.previous)  # the cameras' choice of models is shared: changes made meanwhile stay
        self.probation = None
        p.candidate.on_member_time = None
        self._rolled_back = [*self._rolled_back[-3:], (p.candidate, p.previous)]
        cand = p.candidate.member(p.key).detector
        self.retired.append((time.monotonic() + RETIRE_AFTER_S, cand))
        self._info(p.key, cand, "probation", remove=True)
        self._info(p.key, p.previous.member(p.key).detector, "live")
        self.metrics.model_swaps.labels(p.key, "rolled_back").inc()
        log.warning(
            "model %s: %s rolled back to %s: %s",
            p.key,
            p.candidate.member(p.key).tag,
            p.previous.member(p.key).tag,
            why,
        )

    def _keep(self) -> None:
        p = self.probation
        assert p is not None
        self.probation = None
        p.candidate.on_member_time = None
        cand = p.candidate.member(p.key).detector
        self.retired.append((time.monotonic() + RETIRE_AFTER_S, p.previous.member(p.key).detector))
        self._info(p.key, cand, "probation", remove=True)
        self._info(p.key, cand, "live")
        self.metrics.model_swaps.labels(p.key, "kept").inc()
        log.info(
            "model %s: %s kept after %d batches on probation", p.key, p.candidate.member(p.key).tag, p.batches
        )

    def state(self) -> list[dict[str, Any]]:
        """Each detector: its key, what runs, and a swap on probation (for ``GET /models``)."""
        p = self.probation
        out = []
        for m in self.current().members:
            row: dict[str, Any] = {"model": m.key, "running": m.tag, "backend": m.detector.info.backend}
            if p is not None and p.key == m.key:
                row["probation"] = {
                    "previous": p.previous.member(m.key).tag,
                    "seconds_left": round(max(p.until - time.monotonic(), 0.0), 1),
                    "batches": p.batches,
                    "checks": p.report,
                }
            out.append(row)
        return out

    def close(self) -> None:
        """Close the replaced models (and, mid-probation, the one the candidate replaced)."""
        if self.probation is not None:
            self.retired.append((0.0, self.probation.previous.member(self.probation.key).detector))
            self.probation = None
        for _, det in self.retired:
            det.close()
        self.retired.clear()
        self._rolled_back.clear()
