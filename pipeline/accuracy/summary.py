"""The figures an operator judges incidents by, over a set of scored runs: false alerts per
camera-hour first, then recall, precision, F1, critical false alerts, how late alerts come past the
rule's own wait (the dwell it was told to wait), per zone, and the spread of F1 across re-encodings of
the same footage (the robustness matrix of ``safecity bench accuracy``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import Config
from .runs import Run
from .score import Interval, TypeScore

SECONDS_PER_HOUR = 3600.0


def rule_wait(cfg: Config, camera: str | None, kind: str) -> float:
    """How long a rule waits by design before it may alert, on a camera: its dwell (encroachment, stray
    animals) or how long the struggle must last (assault); 0 for the others."""
    cams = {c.id: c for c in cfg.cameras}
    cam = cams.get(camera or "") or cfg.cameras[0]
    rules = cfg.camera_rules(cam)
    section = getattr(rules, kind, None)
    for name in ("dwell_seconds", "sustain_seconds"):
        if section is not None and hasattr(section, name):
            return float(getattr(section, name))
    return 0.0


@dataclass
class Figures:
    """Counts and rates of one set of runs (all types together, or one type or zone)."""

    camera_hours: float
    tp: int = 0
    fp: int = 0
    fn: int = 0
    critical_fp: int = 0
    latencies: list[float] = field(default_factory=list)  # alert time - (true start + the rule's wait)

    def add(self, score: TypeScore, wait: dict[str, float]) -> None:
        self.tp += score.tp
        self.fp += len(score.false_positives)
        self.fn += len(score.misses)
        self.critical_fp += sum(1 for p in score.false_positives if p.severity == "critical")
        for m in score.matches:
            self.latencies.append(m.latency - wait.get(m.truth.footage, 0.0))

    @property
    def false_per_hour(self) -> float | None:
        return None if self.camera_hours <= 0 else self.fp / self.camera_hours

    @property
    def precision(self) -> float | None:
        return None if self.tp + self.fp == 0 else self.tp / (self.tp + self.fp)

    @property
    def recall(self) -> float | None:
        return None if self.tp + self.fn == 0 else self.tp / (self.tp + self.fn)

    @property
    def f1(self) -> float | None:
        n = 2 * self.tp + self.fp + self.fn
        return None if n == 0 else 2 * self.tp / n

    def latency(self, q: float) -> float | None:
        return None if not self.latencies else float(np.percentile(self.latencies, q))

    def row(self) -> dict[str, Any]:
        def r(x: float | None, nd: int = 3) -> float | None:
            return None if x is None else round(x, nd)

        return {
            "camera_hours": round(self.camera_hours, 4),
            "false_alerts_per_camera_hour": r(self.false_per_hour, 1),
            "critical_false_alerts": self.critical_fp,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": r(self.precision),
            "recall": r(self.recall),
            "f1": r(self.f1),
            "latency_past_wait_p50_s": r(self.latency(50), 2),
            "latency_past_wait_p90_s": r(self.latency(90), 2),
        }


def camera_hours(runs: Iterable[Run]) -> float:
    return sum(r.seconds for r in runs) / SECONDS_PER_HOUR


def waits(cfg: Config, runs: Sequence[Run], kind: str) -> dict[str, float]:
    """Per footage key: the wait of rule ``kind`` on the camera that footage plays as."""
    from .runs import footage_key

    return {footage_key(r.annotation): rule_wait(cfg, r.annotation.camera, kind) for r in runs}


def overall(cfg: Config, runs: Sequence[Run], scores: dict[str, TypeScore]) -> Figures:
    f = Figures(camera_hours(runs))
    for kind, s in scores.items():
        f.add(s, waits(cfg, runs, kind))
    return f


def per_zone(
    cfg: Config, runs: Sequence[Run], scores: dict[str, TypeScore]
) -> dict[tuple[str, str, str], Figures]:
    """(footage, zone, type) -> figures of the incidents of that zone (``-``: incidents of no zone).
    Camera-hours are those of the footage the zone belongs to."""
    from .runs import footage_key

    hours = {footage_key(r.annotation): r.seconds / SECONDS_PER_HOUR for r in runs}
    out: dict[tuple[str, str, str], Figures] = {}

    def fig(i: Interval, kind: str) -> Figures:
        key = (i.footage, i.zone or "-", kind)
        if key not in out:
            out[key] = Figures(hours.get(i.footage, 0.0))
        return out[key]

    for kind, s in scores.items():
        wait = waits(cfg, runs, kind)
        for m in s.matches:
            f = fig(m.truth, kind)
            f.tp += 1
            f.latencies.append(m.latency - wait.get(m.truth.footage, 0.0))
        for p in s.false_positives:
            f = fig(p, kind)
            f.fp += 1
            f.critical_fp += p.severity == "critical"
        for t in s.misses:
            fig(t, kind).fn += 1
    return dict(sorted(out.items()))


def spread(values: Iterable[float | None]) -> float | None:
    """Largest minus smallest of the values that exist (None when fewer than one)."""
    v = [x for x in values if x is not None]
    return None if not v else max(v) - min(v)


def by_footage(runs: Sequence[Run], scores: dict[str, TypeScore]) -> dict[str, dict[str, TypeScore]]:
    """The scores split by footage key."""
    from .runs import footage_key

    keys = [footage_key(r.annotation) for r in runs]
    out: dict[str, dict[str, TypeScore]] = defaultdict(dict)
    for kind, s in scores.items():
        for key in keys:
            part = TypeScore(kind)
            part.matches = [m for m in s.matches if m.truth.footage == key]
            part.false_positives = [p for p in s.false_positives if p.footage == key]
            part.misses = [t for t in s.misses if t.footage == key]
            if part.matches or part.false_positives or part.misses:
                out[key][kind] = part
    return {k: dict(out.get(k, {})) for k in keys}
